// The customer chat: the page at `/` and the widget's frame at `/embed` run this same module.
//
// Protocol (see webapp/ws.py): persisted events carry a per-session `seq` and are replayed
// after `?after=<seq>` on reconnect; ephemeral ones (start, status, sources, text, typing)
// do not. We keep the highest seq seen in localStorage and drop anything at or below it, and
// also dedupe messages by id and our own sends by client_msg_id, so a replay, a REST retry
// or a second tab never shows a message twice.
//
// Ownership: a conversation is answered by the bot, waits for a person, or is with a named
// person (`owner`: bot | waiting | person). The page learns it from GET /api/sessions/<id> at
// boot and from the escalation / agent_joined / agent_left events afterwards. Those events are
// shown as notices placed by seq; on a reload the first socket asks for the whole log
// (after=0) so earlier notices come back, each rendered once per seq.
//
// Everything from the server is rendered with textContent / DOM nodes, never as HTML.

import { announce, formatSize, h, stripCitations, uuid } from '../shared/dom.js';
import { request, socketUrl } from '../shared/http.js';
import { t } from '../shared/i18n.js';
import { LiveSocket } from '../shared/socket.js';
import { clock } from '../shared/time.js';
import { addFeedback } from './feedback.js';
import { contactBox, ratingForm } from './forms.js';
import { attachmentEl, renderSources, renderText, updateAttachmentEl } from './render.js';
import { Stickiness } from './scroll.js';

var STORAGE_KEY = 'helpline.session';
var BACKOFF_BASE_MS = 500;
var BACKOFF_MAX_MS = 15000;
var PING_EVERY_MS = 20000;
var SILENCE_LIMIT_MS = 50000;
var TYPING_REPEAT_MS = 2500;
var TYPING_IDLE_MS = 3000;
var AGENT_TYPING_TIMEOUT_MS = 8000;
var HISTORY_PAGE = 500;
var LOW_CONFIDENCE = { low_confidence: true, not_in_knowledge_base: true };

var dom = {};
var state = {
  session: null, // {session_id, token, last_seq}
  generation: 0, // bumped per conversation; late async results of an old one are dropped
  socket: null, // LiveSocket of the current conversation
  connected: false, // its `connected` event arrived (the server is talking to us)
  unreachable: false, // the socket keeps failing and REST cannot reach the server either
  ended: false,
  ready: false, // a session is open and its history shown
  rendered: new Map(), // message id -> <li>
  outbox: new Map(), // client_msg_id -> pending send
  inflight: [], // client_msg_ids sent on the current socket, awaiting acknowledged/error
  streams: new Map(), // reply_to (user message id) -> streaming assistant reply
  answered: new Set(), // user message ids whose stored reply we have shown
  uploads: [], // files attached to the next message
  attachmentInfo: new Map(), // attachment id -> latest known status
  typing: { active: false, lastSent: 0, idleTimer: null },
  agentTypingTimer: null,
  owner: 'bot', // bot | waiting | person | ended
  ownerKnown: false, // the server told us the owner (GET /api/sessions/<id>)
  agentName: null,
  ticketId: null,
  availability: null, // of the latest escalation
  notices: new Set(), // seqs of ownership events already rendered
  replayFromStart: false, // the first socket after a reload asks for the whole log
  overdue: new Map(), // user message id -> timer until "still working on it" shows
};

// Set by start(): the overdue delay, where to tell the widget's host page, branding.
var options = { overdueSeconds: 10, notify: function () {}, persist: function () {}, saved: null };
var scroll = null;

// ---------------------------------------------------------------- persistence
// The page keeps its conversation in localStorage. In the widget's frame that storage is
// third-party and often blocked or wiped (Safari, Firefox, Chrome without third-party
// cookies), so the host page's loader keeps it: `options.saved` is what it gave us at start
// and `options.persist` hands it every change.
function validSaved(data) {
  if (!data || typeof data.session_id !== 'string' || typeof data.token !== 'string') return null;
  data.last_seq = Number.isInteger(data.last_seq) && data.last_seq >= 0 ? data.last_seq : 0;
  return data;
}

function loadSaved() {
  if (options.saved) return validSaved(Object.assign({}, options.saved));
  try {
    return validSaved(JSON.parse(window.localStorage.getItem(STORAGE_KEY) || 'null'));
  } catch (err) { /* unreadable or blocked storage: start afresh */ }
  return null;
}

function save() {
  if (!state.session) return;
  var data = {
    session_id: state.session.session_id,
    token: state.session.token,
    last_seq: state.session.last_seq,
    rated: state.session.rated === true || undefined,
    contact_email: state.session.contact_email || undefined,
  };
  options.saved = data;
  options.persist(data);
  try {
    window.localStorage.setItem(STORAGE_KEY, JSON.stringify(data));
  } catch (err) { /* storage full or blocked: the page still works, just won't resume */ }
}

function forget() {
  options.saved = null;
  options.persist(null);
  try { window.localStorage.removeItem(STORAGE_KEY); } catch (err) { /* ignore */ }
}

// ---------------------------------------------------------------- HTTP
function api(method, path, opts) {
  opts = opts || {};
  var headers = {};
  var token = opts.token || (state.session && state.session.token);
  if (token && opts.auth !== false) headers.Authorization = 'Bearer ' + token;
  return request(method, path, {
    headers: headers, json: opts.json, form: opts.form, networkMessage: t('network'),
  }).then(function (data) {
    if (state.unreachable) serverBack();
    return data;
  }, function (err) {
    if (err.status === 0) serverUnreachable();
    else if (state.unreachable) serverBack();
    throw err;
  });
}

function sessionPath(suffix) {
  return '/api/chat/sessions/' + encodeURIComponent(state.session.session_id) + suffix;
}

// ---------------------------------------------------------------- status, errors, a11y
function setConn(kind, detail) {
  dom.conn.dataset.state = kind;
  dom.connLabel.textContent = detail || t('conn.' + kind);
}

// The server cannot be reached (socket failing and a request lost on the network): say so
// once, plainly, instead of "Reconnecting…" forever; cleared the moment anything gets through.
function serverUnreachable() {
  if (state.unreachable || state.ended) return;
  state.unreachable = true;
  document.body.dataset.unreachable = 'true';
  if (!state.connected) setConn('unreachable');
  showError(t('unreachable'), { code: 'unreachable' });
}

function serverBack() {
  state.unreachable = false;
  delete document.body.dataset.unreachable;
  var box = dom.errors.querySelector('.error[data-code="unreachable"]');
  if (box) box.remove();
}

