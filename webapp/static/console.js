// Helpline agent console: sign in with a staff key, watch the live queue, open a ticket.
// Vanilla ES modules, no build step; every piece of data reaches the page as text.

import { ApiError, StaffApi, forgetKey, saveKey, savedKey, socketUrl } from './console/api.js';
import { KbView } from './console/kb.js';
import { Queue } from './console/queue.js';
import { ReportsView } from './console/reports.js';
import { TicketView } from './console/ticket.js';
import { sentence } from './console/util.js';
import { LiveSocket } from './shared/socket.js';

const $ = (id) => document.getElementById(id);
const CONN_WORDS = {
  connecting: 'Connecting…', online: 'Live', reconnecting: 'Reconnecting…', closed: 'Offline',
};

const state = {
  api: null, me: null, queue: null, ticket: null, feed: null, kb: null, reports: null, section: 'queue',
};
const SECTIONS = { queue: 'console', kb: 'kb-view', reports: 'reports-view' };
let ticketView = null; // one per page: it owns the ticket panel's event listeners

function setConn(kind, seconds) {
  const conn = $('conn');
  conn.dataset.state = kind;
  const label = kind === 'reconnecting' && seconds ? `Reconnecting in ${seconds} s…` : CONN_WORDS[kind] || kind;
  conn.querySelector('.conn__label').textContent = label;
}

function showView(name) {
  document.body.dataset.view = name;
  $('signin-view').hidden = name !== 'signin';
  $('session-bar').hidden = name !== 'console';
  $('console-nav').hidden = name !== 'console';
  for (const [section, id] of Object.entries(SECTIONS)) {
    $(id).hidden = name !== 'console' || section !== state.section;
  }
  $('skip-queue').hidden = name !== 'console' || state.section !== 'queue';
}

/** The queue, the knowledge base or the reports: one at a time, named in the URL's hash. */
function showSection(section) {
  state.section = SECTIONS[section] ? section : 'queue';
  document.body.dataset.section = state.section;
  for (const link of document.querySelectorAll('#console-nav .nav__link')) {
    if (link.dataset.section === state.section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (!state.api) return;
  showView('console');
  if (state.section === 'kb') {
    if (!state.kb) {
      state.kb = new KbView(state.api, {
        list: $('kb-list'), count: $('kb-count'), status: $('kb-status'), empty: $('kb-empty'),
        search: $('kb-search'), filter: $('kb-filter'), form: $('kb-upload'), file: $('kb-file'),
        title: $('kb-title'), submit: $('kb-submit'),
      });
    }
    state.kb.refresh();
  } else if (state.section === 'reports') {
    if (!state.reports) {
      state.reports = new ReportsView(state.api, {
        form: $('report-period'), from: $('report-from'), to: $('report-to'), tz: $('report-tz'),
        kpis: $('report-kpis'), charts: $('report-charts'), todo: $('todo-list'),
        todoCount: $('todo-count'), status: $('report-status'),
      });
    }
    state.reports.refresh();
  }
}

function sectionFromHash() {
  const match = /^#(kb|reports|queue)$/.exec(window.location.hash);
  return match ? match[1] : 'queue';
}

function showSignIn(message = '') {
  showView('signin');
  $('signin-error').textContent = message;
  const input = $('staff-key');
  input.setAttribute('aria-invalid', message ? 'true' : 'false');
  input.focus();
}

/** Exchange the key for a socket token: proves the key and tells us the agent's name. */
async function signIn(key) {
  const api = new StaffApi(key);
  const token = await api.socketToken(true);
  saveKey(key);
  state.api = api;
  state.me = token.agent;
  startConsole();
}

function startConsole() {
  $('agent-name').textContent = state.me;
  showView('console');
  if (!ticketView) {
    ticketView = new TicketView(state, {
      onTicket: (t) => state.queue && state.queue.apply({ type: 'ticket', change: 'updated', ticket: t }),
    });
  }
  state.ticket = ticketView;
  state.queue = new Queue(
    state.api,
    { list: $('queue'), count: $('queue-count'), empty: $('queue-empty'), status: $('queue-status') },
    { me: state.me, onOpen: openTicket, onChange: (t) => state.ticket.update(t) },
  );
  state.feed = new LiveSocket({
    url: async (force) => socketUrl('/ws/console', { token: (await state.api.socketToken(force)).value }),
    onEvent: onFeedEvent,
    onState: setConn,
    onFinal: (code, reason) => {
      if (code === 4003) signOut(`Signed out: ${sentence(reason || 'the staff key is no longer accepted')}`);
    },
  });
  state.feed.start();
  state.queue.refresh().then(openFromHash);
  showSection(sectionFromHash());
  if (state.section === 'queue') $('queue-heading').focus();
}

function onFeedEvent(ev) {
  if (ev.type === 'connected' || ev.type === 'resync') state.queue.refresh(); // the DB is the record
  else if (ev.type === 'ticket') state.queue.apply(ev);
}

async function openTicket(id) {
  let ticket = state.queue.get(id);
  if (!ticket) {
    try {
      ticket = await state.api.ticket(id);
    } catch (err) {
      $('queue-status').textContent = `That ticket could not be opened: ${sentence(err.message)}`;
      return;
    }
  }
  if (state.section !== 'queue') showSection('queue');
  state.queue.select(id);
  history.replaceState(null, '', `#ticket=${encodeURIComponent(id)}`);
  state.ticket.open(ticket);
}

function openFromHash() {
  const match = /^#ticket=([\w-]{1,64})$/.exec(window.location.hash);
  if (match && state.ticket) openTicket(decodeURIComponent(match[1]));
}

function signOut(message = '') {
  if (state.feed) state.feed.stop();
  if (state.ticket) state.ticket.close();
  if (state.queue) state.queue.destroy();
  if (state.kb) state.kb.destroy();
  if (state.reports) state.reports.destroy();
  Object.assign(state, {
    api: null, me: null, queue: null, ticket: null, feed: null, kb: null, reports: null, section: 'queue',
  });
  forgetKey();
  history.replaceState(null, '', window.location.pathname);
  $('ticket-view').hidden = true;
  $('ticket-placeholder').hidden = false;
  $('staff-key').value = '';
  showSignIn(message);
}

function bindSignIn() {
  $('signin').addEventListener('submit', async (e) => {
    e.preventDefault();
    const key = $('staff-key').value.trim();
    if (!key) { showSignIn('Enter your staff key.'); return; }
    const button = $('signin-submit');
    button.disabled = true;
    $('signin-error').textContent = '';
    try {
      await signIn(key);
    } catch (err) {
      showSignIn(err instanceof ApiError ? sentence(err.message) : 'Signing in failed. Try again.');
    } finally {
      button.disabled = false;
    }
  });
  $('signout').addEventListener('click', () => signOut());
  window.addEventListener('hashchange', () => {
    if (state.api && !window.location.hash.startsWith('#ticket=')) showSection(sectionFromHash());
  });
}

async function resume() {
  const key = savedKey();
  if (!key) { showSignIn(); return; }
  try {
    await signIn(key);
  } catch (err) {
    if (err.status === 401) forgetKey(); // a network blip keeps the key for the next try
    showSignIn(sentence(err.message));
  }
}

// Test and debugging hooks: what a flaky network does to the console.
window.helplineConsole = {
  dropConnection: () => state.feed && state.feed.drop(),
  dropSession: () => state.ticket && state.ticket.socket && state.ticket.socket.drop(),
  get agent() { return state.me; },
};

bindSignIn();
resume();
