/* Helpline customer chat page: plain JavaScript, no build step, no third-party code.
 *
 * Protocol (see webapp/ws.py): persisted events carry a per-session `seq` and are replayed
 * after `?after=<seq>` on reconnect; ephemeral ones (start, status, sources, text, typing)
 * do not. We keep the highest seq seen in localStorage and drop anything at or below it, and
 * also dedupe messages by id and our own sends by client_msg_id, so a replay, a REST retry
 * or a second tab never shows a message twice.
 *
 * Ownership: a conversation is answered by the bot, waits for a person, or is with a named
 * person (`owner`: bot | waiting | person). The page learns it from GET /api/sessions/<id> at
 * boot and from the escalation / agent_joined / agent_left events afterwards. Those events are
 * shown as notices placed by seq; on a reload the first socket asks for the whole log
 * (after=0) so earlier notices come back, each rendered once per seq.
 *
 * Everything from the server is rendered with textContent / DOM nodes, never as HTML.
 */
(function () {
  'use strict';

  var STORAGE_KEY = 'helpline.session';
  var NO_RECONNECT = [4001, 4003, 4004, 4009];
  var BACKOFF_BASE_MS = 500;
  var BACKOFF_MAX_MS = 15000;
  var PING_EVERY_MS = 20000;
  var SILENCE_LIMIT_MS = 50000;
  var TYPING_REPEAT_MS = 2500;
  var TYPING_IDLE_MS = 3000;
  var AGENT_TYPING_TIMEOUT_MS = 8000;
  var HISTORY_PAGE = 500;
  var REQUEST_TEXT = 'You asked to talk to a person';
  var ATTACHMENT_ONLY_TEXT = 'Please see the attached file.';
  var LOW_CONFIDENCE = { low_confidence: true, not_in_knowledge_base: true };
  var CITATION = /\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]/g;

  var dom = {};
  var state = {
    session: null, // {session_id, token, last_seq}
    generation: 0, // bumped per conversation; late async results of an old one are dropped
    ws: null,
    connected: false,
    attempt: 0,
    reconnectTimer: null,
    pingTimer: null,
    lastHeard: 0,
    pingId: 0,
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
  };

  // ---------------------------------------------------------------- small helpers
  function h(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        var value = attrs[key];
        if (value === null || value === undefined || value === false) return;
        if (key === 'class') node.className = value;
        else if (key === 'text') node.textContent = value;
        else node.setAttribute(key, value === true ? '' : String(value));
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return node;
  }

  function uuid() {
    if (window.crypto && typeof window.crypto.randomUUID === 'function') {
      return window.crypto.randomUUID();
    }
    var bytes = new Uint8Array(16);
    if (window.crypto && window.crypto.getRandomValues) window.crypto.getRandomValues(bytes);
    else for (var i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map.call(bytes, function (b) {
      return (b + 0x100).toString(16).slice(1);
    }).join('');
    return hex.slice(0, 8) + '-' + hex.slice(8, 12) + '-' + hex.slice(12, 16) + '-' +
      hex.slice(16, 20) + '-' + hex.slice(20);
  }

  function safeId(raw) {
    return String(raw || '').replace(/[^A-Za-z0-9_-]/g, '');
  }

  function formatSize(bytes) {
    if (typeof bytes !== 'number' || !isFinite(bytes)) return '';
    if (bytes < 1024) return bytes + ' B';
    if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(bytes < 10240 ? 1 : 0) + ' KB';
    return (bytes / (1024 * 1024)).toFixed(1) + ' MB';
  }

  function formatTime(iso) {
    var date = iso ? new Date(iso) : new Date();
    if (isNaN(date.getTime())) date = new Date();
    return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  function stripCitations(text) {
    return String(text || '').replace(/\s*\[\d{1,3}(?:\s*,\s*\d{1,3})*\]/g, '');
  }

  // ---------------------------------------------------------------- persistence
  function loadSaved() {
    try {
      var data = JSON.parse(window.localStorage.getItem(STORAGE_KEY) || 'null');
      if (data && typeof data.session_id === 'string' && typeof data.token === 'string') {
        data.last_seq = Number.isInteger(data.last_seq) && data.last_seq >= 0 ? data.last_seq : 0;
        return data;
      }
    } catch (err) { /* unreadable or blocked storage: start afresh */ }
    return null;
  }

  function save() {
    if (!state.session) return;
    try {
      window.localStorage.setItem(STORAGE_KEY, JSON.stringify({
        session_id: state.session.session_id,
        token: state.session.token,
        last_seq: state.session.last_seq,
        rated: state.session.rated === true || undefined,
        contact_email: state.session.contact_email || undefined,
      }));
    } catch (err) { /* storage full or blocked: the page still works, just won't resume */ }
  }

  function forget() {
    try { window.localStorage.removeItem(STORAGE_KEY); } catch (err) { /* ignore */ }
  }

  // ---------------------------------------------------------------- HTTP
  function ApiError(status, code, message) {
    this.status = status;
    this.code = code;
    this.message = message;
  }

  function api(method, path, opts) {
    opts = opts || {};
    var headers = {};
    var token = opts.token || (state.session && state.session.token);
    if (token && opts.auth !== false) headers.Authorization = 'Bearer ' + token;
    var body;
    if (opts.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(opts.json);
    } else if (opts.form) {
      body = opts.form;
    }
    return fetch(path, { method: method, headers: headers, body: body, cache: 'no-store' })
      .catch(function () {
        throw new ApiError(0, 'network_error',
          'Could not reach the server. Please check your connection.');
      })
      .then(function (resp) {
        return resp.text().catch(function () { return ''; }).then(function (text) {
          var data = null;
          try { data = text ? JSON.parse(text) : null; } catch (err) { data = null; }
          if (!resp.ok) {
            var e = data && data.error;
            throw new ApiError(resp.status, (e && e.code) || 'http_' + resp.status,
              (e && e.message) || 'The request failed (HTTP ' + resp.status + ').');
          }
          return data;
        });
      });
  }

  function sessionPath(suffix) {
    return '/api/chat/sessions/' + encodeURIComponent(state.session.session_id) + suffix;
  }

  // ---------------------------------------------------------------- status, errors, a11y
  var CONN_LABELS = {
    connecting: 'Connecting…',
    online: 'Connected',
    reconnecting: 'Reconnecting…',
    offline: 'Offline',
    ended: 'Conversation ended',
    error: 'Disconnected',
  };

  function setConn(kind, detail) {
    dom.conn.dataset.state = kind;
    dom.connLabel.textContent = detail || CONN_LABELS[kind] || kind;
  }

  function showError(message, opts) {
    opts = opts || {};
    var text = String(message || 'Something went wrong.');
    // The same message twice in a row is shown once.
    var existing = Array.prototype.find.call(dom.errors.children, function (n) {
      return n.dataset.message === text;
    });
    if (existing) existing.remove();
    var close = h('button', {
      type: 'button', class: 'error__close', 'aria-label': 'Dismiss this message',
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

  var announceTimer = null;
  function announce(text) {
    clearTimeout(announceTimer);
    dom.announcer.textContent = '';
    announceTimer = setTimeout(function () { dom.announcer.textContent = text; }, 60);
  }

  function nearBottom() {
    var s = dom.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 120;
  }

  function scrollToEnd(force) {
    if (force || nearBottom()) dom.scroller.scrollTop = dom.scroller.scrollHeight;
  }

  function withScroll(fn, force) {
    var stick = force || nearBottom();
    var result = fn();
    if (stick) dom.scroller.scrollTop = dom.scroller.scrollHeight;
    return result;
  }

  // ---------------------------------------------------------------- message DOM
  var AUTHORS = { user: 'You', assistant: 'Helpline assistant', agent: 'Support agent' };

  function agentLabel(name) {
    return name ? name + ' from support' : AUTHORS.agent;
  }

  function initials(name) {
    var words = String(name || '').trim().split(/\s+/).filter(Boolean);
    if (!words.length) return 'SA';
    var letters = words.length > 1 ? words[0][0] + words[words.length - 1][0] : words[0].slice(0, 2);
    return letters.toUpperCase();
  }

  function messageEl(role, timestamp, agentName) {
    var author = role === 'agent' ? agentLabel(agentName) : AUTHORS[role] || 'Helpline';
    var avatar = role === 'user' ? null : h('span', { class: 'msg__avatar', 'aria-hidden': 'true' },
      role === 'agent' ? initials(agentName) : 'H');
    var time = h('time', { class: 'msg__time', datetime: timestamp || new Date().toISOString() },
      formatTime(timestamp));
    var meta = h('div', { class: 'msg__meta' },
      h('span', { class: 'msg__author', text: author }),
      role === 'agent' ? h('span', { class: 'badge', text: 'Person' }) : null,
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
    withScroll(function () { dom.messages.append(li); });
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
    return li;
  }

  function setTimestamp(li, iso) {
    if (!iso) return;
    li._parts.time.setAttribute('datetime', iso);
    li._parts.time.textContent = formatTime(iso);
  }

  function sourceDomId(key, n) {
    return 'src-' + safeId(key) + '-' + n;
  }

  function renderText(container, text, sources, key) {
    container.textContent = '';
    text = String(text || '');
    var byIndex = new Map();
    (sources || []).forEach(function (s) { if (s) byIndex.set(Number(s.index), s); });
    CITATION.lastIndex = 0;
    var last = 0;
    var match;
    while ((match = CITATION.exec(text)) !== null) {
      if (match.index > last) container.append(document.createTextNode(text.slice(last, match.index)));
      var sup = h('sup', { class: 'cite' });
      match[1].split(',').forEach(function (part, i) {
        var n = parseInt(part.trim(), 10);
        var src = byIndex.get(n);
        if (i) sup.append(document.createTextNode(' '));
        if (src) {
          sup.append(h('a', {
            class: 'cite__link',
            href: '#' + sourceDomId(key, n),
            'aria-label': 'Source ' + n + ': ' + (src.title || 'help article'),
            'data-source': n,
          }, String(n)));
        } else {
          sup.append(h('span', { class: 'cite__plain' }, String(n)));
        }
      });
      container.append(sup);
      last = CITATION.lastIndex;
    }
    if (last < text.length) container.append(document.createTextNode(text.slice(last)));
  }

  function renderSources(li, sources, key) {
    var old = li.querySelector(':scope > .msg__body > .sources');
    if (old) old.remove();
    if (!sources || !sources.length) return;
    var headingId = 'sources-' + safeId(key);
    var list = h('ol', { class: 'sources__list', 'aria-labelledby': headingId });
    sources.slice().sort(function (a, b) { return a.index - b.index; }).forEach(function (s) {
      var ref = s.external_id ? h('span', { class: 'source__ref', text: s.external_id }) : null;
      list.append(h('li', {
        class: 'source', id: sourceDomId(key, s.index), tabindex: '-1', value: s.index,
      },
      h('span', { class: 'source__num', 'aria-hidden': 'true' }, String(s.index)),
      h('div', { class: 'source__body' },
        h('p', { class: 'source__head' },
          h('span', { class: 'source__title', text: s.title || 'Help article' }), ref),
        s.snippet ? h('p', { class: 'source__snippet', text: s.snippet }) : null)));
    });
    var box = h('div', { class: 'sources' },
      h('h3', { class: 'sources__title', id: headingId }, 'Sources'), list);
    li._parts.body.append(box);
  }

  function attachmentEl(info, removable) {
    var li = h('li', { class: 'attachment', 'data-attachment-id': info.attachment_id || null });
    var icon = h('span', { class: 'attachment__icon', 'aria-hidden': 'true' });
    var name = h('span', { class: 'attachment__name', text: info.filename || 'file' });
    var size = h('span', { class: 'attachment__size', text: formatSize(info.size) });
    var status = h('span', { class: 'attachment__status' });
    var preview = h('span', { class: 'attachment__preview', hidden: true });
    var main = h('div', { class: 'attachment__main' },
      h('div', { class: 'attachment__line' }, name, size), status, preview);
    li.append(icon, main);
    li._parts = { status: status, preview: preview, name: name, size: size };
    if (removable) {
      var remove = h('button', {
        type: 'button', class: 'attachment__remove',
        'aria-label': 'Remove ' + (info.filename || 'file'),
      }, '×');
      li.append(remove);
      li._parts.remove = remove;
    }
    updateAttachmentEl(li, info);
    return li;
  }

  var ATTACHMENT_LABELS = {
    uploading: 'Uploading…',
    queued: 'Uploaded · processing…',
    processing: 'Processing…',
    processed: 'Ready',
    failed: 'Could not be read',
  };

  function updateAttachmentEl(li, info) {
    // "done" is the worker's newer word for a file read successfully.
    var status = info.status === 'done' ? 'processed' : info.status || 'queued';
    li.dataset.status = status;
    var label = ATTACHMENT_LABELS[status] || status;
    if (status === 'failed' && info.error) label += ': ' + info.error;
    li._parts.status.textContent = label;
    if (info.preview && status !== 'failed') {
      li._parts.preview.textContent = info.preview;
      li._parts.preview.hidden = false;
    }
    if (info.size !== undefined && info.size !== null) {
      li._parts.size.textContent = formatSize(info.size);
    }
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
    var ul = h('ul', { class: 'attachments', 'aria-label': 'Attached files' });
    list.forEach(function (info) {
      var known = info.attachment_id && state.attachmentInfo.get(info.attachment_id);
      var merged = Object.assign({}, info, known || {});
      if (merged.attachment_id) state.attachmentInfo.set(merged.attachment_id, merged);
      ul.append(attachmentEl(merged, false));
    });
    li._parts.bubble.append(ul);
  }

  // ---------------------------------------------------------------- user messages
  var SEND_LABELS = {
    sending: 'Sending…',
    queued: 'Waiting for connection…',
    sent: 'Sent',
    failed: 'Not sent',
  };

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
    line.textContent = SEND_LABELS[status] || status;
    if (status === 'failed') {
      if (reason) line.append(document.createTextNode(' · ' + reason));
      var retry = h('button', { type: 'button', class: 'link-btn' }, 'Retry');
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
      li._parts.text.textContent = REQUEST_TEXT;
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
    }
  }

  // ---------------------------------------------------------------- assistant replies
  var STATUS_LABELS = {
    searching: 'Searching the help centre…',
    generating: 'Writing a reply…',
    restarting: 'Trying again…',
  };

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
        h('span', { class: 'msg__working-text', text: 'Thinking…' }));
      li._parts.bubble.prepend(indicator);
      li._parts.working = indicator;
      s = { replyTo: replyTo, messageId: ev.message_id, text: '', sources: [], el: li };
      state.streams.set(replyTo, s);
      appendMessage(li);
    }
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
    setWorking(s, 'Thinking…');
  }

  function onStatus(ev) {
    if (ev.state === 'withdrawn') return withdrawStream(ev);
    var s = streamFor(ev);
    if (!s) return;
    if (ev.state === 'restarting') resetStream(s, ev.message_id);
    if (ev.message_id && ev.message_id !== s.messageId) return;
    setWorking(s, STATUS_LABELS[ev.state] || null);
  }

  // A person took the conversation while the bot was still writing: that reply is never stored.
  function withdrawStream(ev) {
    var s = ev.reply_to ? state.streams.get(ev.reply_to) : null;
    if (ev.reply_to) state.answered.add(ev.reply_to); // late deltas of it are ignored
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
    if (m.reply_to_id) state.answered.add(m.reply_to_id);
    li.dataset.id = m.id;
    li.dataset.seq = m.seq;
    li.dataset.state = 'complete';
    li.removeAttribute('aria-busy');
    withScroll(function () {
      renderText(li._parts.text, m.content, m.sources, m.id);
      renderSources(li, m.sources, m.id);
    });
    state.rendered.set(m.id, li);
    var meta = m.metadata || {};
    if (!live && meta.requires_escalation && LOW_CONFIDENCE[meta.escalation_reason]) {
      // An unsure answer always came with an offer of a person: shown again from history
      // (the replayed escalation event would add it too, once). A handover's notice comes
      // from its own escalation event.
      addOffer(li);
    }
    if (live) announce('Helpline assistant: ' + stripCitations(m.content));
    return li;
  }

  // ---------------------------------------------------------------- ownership
  var OWNER_LABELS = {
    bot: 'Assistant',
    waiting: 'Waiting for a person',
    ended: 'Conversation ended',
  };
  var PLACEHOLDERS = {
    bot: 'Type your message…',
    waiting: 'Add anything our team should know…',
    ended: 'This conversation has ended',
  };
  var OFFER_TEXT = 'Not what you needed? A member of our team can help.';
  var WAITING_TEXT = 'A member of our team has been asked to join. Please stay in this chat; ' +
    'they will reply here.';
  var RATING_WORDS = ['Very poor', 'Poor', 'OK', 'Good', 'Excellent'];

  function ownerLabel(owner, name) {
    if (owner === 'person') return agentLabel(name);
    return OWNER_LABELS[owner] || OWNER_LABELS.bot;
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
      ? 'Message ' + (state.agentName || 'our support team') + '…'
      : PLACEHOLDERS[owner] || PLACEHOLDERS.bot;
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
    announce('You asked to talk to a person.');
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
      'Talk to a person');
    button.addEventListener('click', requestPerson);
    var notice = h('div', { class: 'notice notice--offer', 'data-kind': 'offer' },
      h('p', { class: 'notice__text', text: OFFER_TEXT }), button);
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
    var text = typeof ev.notice === 'string' && ev.notice.trim() ? ev.notice : WAITING_TEXT;
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
      ? ev.notice : agentLabel(name) + ' joined the chat';
    var li = showNotice(ev, 'agent_joined', text, 'notice--joined');
    if (li && !replay) announce(text);
  }

  function agentLeftText(ev, name) {
    var who = agentLabel(name);
    if (ev.reason === 'released') {
      return who + ' left the chat. You are back in the queue: another member of our team ' +
        'will join you here.';
    }
    if (ev.owner === 'ended') return who + ' has finished helping you. This conversation has ended.';
    return who + ' has finished helping you. The assistant is back: ask anything, or ask for ' +
      'a person again.';
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

  // ---------------------------------------------------------------- email when nobody is in
  function contactDone(email) {
    return h('p', { id: 'contact-done', class: 'contact__done', role: 'status' },
      "We'll reply to " + email);
  }

  function addContact(li) {
    var session = state.session;
    if (!session || document.getElementById('contact-form') ||
        document.getElementById('contact-done')) return;
    var box = h('div', { class: 'contact' });
    if (session.contact_email) {
      box.append(contactDone(session.contact_email));
      li.append(box);
      return;
    }
    var gen = state.generation;
    var input = h('input', {
      type: 'email', id: 'contact-email', class: 'contact__input', autocomplete: 'email',
      inputmode: 'email', required: true, maxlength: '254', placeholder: 'you@example.com',
      'aria-describedby': 'contact-error',
    });
    var submit = h('button', { type: 'submit', class: 'btn btn--primary' }, 'Send');
    var error = h('p', { id: 'contact-error', class: 'contact__error', role: 'alert', hidden: true });
    var form = h('form', { id: 'contact-form', class: 'contact__form', novalidate: true },
      h('label', { for: 'contact-email', class: 'contact__label' },
        'Leave your email address and we will reply there:'),
      h('div', { class: 'contact__row' }, input, submit),
      error);

    function fail(text) {
      error.textContent = text;
      error.hidden = false;
      input.setAttribute('aria-invalid', 'true');
      submit.disabled = false;
      input.focus();
    }

    form.addEventListener('submit', function (e) {
      e.preventDefault();
      var email = input.value.trim();
      if (!email) return fail('Please enter your email address so that we can reply.');
      if (input.validity && input.validity.typeMismatch) {
        return fail('That does not look like an email address. Please check it and try again.');
      }
      error.hidden = true;
      input.removeAttribute('aria-invalid');
      submit.disabled = true;
      api('POST', '/api/sessions/' + encodeURIComponent(session.session_id) + '/contact', {
        json: { email: email }, token: session.token,
      }).then(function (res) {
        if (gen !== state.generation) return;
        session.contact_email = (res && res.contact_email) || email;
        save();
        form.replaceWith(contactDone(session.contact_email));
        announce("Thanks. We'll reply to " + session.contact_email + '.');
      }, function (err) {
        if (gen !== state.generation) return;
        if (err.status === 422) {
          fail('That email address does not look right. Please check it and try again.');
        } else if (err.status === 409) {
          fail('There is no open request for a person to add your email to. ' + err.message);
        } else {
          fail(err.message);
        }
      });
    });
    box.append(form);
    withScroll(function () { li.append(box); });
  }

  // ---------------------------------------------------------------- satisfaction rating
  function ratingThanks(text) {
    return h('p', { id: 'rating-thanks', class: 'rating__thanks', role: 'status' },
      text || 'Thanks for your feedback');
  }

  function offerRating(li) {
    var session = state.session;
    if (!session || session.rated || document.getElementById('rating')) return;
    var gen = state.generation;
    var score = 0;
    var buttons = [];
    var error = h('p', { class: 'rating__error', role: 'alert', hidden: true });
    var scores = h('div', {
      class: 'rating__scores', role: 'group',
      'aria-label': 'Your rating, from 1 (very poor) to 5 (excellent)',
    });
    [1, 2, 3, 4, 5].forEach(function (n) {
      var b = h('button', {
        type: 'button', class: 'rating__score', 'data-score': n, 'aria-pressed': 'false',
        'aria-label': n + ' of 5: ' + RATING_WORDS[n - 1], title: RATING_WORDS[n - 1],
      }, '★');
      b.addEventListener('click', function () {
        score = n;
        buttons.forEach(function (other, i) {
          other.setAttribute('aria-pressed', i + 1 === n ? 'true' : 'false');
          other.classList.toggle('is-on', i < n);
        });
        error.hidden = true;
      });
      buttons.push(b);
      scores.append(b);
    });
    var comment = h('textarea', {
      id: 'rating-comment', class: 'rating__comment', rows: '2', maxlength: '2000',
    });
    var submit = h('button', { type: 'submit', id: 'rating-submit', class: 'btn btn--primary' },
      'Send feedback');
    var form = h('form', { id: 'rating', class: 'rating', novalidate: true,
      'aria-labelledby': 'rating-title' },
    h('p', { id: 'rating-title', class: 'rating__title' }, 'How did we do?'),
    scores,
    h('label', { for: 'rating-comment', class: 'rating__label' },
      'Anything you would like to add? (optional)'),
    comment, error, submit);

    function rated(text) {
      session.rated = true;
      if (state.session === session) save();
      form.replaceWith(ratingThanks(text));
    }

    form.addEventListener('submit', function (e) {
      e.preventDefault();
      if (!score) {
        error.textContent = 'Please choose a rating from 1 to 5 first.';
        error.hidden = false;
        if (buttons[0]) buttons[0].focus();
        return;
      }
      submit.disabled = true;
      error.hidden = true;
      var text = comment.value.trim();
      api('POST', '/api/sessions/' + encodeURIComponent(session.session_id) + '/rating', {
        json: { score: score, comment: text || undefined }, token: session.token,
      }).then(function () {
        if (gen !== state.generation) return;
        rated();
        announce('Thanks for your feedback.');
      }, function (err) {
        if (gen !== state.generation) return;
        if (err.status === 409 || err.code === 'already_rated') {
          rated('Thanks for your feedback: this conversation has already been rated.');
          return;
        }
        error.textContent = 'Your feedback was not sent: ' + err.message;
        error.hidden = false;
        submit.disabled = false;
      });
    });
    withScroll(function () { li.append(form); });
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
        'Start a new conversation');
      button.addEventListener('click', newConversation);
      li = appendMessage(h('li', { class: 'msg msg--system msg--ended' },
        h('div', { class: 'notice notice--ended', 'data-kind': 'ended' },
          h('p', { class: 'notice__text' }, 'This conversation has ended.'), button)));
    }
    if (opts && opts.rating) offerRating(li);
  }

  function onSessionStatus(ev) {
    if (ev.status === 'ended' || ev.status === 'deleted') {
      closeSocket();
      setEnded(true, { rating: ev.status === 'ended' && ev.rating_offer === true });
      announce('This conversation has ended.');
    }
  }

  // ---------------------------------------------------------------- typing
  function showAgentTyping(on, name) {
    clearTimeout(state.agentTypingTimer);
    if (on) {
      dom.agentTypingText.textContent =
        (name || state.agentName || AUTHORS.agent) + ' is typing…';
    }
    withScroll(function () { dom.agentTyping.hidden = !on; });
    if (on) state.agentTypingTimer = setTimeout(hideAgentTyping, AGENT_TYPING_TIMEOUT_MS);
  }

  function hideAgentTyping() {
    showAgentTyping(false);
  }

  function sendTyping(on) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN || !state.connected) return;
    try {
      state.ws.send(JSON.stringify({ type: 'typing', is_typing: on }));
    } catch (err) { /* the close handler deals with it */ }
  }

  function noteTyping() {
    var t = state.typing;
    var now = Date.now();
    if (!dom.input.value.trim()) {
      stopTyping();
      return;
    }
    if (!t.active || now - t.lastSent > TYPING_REPEAT_MS) {
      t.active = true;
      t.lastSent = now;
      sendTyping(true);
    }
    clearTimeout(t.idleTimer);
    t.idleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function stopTyping() {
    var t = state.typing;
    clearTimeout(t.idleTimer);
    if (t.active) {
      t.active = false;
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
    showError(ev.message || 'Something went wrong.', { code: ev.code });
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
    showError(ev.message || 'Something went wrong.', { code: ev.code });
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
    state.lastHeard = Date.now();
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
  function socketUrl() {
    var proto = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    return proto + '//' + window.location.host + '/ws?session_id=' +
      encodeURIComponent(state.session.session_id) + '&token=' +
      encodeURIComponent(state.session.token) + '&after=' +
      (state.replayFromStart ? 0 : state.session.last_seq || 0);
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    if (!state.session || state.ended || state.ws) return;
    setConn(state.attempt ? 'reconnecting' : 'connecting');
    var ws;
    try {
      ws = new WebSocket(socketUrl());
    } catch (err) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    ws.onmessage = function (msg) {
      if (state.ws !== ws) return;
      var ev;
      try { ev = JSON.parse(msg.data); } catch (err) { return; }
      handleEvent(ev);
    };
    ws.onclose = function (e) {
      if (state.ws !== ws) return;
      socketGone(e.code, e.reason);
    };
  }

  function onConnected(ev) {
    state.connected = true;
    state.attempt = 0;
    state.inflight = [];
    setConn('online');
    startHeartbeat();
    // Anything not yet confirmed goes again with the same client_msg_id (the server dedupes).
    state.outbox.forEach(function (rec) {
      if (!rec.restInFlight && rec.status !== 'failed') deliver(rec);
    });
  }

  function socketGone(code, reason) {
    state.ws = null;
    state.connected = false;
    state.inflight = [];
    stopHeartbeat();
    hideAgentTyping();
    state.typing.active = false; // the next keystroke says "typing" again on the new socket
    if (NO_RECONNECT.indexOf(code) >= 0) {
      if (code === 4009) {
        setEnded(true);
      } else {
        setConn('error');
        showError((reason || 'This conversation can no longer be opened.') +
          ' Start a new conversation to continue.', { code: 'ws_' + code });
      }
      return;
    }
    // Unconfirmed sends do not wait for the socket: REST takes them (same client_msg_id).
    state.outbox.forEach(function (rec) {
      if (rec.status === 'sending' && !rec.restInFlight) sendViaRest(rec);
    });
    scheduleReconnect();
  }

  function scheduleReconnect() {
    if (state.ended || !state.session) return;
    clearTimeout(state.reconnectTimer);
    var delay = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, state.attempt));
    delay = Math.round(delay * (0.6 + Math.random() * 0.4));
    state.attempt += 1;
    if (navigator.onLine === false) setConn('offline', 'Offline · waiting for network');
    else setConn('reconnecting');
    state.reconnectTimer = setTimeout(connect, delay);
  }

  function closeSocket() {
    var ws = state.ws;
    state.ws = null;
    state.connected = false;
    state.inflight = [];
    clearTimeout(state.reconnectTimer);
    stopHeartbeat();
    if (ws) {
      try { ws.close(1000, 'bye'); } catch (err) { /* already closed */ }
    }
  }

  function startHeartbeat() {
    stopHeartbeat();
    state.lastHeard = Date.now();
    state.pingTimer = setInterval(function () {
      var ws = state.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      if (Date.now() - state.lastHeard > SILENCE_LIMIT_MS) {
        // Half-open connection: give up on it without waiting for a close handshake.
        state.ws = null;
        try { ws.close(); } catch (err) { /* ignore */ }
        socketGone(1006, 'no answer to pings');
        return;
      }
      try { ws.send(JSON.stringify({ type: 'ping', id: ++state.pingId })); } catch (err) { /* */ }
    }, PING_EVERY_MS);
  }

  function stopHeartbeat() {
    clearInterval(state.pingTimer);
    state.pingTimer = null;
  }

  // ---------------------------------------------------------------- sending
  function deliver(rec) {
    setSendStatus(rec, 'sending');
    var ws = state.ws;
    if (ws && state.connected && ws.readyState === WebSocket.OPEN) {
      try {
        // A request for a person is structured, never a sentence the bot has to interpret.
        ws.send(JSON.stringify(rec.kind === 'handoff'
          ? { type: 'handoff', client_msg_id: rec.clientId }
          : {
            type: 'message',
            content: rec.content,
            client_msg_id: rec.clientId,
            attachment_ids: rec.attachmentIds,
          }));
        state.inflight.push(rec.clientId);
        return;
      } catch (err) { /* fall through to REST */ }
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
      showError('Please wait until your file has finished uploading.');
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
    if (err.status === 413) return '“' + name + '” is too large to upload. ' + err.message;
    if (err.status === 415) return '“' + name + '” is not a supported file type. ' + err.message;
    if (err.status === 0) {
      return 'Could not upload “' + name + '”. Check your connection, or try a smaller file.';
    }
    return 'Could not upload “' + name + '”: ' + err.message;
  }

  function upload(file) {
    if (!state.session || state.ended) return;
    var limitMb = parseInt(document.body.dataset.maxUploadMb, 10);
    if (limitMb > 0 && file.size > limitMb * 1024 * 1024) {
      showError('“' + file.name + '” is too large to upload (' + formatSize(file.size) +
        '). Files can be up to ' + limitMb + ' MB.', { code: 'file_too_large' });
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
      announce('Uploaded ' + file.name);
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
    state.rendered = new Map();
    state.outbox = new Map();
    state.streams = new Map();
    state.answered = new Set();
    state.uploads = [];
    state.attachmentInfo = new Map();
    state.attempt = 0;
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
      if (gen === state.generation) scrollToEnd(true);
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
      setConn('error', 'Can’t reach support · retrying');
      showError((err && err.message) || 'Could not start the chat.', { code: err && err.code });
      setTimeout(function () { if (gen === state.generation) boot(fresh); }, delay);
    });
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
          showError('The previous conversation could not be closed: ' + err.message);
        }
      })
      : Promise.resolve();
    return ending.then(function () { return boot(true); }).then(function () {
      dom.newConversation.disabled = false;
      announce('Started a new conversation.');
      if (!dom.input.disabled) dom.input.focus();
    });
  }

  // ---------------------------------------------------------------- wiring
  function autosize() {
    dom.input.style.height = 'auto';
    dom.input.style.height = Math.min(dom.input.scrollHeight, 180) + 'px';
  }

  function init() {
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
    dom.newConversation.addEventListener('click', newConversation);
    dom.talk.addEventListener('click', requestPerson);
    window.addEventListener('pagehide', stopTyping);
    document.querySelectorAll('[data-suggestion]').forEach(function (b) {
      b.addEventListener('click', function () {
        if (!state.session || state.ended) return;
        sendText(b.textContent.trim(), []);
        dom.input.focus();
      });
    });
    // Citation links scroll to their source without touching the URL.
    dom.messages.addEventListener('click', function (e) {
      var link = e.target.closest && e.target.closest('a.cite__link');
      if (!link) return;
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
      if (state.session && !state.ws && !state.ended) {
        state.attempt = 0;
        connect();
      }
    });
    window.addEventListener('offline', function () {
      if (!state.connected) setConn('offline', 'Offline · waiting for network');
    });

    // A small handle for tests and debugging (no secrets beyond what localStorage holds).
    window.helplineChat = Object.freeze({
      get socket() { return state.ws; },
      get sessionId() { return state.session && state.session.session_id; },
      get lastSeq() { return state.session ? state.session.last_seq : 0; },
      get owner() { return state.owner; },
      dropConnection: function () { if (state.ws) state.ws.close(); },
    });

    boot(false);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
}());