function showError(message, opts) {
  opts = opts || {};
  var text = String(message || t('somethingWrong'));
  // The same message twice in a row is shown once.
  var existing = Array.prototype.find.call(dom.errors.children, function (n) {
    return n.dataset.message === text;
  });
  if (existing) existing.remove();
  var close = h('button', {
    type: 'button', class: 'error__close', 'aria-label': t('dismiss'),
  }, '×');
  var box = h('div', { class: 'error', role: 'alert', 'data-code': opts.code || null },
    h('span', { class: 'error__icon', 'aria-hidden': 'true' }, '!'),
    h('p', { class: 'error__text', text: text }),
    close);
  box.dataset.message = text;
  close.addEventListener('click', function () {
    box.remove();
    dom.input.focus();
  });
  dom.errors.append(box);
  while (dom.errors.children.length > 3) dom.errors.firstElementChild.remove();
}

function clearErrors() {
  dom.errors.textContent = '';
}

function withScroll(fn, force) {
  var result = fn();
  if (force) scroll.toEnd();
  return result;
}

// ---------------------------------------------------------------- message DOM
function agentLabel(name) {
  return name ? t('agentFrom', { name: name }) : t('author.agent');
}

/** "15:41" for an API timestamp; a message not stored yet shows the browser's time now. */
function formatTime(iso) {
  return clock(iso) || clock(new Date().toISOString());
}

function initials(name) {
  var words = String(name || '').trim().split(/\s+/).filter(Boolean);
  if (!words.length) return 'SA';
  var letters = words.length > 1 ? words[0][0] + words[words.length - 1][0] : words[0].slice(0, 2);
  return letters.toUpperCase();
}

function messageEl(role, timestamp, agentName) {
  var author = role === 'agent' ? agentLabel(agentName) : t('author.' + role);
  var avatar = role === 'user' ? null : h('span', { class: 'msg__avatar', 'aria-hidden': 'true' },
    role === 'agent' ? initials(agentName) : 'H');
  var time = h('time', { class: 'msg__time', datetime: timestamp || new Date().toISOString() },
    formatTime(timestamp));
  var meta = h('div', { class: 'msg__meta' },
    h('span', { class: 'msg__author', text: author }),
    role === 'agent' ? h('span', { class: 'badge', text: t('person') }) : null,
    time);
  var text = h('div', { class: 'msg__text' });
  var bubble = h('div', { class: 'msg__bubble' }, text);
  var body = h('div', { class: 'msg__body' }, meta, bubble);
  var li = h('li', { class: 'msg msg--' + role, 'data-role': role }, avatar, body);
  li._parts = { text: text, bubble: bubble, body: body, time: time };
  return li;
}

function appendMessage(li) {
  dom.welcome.hidden = true;
  dom.messages.append(li);
  scroll.added(li);
  return li;
}

function seqOf(el) {
  var n = el.dataset ? parseInt(el.dataset.seq, 10) : NaN;
  return isFinite(n) ? n : null;
}

// Replayed items (notices after a reload) go where their seq puts them; live ones at the end.
function placeBySeq(li, seq) {
  if (typeof seq !== 'number') return appendMessage(li);
  var next = null;
  for (var node = dom.messages.lastElementChild; node; node = node.previousElementSibling) {
    var n = seqOf(node);
    if (n === null) continue;
    if (n > seq) next = node;
    else break;
  }
  if (!next) return appendMessage(li);
  dom.welcome.hidden = true;
  dom.messages.insertBefore(li, next);
  scroll.added(li);
  return li;
}

function setTimestamp(li, iso) {
  if (!iso) return;
  li._parts.time.setAttribute('datetime', iso);
  li._parts.time.textContent = formatTime(iso);
}

function onAttachmentUpdate(info) {
  if (!info || !info.attachment_id) return;
  var merged = Object.assign({}, state.attachmentInfo.get(info.attachment_id) || {}, info);
  state.attachmentInfo.set(info.attachment_id, merged);
  var sel = '.attachment[data-attachment-id="' + CSS.escape(info.attachment_id) + '"]';
  document.querySelectorAll(sel).forEach(function (li) { updateAttachmentEl(li, merged); });
  state.uploads.forEach(function (u) {
    if (u.info && u.info.attachment_id === info.attachment_id) u.info = merged;
  });
}

function addAttachments(li, list) {
  if (!list || !list.length) return;
  var ul = h('ul', { class: 'attachments', 'aria-label': t('attachedFiles') });
  list.forEach(function (info) {
    var known = info.attachment_id && state.attachmentInfo.get(info.attachment_id);
    var merged = Object.assign({}, info, known || {});
    if (merged.attachment_id) state.attachmentInfo.set(merged.attachment_id, merged);
    ul.append(attachmentEl(merged, false));
  });
  li._parts.bubble.append(ul);
}

// ---------------------------------------------------------------- overdue answers
// A stored question whose answer has not started (or whose stream went quiet) within
// ANSWER_OVERDUE_SECONDS says so under the question: "still working on it", and later that
// it is taking much longer than usual. "Sent" alone would claim all is well.

function armOverdue(userId) {
  clearOverdue(userId);
  if (!userId || state.answered.has(userId)) return;
  var ms = options.overdueSeconds * 1000;
  var timer = setTimeout(function () {
    showOverdue(userId, false);
    var later = setTimeout(function () { showOverdue(userId, true); }, ms * 2);
    state.overdue.set(userId, later);
  }, ms);
  state.overdue.set(userId, timer);
}

function clearOverdue(userId) {
  clearTimeout(state.overdue.get(userId));
  state.overdue.delete(userId);
  var li = state.rendered.get(userId);
  if (li && li._parts.overdue) {
    li._parts.overdue.remove();
    li._parts.overdue = null;
    delete li.dataset.overdue;
  }
  var s = state.streams.get(userId);
  if (s) delete s.el.dataset.overdue;
}

function clearAllOverdue() {
  Array.from(state.overdue.keys()).forEach(clearOverdue);
}

function showOverdue(userId, long) {
  if (state.answered.has(userId) || state.owner !== 'bot') return;
  var text = long ? t('overdueLong') : t('overdue');
  var s = state.streams.get(userId);
  if (s) { // the answer started and went quiet
    s.el.dataset.overdue = 'true';
    setWorking(s, text);
    return;
  }
  var li = state.rendered.get(userId);
  if (!li) return;
  li.dataset.overdue = long ? 'long' : 'true';
  var box = li._parts.overdue;
  if (!box) {
    box = h('p', { class: 'msg__overdue', role: 'status' },
      h('span', { class: 'spinner', 'aria-hidden': 'true' }), h('span', { class: 'msg__overdue-text' }));
    li._parts.overdue = box;
    li._parts.body.append(box);
  }
  box.querySelector('.msg__overdue-text').textContent = text;
  options.notify('overdue');
}

