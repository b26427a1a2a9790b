// Helpline agent console: sign in with a staff key, watch the live queue, open a ticket.
// Vanilla ES modules, no build step; every piece of data reaches the page as text.

import { ApiError, StaffApi, forgetKey, saveKey, savedKey, socketUrl } from './console/api.js';
import { Queue } from './console/queue.js';
import { LiveSocket } from './shared/socket.js';
import { TicketView } from './console/ticket.js';
import { sentence } from './console/util.js';

const $ = (id) => document.getElementById(id);
const CONN_WORDS = {
  connecting: 'Connecting…', online: 'Live', reconnecting: 'Reconnecting…', closed: 'Offline',
};

const state = { api: null, me: null, queue: null, ticket: null, feed: null };
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
  $('console').hidden = name !== 'console';
  $('session-bar').hidden = name !== 'console';
  $('skip-queue').hidden = name !== 'console';
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
  $('queue-heading').focus();
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
  Object.assign(state, { api: null, me: null, queue: null, ticket: null, feed: null });
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