// ---------------------------------------------------------------- user messages
function setSendStatus(rec, status, reason) {
  rec.status = status;
  var li = rec.el;
  li.dataset.status = status;
  var line = li._parts.status;
  if (!line) {
    line = h('div', { class: 'msg__status' });
    li._parts.status = line;
    li._parts.body.append(line);
  }
  line.textContent = t('send.' + status);
  if (status === 'failed') {
    if (reason) line.append(document.createTextNode(' · ' + reason));
    var retry = h('button', { type: 'button', class: 'link-btn' }, t('retry'));
    retry.addEventListener('click', function () {
      if (state.outbox.get(rec.clientId) === rec) deliver(rec);
    });
    line.append(document.createTextNode(' '), retry);
  }
  if (rec.kind === 'handoff') updateHandoffControls();
}

function markSent(rec, messageId, seq) {
  if (state.outbox.get(rec.clientId) !== rec) return;
  state.outbox.delete(rec.clientId);
  if (messageId) {
    rec.el.dataset.id = messageId;
    state.rendered.set(messageId, rec.el);
  }
  if (typeof seq === 'number') rec.el.dataset.seq = seq;
  setSendStatus(rec, 'sent');
  if (rec.kind === 'message' && messageId && state.owner === 'bot') armOverdue(messageId);
  if (rec.kind === 'handoff') {
    // Stored: a person has been asked for (the escalation event says who and when).
    if (state.owner === 'bot') setOwner('waiting');
    updateHandoffControls();
  }
}

function isPersonRequest(m) {
  return !!(m && m.metadata && m.metadata.request === 'person');
}

function userMessageEl(timestamp, request) {
  var li = messageEl('user', timestamp);
  if (request) {
    li.classList.add('msg--request');
    li.dataset.request = 'person';
    li._parts.text.textContent = t('requestText');
  }
  return li;
}

function showUserMessage(m) {
  if (state.rendered.has(m.id)) return;
  var rec = m.client_msg_id && state.outbox.get(m.client_msg_id);
  if (rec) {
    markSent(rec, m.id, m.seq);
    setTimestamp(rec.el, m.timestamp);
    return;
  }
  var request = isPersonRequest(m);
  var li = userMessageEl(m.timestamp, request);
  li.dataset.id = m.id;
  li.dataset.seq = m.seq;
  li.dataset.status = 'sent';
  if (!request) li._parts.text.textContent = m.content || '';
  addAttachments(li, m.attachments);
  state.rendered.set(m.id, li);
  placeBySeq(li, m.seq);
}

function messageAgent(m) {
  var meta = (m && m.metadata) || {};
  var name = meta.agent;
  if (name && typeof name === 'object') name = name.name;
  return typeof name === 'string' && name.trim() ? name.trim() : null;
}

function showAgentMessage(m, live) {
  if (state.rendered.has(m.id)) return;
  var name = messageAgent(m);
  var li = messageEl('agent', m.timestamp, name);
  li.dataset.id = m.id;
  li.dataset.seq = m.seq;
  if (name) li.dataset.agent = name;
  li._parts.text.textContent = m.content || '';
  addAttachments(li, m.attachments);
  state.rendered.set(m.id, li);
  placeBySeq(li, m.seq);
  if (live) {
    hideAgentTyping();
    announce(agentLabel(name) + ': ' + (m.content || ''));
    options.notify('message');
  }
}

// ---------------------------------------------------------------- assistant replies
var STATUS_KEYS = { searching: 1, generating: 1, restarting: 1 };

function streamFor(ev) {
  var replyTo = ev.reply_to;
  if (!replyTo || state.answered.has(replyTo)) return null;
  if (ev.message_id && state.rendered.has(ev.message_id)) return null;
  var s = state.streams.get(replyTo);
  if (!s) {
    var li = messageEl('assistant', ev.timestamp);
    li.dataset.state = 'streaming';
    li.setAttribute('aria-busy', 'true');
    var indicator = h('div', { class: 'msg__working' },
      h('span', { class: 'spinner', 'aria-hidden': 'true' }),
      h('span', { class: 'msg__working-text', text: t('status.thinking') }));
    li._parts.bubble.prepend(indicator);
    li._parts.working = indicator;
    s = { replyTo: replyTo, messageId: ev.message_id, text: '', sources: [], el: li };
    state.streams.set(replyTo, s);
    appendMessage(li);
  }
  if (state.owner === 'bot') armOverdue(replyTo); // a stream that goes quiet is overdue too
  return s;
}

function setWorking(s, label) {
  var w = s.el._parts.working;
  if (!w) return;
  if (label) {
    w.hidden = false;
    w.querySelector('.msg__working-text').textContent = label;
  } else {
    w.hidden = true;
  }
}

function paintStream(s) {
  withScroll(function () {
    renderText(s.el._parts.text, s.text, s.sources, s.messageId);
    renderSources(s.el, s.sources, s.messageId);
  });
}

function resetStream(s, messageId) {
  if (messageId) s.messageId = messageId;
  s.text = '';
  s.sources = [];
  paintStream(s);
}

function onStart(ev) {
  var s = streamFor(ev);
  if (!s) return;
  resetStream(s, ev.message_id);
  setWorking(s, t('status.thinking'));
}

function onStatus(ev) {
  if (ev.state === 'withdrawn') return withdrawStream(ev);
  var s = streamFor(ev);
  if (!s) return;
  if (ev.state === 'restarting') resetStream(s, ev.message_id);
  if (ev.message_id && ev.message_id !== s.messageId) return;
  setWorking(s, STATUS_KEYS[ev.state] ? t('status.' + ev.state) : null);
}

// A person took the conversation while the bot was still writing: that reply is never stored.
function withdrawStream(ev) {
  var s = ev.reply_to ? state.streams.get(ev.reply_to) : null;
  if (ev.reply_to) {
    state.answered.add(ev.reply_to); // late deltas of it are ignored
    clearOverdue(ev.reply_to);
  }
  if (!s || (ev.message_id && s.messageId && ev.message_id !== s.messageId)) return;
  state.streams.delete(ev.reply_to);
  s.el.remove();
}

function onSources(ev) {
  var s = streamFor(ev);
  if (!s || (ev.message_id && ev.message_id !== s.messageId)) return;
  s.sources = Array.isArray(ev.sources) ? ev.sources : [];
  paintStream(s);
}

function onText(ev) {
  var s = streamFor(ev);
  if (!s) return;
  if (!s.messageId) s.messageId = ev.message_id;
  if (ev.message_id && ev.message_id !== s.messageId) return;
  s.text += typeof ev.content === 'string' ? ev.content : '';
  setWorking(s, null);
  paintStream(s);
}

function showAssistantMessage(m, live) {
  if (state.rendered.has(m.id)) return state.rendered.get(m.id);
  var s = m.reply_to_id ? state.streams.get(m.reply_to_id) : null;
  var li;
  if (s) {
    li = s.el;
    state.streams.delete(m.reply_to_id);
    if (li._parts.working) {
      li._parts.working.remove();
      li._parts.working = null;
    }
    setTimestamp(li, m.timestamp);
  } else {
    li = placeBySeq(messageEl('assistant', m.timestamp), m.seq);
  }
  if (m.reply_to_id) {
    state.answered.add(m.reply_to_id);
    clearOverdue(m.reply_to_id);
  }
  li.dataset.id = m.id;
  li.dataset.seq = m.seq;
  li.dataset.state = 'complete';
  li.removeAttribute('aria-busy');
  withScroll(function () {
    renderText(li._parts.text, m.content, m.sources, m.id);
    renderSources(li, m.sources, m.id);
  });
  state.rendered.set(m.id, li);
  addFeedback(li, m, sendFeedback);
  var meta = m.metadata || {};
  if (!live && meta.requires_escalation && LOW_CONFIDENCE[meta.escalation_reason]) {
    // An unsure answer always came with an offer of a person: shown again from history
    // (the replayed escalation event would add it too, once). A handover's notice comes
    // from its own escalation event.
    addOffer(li);
  }
  if (live) {
    announce(t('author.assistant') + ': ' + stripCitations(m.content));
    options.notify('message');
  }
  return li;
}

function sendFeedback(messageId, body) {
  return api('POST', sessionPath('/messages/' + encodeURIComponent(messageId) + '/feedback'), {
    json: body,
  });
}

// ---------------------------------------------------------------- ownership
var OWNERS = { bot: 1, waiting: 1, ended: 1 };

function ownerLabel(owner, name) {
  if (owner === 'person') return agentLabel(name);
  return t('owner.' + (OWNERS[owner] ? owner : 'bot'));
}

function setOwner(owner, agentName) {
  if (['bot', 'waiting', 'person', 'ended'].indexOf(owner) < 0) owner = 'bot';
  state.owner = owner;
  if (agentName !== undefined) state.agentName = agentName || null;
  dom.ownerStatus.textContent = ownerLabel(owner, state.agentName);
  dom.ownerStatus.dataset.owner = owner;
  dom.owner.dataset.owner = owner;
  document.body.dataset.owner = owner;
  dom.input.placeholder = owner === 'person'
    ? t('placeholder.person', { name: state.agentName || t('ourTeam') })
    : t('placeholder.' + (OWNERS[owner] ? owner : 'bot'));
  if (owner !== 'bot') clearAllOverdue(); // no bot answer is coming: nothing is late
  updateHandoffControls();
}

function handoffPending() {
  var pending = false;
  state.outbox.forEach(function (rec) {
    if (rec.kind === 'handoff' && rec.status !== 'failed') pending = true;
  });
  return pending;
}

// "Talk to a person" (header and offers) only while the bot answers and nothing is pending.
function updateHandoffControls() {
  var available = !state.ended && state.owner === 'bot';
  var usable = available && state.ready && !!state.session && !handoffPending();
  dom.talk.hidden = !available;
  dom.talk.disabled = !usable;
  document.querySelectorAll('.notice--offer .notice__action').forEach(function (b) {
    b.hidden = !available;
    b.disabled = !usable;
  });
}

function requestPerson() {
  if (!state.session || state.ended || state.owner !== 'bot' || handoffPending()) return;
  state.outbox.forEach(function (old) { // a failed earlier attempt gives way to this one
    if (old.kind === 'handoff') {
      state.outbox.delete(old.clientId);
      if (old.el) old.el.remove();
    }
  });
  var rec = {
    kind: 'handoff',
    clientId: uuid(),
    content: '',
    attachmentIds: [],
    status: 'sending',
    restInFlight: false,
  };
  var li = userMessageEl(null, true);
  li.dataset.clientMsgId = rec.clientId;
  rec.el = li;
  state.outbox.set(rec.clientId, rec);
  withScroll(function () { appendMessage(li); }, true);
  deliver(rec);
  updateHandoffControls();
  announce(t('requestAnnounce'));
}

// The server already has a person on this conversation: drop our request, learn the state.
function handoffRefused(rec, message) {
  var idx = state.inflight.indexOf(rec.clientId);
  if (idx >= 0) state.inflight.splice(idx, 1);
  if (state.outbox.get(rec.clientId) === rec) state.outbox.delete(rec.clientId);
  if (rec.el) rec.el.remove();
  showError(message || 'A member of our team has already been asked to join.',
    { code: 'already_with_person' });
  refreshSession();
  updateHandoffControls();
}

function applySessionInfo(info) {
  if (!info) return;
  if (typeof info.owner === 'string') {
    state.ownerKnown = true;
    var agent = info.agent && typeof info.agent === 'object' ? info.agent.name : info.agent;
    setOwner(info.owner, typeof agent === 'string' ? agent : null);
  }
  if (Object.prototype.hasOwnProperty.call(info, 'ticket_id')) {
    state.ticketId = info.ticket_id || null;
  }
}

function refreshSession() {
  if (!state.session) return;
  var gen = state.generation;
  api('GET', '/api/sessions/' + encodeURIComponent(state.session.session_id)).then(function (info) {
    if (gen === state.generation) applySessionInfo(info);
  }, function () { /* the next event tells us anyway */ });
}

function eventAgentName(ev) {
  var agent = ev && ev.agent;
  var name = agent && typeof agent === 'object' ? agent.name : agent;
  return typeof name === 'string' && name.trim() ? name.trim() : null;
}

function nobodyCanAnswer(availability) {
  return !!availability &&
    (availability.in_hours === false || availability.agents_online === 0);
}

// One system notice per event seq: a replay (reload, reconnect) never adds a second.
function showNotice(ev, kind, text, modifier) {
  if (typeof ev.seq === 'number') {
    if (state.notices.has(ev.seq)) return null;
    state.notices.add(ev.seq);
  }
  var notice = h('div', { class: 'notice ' + modifier, 'data-kind': kind },
    h('span', { class: 'notice__icon', 'aria-hidden': 'true' }),
    h('p', { class: 'notice__text', text: text }));
  var li = h('li', { class: 'msg msg--system', 'data-kind': kind, 'data-seq': ev.seq }, notice);
  li._parts = { notice: notice };
  withScroll(function () { placeBySeq(li, ev.seq); });
  return li;
}

function addOffer(li) {
  if (li && li.querySelector(':scope > .msg__body > .notice--offer')) return;
  var button = h('button', { type: 'button', class: 'btn btn--secondary notice__action' },
    t('talk'));
  button.addEventListener('click', requestPerson);
  var notice = h('div', { class: 'notice notice--offer', 'data-kind': 'offer' },
    h('p', { class: 'notice__text', text: t('offer') }), button);
  if (li) withScroll(function () { li._parts.body.append(notice); });
  else appendMessage(h('li', { class: 'msg msg--system', 'data-kind': 'offer' }, notice));
  updateHandoffControls();
}

function onEscalation(ev, replay) {
  if (!ev.required) {
    // Only an offer: it sits under the reply it belongs to (the event follows that reply).
    var target = typeof ev.seq === 'number'
      ? dom.messages.querySelector('.msg--assistant[data-seq="' + (ev.seq - 1) + '"]') : null;
    if (!target && replay) return; // shown from the message's metadata already
    if (!target) {
      var all = dom.messages.querySelectorAll('.msg--assistant[data-state="complete"]');
      target = all.length ? all[all.length - 1] : null;
    }
    addOffer(target);
    return;
  }
  if (!replay || !state.ownerKnown) {
    if (ev.ticket_id) state.ticketId = ev.ticket_id;
    state.availability = ev.availability || null;
    if (state.owner !== 'person' && state.owner !== 'ended') setOwner('waiting');
  }
  var text = typeof ev.notice === 'string' && ev.notice.trim() ? ev.notice : t('waiting');
  var li = showNotice(ev, 'escalation', text, 'notice--handoff');
  if (!li) return;
  var current = !replay || !ev.ticket_id || !state.ticketId || ev.ticket_id === state.ticketId;
  if (nobodyCanAnswer(ev.availability) && state.owner === 'waiting' && current) addContact(li);
  if (!replay) announce(text);
}

function onAgentJoined(ev, replay) {
  var name = eventAgentName(ev);
  if (!replay || !state.ownerKnown) {
    if (ev.ticket_id) state.ticketId = ev.ticket_id;
    setOwner('person', name);
  }
  // Someone is here: an email address is no longer needed.
  var form = document.getElementById('contact-form');
  if (form) form.closest('.contact').remove();
  var text = typeof ev.notice === 'string' && ev.notice.trim()
    ? ev.notice : t('joined', { who: agentLabel(name) });
  var li = showNotice(ev, 'agent_joined', text, 'notice--joined');
  if (li && !replay) announce(text);
}

function agentLeftText(ev, name) {
  var who = agentLabel(name);
  if (ev.reason === 'released') return t('leftReleased', { who: who });
  if (ev.owner === 'ended') return t('leftEnded', { who: who });
  return t('leftBot', { who: who });
}

function onAgentLeft(ev, replay) {
  var name = eventAgentName(ev) || state.agentName;
  var owner = ev.owner || (ev.reason === 'released' ? 'waiting' : 'bot');
  if (!replay || !state.ownerKnown) {
    if (owner === 'bot') state.ticketId = null;
    setOwner(owner, null);
  }
  if (!replay) hideAgentTyping();
  var text = typeof ev.notice === 'string' && ev.notice.trim() ? ev.notice : agentLeftText(ev, name);
  var li = showNotice(ev, 'agent_left', text, 'notice--left');
  if (!li) return;
  if (ev.rating_offer) offerRating(li);
  if (!replay) announce(text);
}

// ---------------------------------------------------------------- email, rating (forms.js)
// What the forms need of the current conversation; a late answer for an old one is dropped.
function formContext() {
  var session = state.session;
  var gen = state.generation;
  return {
    session: session,
    current: function () { return gen === state.generation; },
    save: function () { if (state.session === session) save(); },
    post: function (suffix, body) {
      return api('POST', '/api/sessions/' + encodeURIComponent(session.session_id) + suffix, {
        json: body, token: session.token,
      });
    },
  };
}

function addContact(li) {
  var box = contactBox(formContext());
  if (box) withScroll(function () { li.append(box); });
}

function offerRating(li) {
  var form = ratingForm(formContext());
  if (form) withScroll(function () { li.append(form); });
}

// ---------------------------------------------------------------- session status
function setEnded(ended, opts) {
  state.ended = ended;
  dom.input.disabled = ended || !state.session;
  dom.send.disabled = ended || !state.session;
  dom.attach.disabled = ended || !state.session;
  var old = dom.messages.querySelector('.msg--ended');
  if (!ended) {
    if (old) old.remove();
    updateHandoffControls();
    return;
  }
  setConn('ended');
  setOwner('ended');
  hideAgentTyping();
  var li = old;
  if (!li) {
    var button = h('button', { type: 'button', class: 'btn btn--primary' },
      t('startNew'));
    button.addEventListener('click', newConversation);
    li = appendMessage(h('li', { class: 'msg msg--system msg--ended' },
      h('div', { class: 'notice notice--ended', 'data-kind': 'ended' },
        h('p', { class: 'notice__text' }, t('ended')), button)));
  }
  if (opts && opts.rating) offerRating(li);
}

function onSessionStatus(ev) {
  if (ev.status === 'ended' || ev.status === 'deleted') {
    closeSocket();
    setEnded(true, { rating: ev.status === 'ended' && ev.rating_offer === true });
    announce(t('ended'));
  }
}

// ---------------------------------------------------------------- typing
function showAgentTyping(on, name) {
  clearTimeout(state.agentTypingTimer);
  if (on) {
    dom.agentTypingText.textContent =
      t('typing', { name: name || state.agentName || t('author.agent') });
  }
  withScroll(function () { dom.agentTyping.hidden = !on; });
  if (on) state.agentTypingTimer = setTimeout(hideAgentTyping, AGENT_TYPING_TIMEOUT_MS);
}

function hideAgentTyping() {
  showAgentTyping(false);
}

function sendTyping(on) {
  if (!state.socket || !state.connected) return;
  state.socket.send({ type: 'typing', is_typing: on });
}

function noteTyping() {
  var typing = state.typing;
  var now = Date.now();
  if (!dom.input.value.trim()) {
    stopTyping();
    return;
  }
  if (!typing.active || now - typing.lastSent > TYPING_REPEAT_MS) {
    typing.active = true;
    typing.lastSent = now;
    sendTyping(true);
  }
  clearTimeout(typing.idleTimer);
  typing.idleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
}

function stopTyping() {
  var typing = state.typing;
  clearTimeout(typing.idleTimer);
  if (typing.active) {
    typing.active = false;
    sendTyping(false);
  }
}

// ---------------------------------------------------------------- events
function bumpSeq(seq) {
  if (!state.session || typeof seq !== 'number' || seq <= state.session.last_seq) return;
  state.session.last_seq = seq;
  save();
}

function onAcknowledged(ev) {
  var idx = state.inflight.indexOf(ev.client_msg_id);
  if (idx >= 0) state.inflight.splice(idx, 1);
  var rec = ev.client_msg_id && state.outbox.get(ev.client_msg_id);
  if (rec) markSent(rec, ev.message_id, ev.seq);
  bumpSeq(ev.seq);
}

function refuse(rec, ev) {
  if (rec.kind === 'handoff' && ev.code === 'already_with_person') {
    handoffRefused(rec, ev.message);
    return;
  }
  setSendStatus(rec, 'failed', ev.message);
  showError(ev.message || t('somethingWrong'), { code: ev.code });
}

function onErrorEvent(ev) {
  // A refused message names its client_msg_id; otherwise frames are answered in order.
  if (ev.client_msg_id && state.outbox.get(ev.client_msg_id)) {
    var idx = state.inflight.indexOf(ev.client_msg_id);
    if (idx >= 0) state.inflight.splice(idx, 1);
    refuse(state.outbox.get(ev.client_msg_id), ev);
    return;
  }
  while (ev.code !== 'unknown_type' && state.inflight.length) {
    var rec = state.outbox.get(state.inflight.shift());
    if (rec) {
      refuse(rec, ev);
      return;
    }
  }
  showError(ev.message || t('somethingWrong'), { code: ev.code });
  if (ev.code === 'already_with_person') refreshSession();
}

// An event seen before (the whole log is replayed to the first socket after a reload):
// render whatever is not on the page yet, in its place; the state came from the server.
function onReplayed(ev) {
  switch (ev.type) {
    case 'user_message': if (ev.message) showUserMessage(ev.message); break;
    case 'agent_message': if (ev.message) showAgentMessage(ev.message, false); break;
    case 'complete': if (ev.message) showAssistantMessage(ev.message, false); break;
    case 'escalation': onEscalation(ev, true); break;
    case 'agent_joined': onAgentJoined(ev, true); break;
    case 'agent_left': onAgentLeft(ev, true); break;
    default: break; // attachments, statuses: history already shows the latest
  }
}

function handleEvent(ev) {
  if (!ev || typeof ev.type !== 'string') return;
  if (ev.session_id && state.session && ev.session_id !== state.session.session_id) return;
  if (ev.type === 'acknowledged') return onAcknowledged(ev);
  if (typeof ev.seq === 'number') {
    var seen = ev.seq <= state.session.last_seq;
    if (!seen || ev.seq === state.session.last_seq) state.replayFromStart = false;
    if (seen) {
      onReplayed(ev);
      return;
    }
  }
  switch (ev.type) {
    case 'connected': onConnected(ev); break;
    case 'user_message': if (ev.message) showUserMessage(ev.message); break;
    case 'agent_message': if (ev.message) showAgentMessage(ev.message, true); break;
    case 'start': onStart(ev); break;
    case 'status': onStatus(ev); break;
    case 'sources': onSources(ev); break;
    case 'text': onText(ev); break;
    case 'complete': if (ev.message) showAssistantMessage(ev.message, true); break;
    case 'escalation': onEscalation(ev, false); break;
    case 'agent_joined': onAgentJoined(ev, false); break;
    case 'agent_left': onAgentLeft(ev, false); break;
    case 'attachment':
      onAttachmentUpdate(Object.assign({}, ev.attachment || {}, {
        attachment_id: ev.attachment_id, status: ev.status, preview: ev.preview, error: ev.error,
      }));
      break;
    case 'user_typing':
      if (ev.role === 'agent') showAgentTyping(ev.is_typing !== false, eventAgentName({ agent: ev.name }));
      break;
    case 'session_status': onSessionStatus(ev); break;
    case 'error': onErrorEvent(ev); break;
    default: break; // pong and future event types
  }
  bumpSeq(ev.seq);
}

// ---------------------------------------------------------------- socket
// One LiveSocket per conversation (shared/socket.js: backoff, heartbeat, final close codes);
// each attempt asks for what we missed (`after=`), the whole log once after a reload.

function connect() {
  if (!state.session || state.ended) return;
  if (!state.socket) {
    var session = state.session;
    state.socket = new LiveSocket({
      url: function () {
        return Promise.resolve(socketUrl('/ws', {
          session_id: session.session_id,
          token: session.token,
          after: String(state.replayFromStart ? 0 : session.last_seq || 0),
        }));
      },
      onEvent: handleEvent,
      onState: onSocketState,
      onFinal: onSocketFinal,
      retryAuth: false, // a customer's token does not expire: 4003 means it is wrong
      heartbeat: { every: PING_EVERY_MS, silence: SILENCE_LIMIT_MS },
    });
  }
  state.socket.start();
}

function onConnected() {
  state.connected = true;
  state.inflight = [];
  if (state.unreachable) serverBack();
  setConn('online');
  // Anything not yet confirmed goes again with the same client_msg_id (the server dedupes).
  state.outbox.forEach(function (rec) {
    if (!rec.restInFlight && rec.status !== 'failed') deliver(rec);
  });
}

function socketLost() {
  state.connected = false;
  state.inflight = [];
  hideAgentTyping();
  state.typing.active = false; // the next keystroke says "typing" again on the new socket
}

function onSocketState(kind, detail) {
  if (kind === 'online' || kind === 'closed') return; // "connected" (the event) says online
  if (kind === 'connecting') {
    if (!state.connected) setConn('connecting');
    return;
  }
  // reconnecting: unconfirmed sends do not wait for the socket, REST takes them (same
  // client_msg_id); a second failure in a row means the server is out of reach.
  socketLost();
  state.outbox.forEach(function (rec) {
    if (rec.status === 'sending' && !rec.restInFlight) sendViaRest(rec);
  });
  if (navigator.onLine === false) setConn('offline');
  else if (state.socket && state.socket.failures >= 2) serverUnreachable();
  if (navigator.onLine === false) return;
  // A request may have found the server out of reach while this socket still looked open
  // (its close event comes later): the indicator says so now, never "Connected".
  if (state.unreachable) setConn('unreachable');
  else setConn('reconnecting', detail > 1 ? t('conn.reconnectingIn', { seconds: detail }) : null);
}

function onSocketFinal(code, reason) {
  socketLost();
  if (code === 4009) {
    setEnded(true);
    return;
  }
  setConn('error');
  showError((reason || t('cannotOpen')) + ' ' + t('startNewToContinue'), { code: 'ws_' + code });
}

function closeSocket() {
  if (state.socket) state.socket.stop();
  state.socket = null;
  state.connected = false;
  state.inflight = [];
}

// ---------------------------------------------------------------- sending
function deliver(rec) {
  setSendStatus(rec, 'sending');
  if (state.socket && state.connected) {
    // A request for a person is structured, never a sentence the bot has to interpret.
    var sent = state.socket.send(rec.kind === 'handoff'
      ? { type: 'handoff', client_msg_id: rec.clientId }
      : {
        type: 'message',
        content: rec.content,
        client_msg_id: rec.clientId,
        attachment_ids: rec.attachmentIds,
      });
    if (sent) {
      state.inflight.push(rec.clientId);
      return;
    }
  }
  sendViaRest(rec);
}

function sendViaRest(rec) {
  if (rec.restInFlight || !state.session) return;
  var gen = state.generation;
  rec.restInFlight = true;
  setSendStatus(rec, 'sending');
  var request = rec.kind === 'handoff'
    ? api('POST', '/api/sessions/' + encodeURIComponent(state.session.session_id) + '/handoff', {
      json: { client_msg_id: rec.clientId },
    })
    : api('POST', sessionPath('/messages'), {
      json: { message: rec.content, client_msg_id: rec.clientId, attachment_ids: rec.attachmentIds },
    });
  request.then(function (res) {
    rec.restInFlight = false;
    if (gen !== state.generation) return;
    markSent(rec, res && res.message_id, res && res.seq);
  }, function (err) {
    rec.restInFlight = false;
    if (gen !== state.generation || state.outbox.get(rec.clientId) !== rec) return;
    if (err.status === 0) {
      setSendStatus(rec, 'queued'); // sent again as soon as the socket is back
      if (state.connected) deliver(rec);
    } else if (rec.kind === 'handoff' && err.code === 'already_with_person') {
      handoffRefused(rec, err.message);
    } else {
      setSendStatus(rec, 'failed', err.message);
      showError(err.message, { code: err.code });
      if (err.code === 'session_not_active') setEnded(true);
    }
  });
}

function sendText(content, uploads) {
  if (!state.session || state.ended) return;
  var infos = uploads.map(function (u) { return u.info; });
  var rec = {
    kind: 'message',
    clientId: uuid(),
    content: content,
    attachmentIds: infos.map(function (i) { return i.attachment_id; }),
    status: 'sending',
    restInFlight: false,
  };
  var li = messageEl('user');
  li.dataset.clientMsgId = rec.clientId;
  li._parts.text.textContent = content;
  addAttachments(li, infos);
  rec.el = li;
  state.outbox.set(rec.clientId, rec);
  withScroll(function () { appendMessage(li); }, true);
  deliver(rec);
}

function submit() {
  if (!state.session || state.ended) return;
  if (state.uploads.some(function (u) { return u.status === 'uploading'; })) {
    showError(t('waitUpload'));
    return;
  }
  var text = dom.input.value.trim();
  var uploads = state.uploads.filter(function (u) { return u.info && u.info.attachment_id; });
  if (!text && !uploads.length) {
    dom.input.focus();
    return;
  }
  dom.input.value = '';
  autosize();
  stopTyping();
  state.uploads = [];
  renderPendingUploads();
  sendText(text || ATTACHMENT_ONLY_TEXT, uploads);
  dom.input.focus();
}

// ---------------------------------------------------------------- uploads
function renderPendingUploads() {
  dom.pending.textContent = '';
  state.uploads.forEach(function (u) {
    var li = attachmentEl(Object.assign({ filename: u.name, size: u.size }, u.info || {}, {
      status: u.status === 'uploading' ? 'uploading' : (u.info && u.info.status) || u.status,
    }), true);
    li._parts.remove.addEventListener('click', function () {
      state.uploads = state.uploads.filter(function (x) { return x !== u; });
      renderPendingUploads();
      dom.input.focus();
    });
    dom.pending.append(li);
  });
  dom.pending.hidden = state.uploads.length === 0;
}

function uploadFailedMessage(name, err) {
  var vars = { name: name, message: err.message };
  if (err.status === 413) return t('tooLarge', vars);
  if (err.status === 415) return t('unsupported', vars);
  if (err.status === 0) return t('uploadNetwork', vars);
  return t('uploadFailed', vars);
}

function upload(file) {
  if (!state.session || state.ended) return;
  var limitMb = parseInt(document.body.dataset.maxUploadMb, 10);
  if (limitMb > 0 && file.size > limitMb * 1024 * 1024) {
    showError(t('tooLargeLocal', { name: file.name, size: formatSize(file.size), limit: limitMb }),
      { code: 'file_too_large' });
    return;
  }
  var gen = state.generation;
  var u = { name: file.name, size: file.size, status: 'uploading', info: null };
  state.uploads.push(u);
  renderPendingUploads();
  var form = new FormData();
  form.append('session_id', state.session.session_id);
  form.append('file', file, file.name);
  api('POST', '/api/chat/upload', { form: form }).then(function (res) {
    if (gen !== state.generation) return;
    u.status = 'uploaded';
    u.info = Object.assign({}, res, state.attachmentInfo.get(res.attachment_id) || {});
    state.attachmentInfo.set(res.attachment_id, u.info);
    renderPendingUploads();
    announce(t('uploaded', { name: file.name }));
  }, function (err) {
    if (gen !== state.generation) return;
    state.uploads = state.uploads.filter(function (x) { return x !== u; });
    renderPendingUploads();
    showError(uploadFailedMessage(file.name, err), { code: err.code });
  });
}

// ---------------------------------------------------------------- conversation lifecycle
function resetView() {
  closeSocket();
  clearAllOverdue();
  serverBack();
  state.rendered = new Map();
  state.outbox = new Map();
  state.streams = new Map();
  state.answered = new Set();
  state.uploads = [];
  state.attachmentInfo = new Map();
  state.ended = false;
  state.notices = new Set();
  state.ownerKnown = false;
  state.ticketId = null;
  state.availability = null;
  state.replayFromStart = false;
  setConn('connecting');
  dom.messages.textContent = '';
  dom.welcome.hidden = false;
  renderPendingUploads();
  hideAgentTyping();
  clearErrors();
  setOwner('bot', null);
}

function setReady(ready) {
  state.ready = ready;
  dom.input.disabled = !ready;
  dom.send.disabled = !ready;
  dom.attach.disabled = !ready;
  dom.newConversation.disabled = false;
  updateHandoffControls();
}

function loadHistory(gen) {
  function page(after) {
    return api('GET', sessionPath('/messages?limit=' + HISTORY_PAGE + '&after=' + after))
      .then(function (data) {
        if (gen !== state.generation) return null;
        var messages = (data && data.messages) || [];
        messages.forEach(function (m) {
          if (m.role === 'user') showUserMessage(m);
          else if (m.role === 'assistant') showAssistantMessage(m, false);
          else if (m.role === 'agent') showAgentMessage(m, false);
        });
        if (messages.length < HISTORY_PAGE) return null;
        return page(messages[messages.length - 1].seq);
      });
  }
  return page(0).then(function () {
    if (gen !== state.generation) return;
    scroll.toEnd();
    // A question still unanswered when the page (re)loads is watched like a live one.
    var users = dom.messages.querySelectorAll('.msg--user[data-id]');
    var last = users[users.length - 1];
    if (last && state.owner === 'bot' && !last.dataset.request) armOverdue(last.dataset.id);
  });
}

// Resolves to {session, info}: the saved session while it is still open, else a new one.
function openSession(fresh) {
  var saved = fresh ? null : loadSaved();
  if (!saved) return createSession();
  return api('GET', '/api/sessions/' + encodeURIComponent(saved.session_id), {
    token: saved.token,
  }).then(function (info) {
    if (info && info.status !== 'ended') return { session: saved, info: info };
    return createSession();
  }, function (err) {
    if (err.status === 0 || err.status >= 500) throw err; // try again later, keep the session
    return createSession();
  });
}

function createSession() {
  return api('POST', '/api/sessions', { json: { metadata: { channel: 'web' } }, auth: false })
    .then(function (res) {
      return { session: { session_id: res.session_id, token: res.token, last_seq: 0 }, info: res };
    });
}

var bootAttempt = 0;
function boot(fresh) {
  var gen = ++state.generation;
  setConn('connecting');
  setReady(false);
  return openSession(fresh).then(function (opened) {
    if (gen !== state.generation) return null;
    state.session = opened.session;
    // Seen before this page loaded: ask the socket for the whole log once, so earlier
    // notices come back (each once); the owner is what the server says now.
    state.replayFromStart = state.session.last_seq > 0;
    applySessionInfo(opened.info);
    save();
    return loadHistory(gen).then(function () {
      if (gen !== state.generation) return;
      bootAttempt = 0;
      setReady(true);
      connect();
    });
  }).catch(function (err) {
    if (gen !== state.generation) return;
    var delay = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, bootAttempt++));
    if (err && err.status === 0) {
      serverUnreachable();
    } else {
      setConn('error', t('conn.unreachable'));
      showError((err && err.message) || t('couldNotStart'), { code: err && err.code });
    }
    setTimeout(function () { if (gen === state.generation) boot(fresh); }, delay);
  });
}

// Discarding a conversation is asked first (in the page: a native confirm() would block the
// socket and cannot be styled or translated), unless there is nothing to lose.
function confirmNewConversation() {
  var hasContent = dom.messages.querySelector('.msg--user, .msg--assistant, .msg--agent');
  if (!hasContent || state.ended || typeof dom.confirm.showModal !== 'function') {
    newConversation();
    return;
  }
  dom.confirm.returnValue = '';
  dom.confirm.showModal();
  dom.confirmOk.focus();
}

function newConversation() {
  var old = state.session;
  dom.newConversation.disabled = true;
  resetView();
  state.session = null;
  forget();
  var ending = old
    ? api('PATCH', '/api/sessions/' + encodeURIComponent(old.session_id), {
      json: { status: 'ended' }, token: old.token,
    }).catch(function (err) {
      if (err.status !== 401 && err.status !== 403 && err.status !== 404) {
        showError(t('previousNotClosed', { message: err.message }));
      }
    })
    : Promise.resolve();
  return ending.then(function () { return boot(true); }).then(function () {
    dom.newConversation.disabled = false;
    announce(t('newStarted'));
    if (!dom.input.disabled) dom.input.focus();
  });
}

// ---------------------------------------------------------------- wiring
function autosize() {
  dom.input.style.height = 'auto';
  dom.input.style.height = Math.min(dom.input.scrollHeight, 180) + 'px';
}

/** Start the chat in this document; `opts`: overdueSeconds, and for the widget's frame
 * notify(kind), persist(saved) and the saved conversation the host page kept. */
export function start(opts) {
  Object.assign(options, opts || {});
  dom.conn = document.getElementById('conn');
  dom.connLabel = dom.conn.querySelector('.conn__label');
  dom.newConversation = document.getElementById('new-conversation');
  dom.scroller = document.getElementById('conversation');
  dom.welcome = document.getElementById('welcome');
  dom.messages = document.getElementById('messages');
  dom.agentTyping = document.getElementById('agent-typing');
  dom.agentTypingText = dom.agentTyping.querySelector('.typing__text');
  dom.ownerStatus = document.getElementById('owner-status');
  dom.owner = dom.ownerStatus.closest('.owner') || dom.ownerStatus;
  dom.talk = document.getElementById('talk-to-person');
  dom.announcer = document.getElementById('announcer');
  dom.errors = document.getElementById('errors');
  dom.form = document.getElementById('composer');
  dom.pending = document.getElementById('pending-attachments');
  dom.fileInput = document.getElementById('file-input');
  dom.attach = document.getElementById('attach');
  dom.input = document.getElementById('composer-input');
  dom.send = document.getElementById('send');
  dom.confirm = document.getElementById('confirm-new');
  dom.confirmOk = document.getElementById('confirm-new-ok');
  scroll = new Stickiness(dom.scroller, dom.messages, document.getElementById('new-message-pill'));

  var maxChars = parseInt(document.body.dataset.maxMessageChars, 10);
  if (maxChars > 0) dom.input.maxLength = maxChars;

  dom.form.addEventListener('submit', function (e) {
    e.preventDefault();
    submit();
  });
  dom.input.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    } else if (e.key === 'Escape' && dom.errors.lastElementChild) {
      dom.errors.lastElementChild.remove();
    }
  });
  dom.input.addEventListener('input', function () {
    autosize();
    noteTyping();
  });
  dom.input.addEventListener('blur', stopTyping);
  dom.attach.addEventListener('click', function () { dom.fileInput.click(); });
  dom.fileInput.addEventListener('change', function () {
    Array.prototype.forEach.call(dom.fileInput.files || [], upload);
    dom.fileInput.value = '';
    dom.input.focus();
  });
  dom.newConversation.addEventListener('click', confirmNewConversation);
  dom.confirm.addEventListener('close', function () {
    if (dom.confirm.returnValue === 'confirm') newConversation();
    else dom.newConversation.focus();
  });
  dom.talk.addEventListener('click', requestPerson);
  window.addEventListener('pagehide', stopTyping);
  document.querySelectorAll('[data-suggestion]').forEach(function (b) {
    b.addEventListener('click', function () {
      if (!state.session || state.ended) return;
      sendText(b.textContent.trim(), []);
      dom.input.focus();
    });
  });
  // Citation links without an article URL scroll to their source, leaving the URL alone.
  dom.messages.addEventListener('click', function (e) {
    var link = e.target.closest && e.target.closest('a.cite__link');
    if (!link || link.getAttribute('href').charAt(0) !== '#') return;
    var target = document.getElementById(link.getAttribute('href').slice(1));
    if (!target) return;
    e.preventDefault();
    target.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
    target.classList.remove('is-highlighted');
    void target.offsetWidth; // restart the highlight animation
    target.classList.add('is-highlighted');
    target.focus({ preventScroll: true });
  });
  window.addEventListener('online', function () {
    if (state.socket && !state.ended) state.socket.wake();
  });
  window.addEventListener('offline', function () {
    if (!state.connected) setConn('offline');
  });

  // A small handle for tests and debugging (no secrets beyond what localStorage holds).
  window.helplineChat = Object.freeze({
    get socket() { return state.socket && state.socket.ws; },
    get sessionId() { return state.session && state.session.session_id; },
    get lastSeq() { return state.session ? state.session.last_seq : 0; },
    get owner() { return state.owner; },
    dropConnection: function () { if (state.socket) state.socket.drop(); },
  });

  boot(false);
}
