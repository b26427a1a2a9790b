/* Helpline customer chat page: plain JavaScript, no build step, no third-party code.
 *
 * Protocol (see webapp/ws.py): persisted events carry a per-session `seq` and are replayed
 * after `?after=<seq>` on reconnect; ephemeral ones (start, status, sources, text, typing)
 * do not. We keep the highest seq seen in localStorage and drop anything at or below it, and
 * also dedupe messages by id and our own sends by client_msg_id, so a replay, a REST retry
 * or a second tab never shows a message twice.
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
  var HANDOFF_TEXT = "I'd like to talk to a person";
  var ATTACHMENT_ONLY_TEXT = 'Please see the attached file.';
  // Escalation reasons that open a ticket (mirrors worker/replies.py `_escalate`).
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
    rendered: new Map(), // message id -> <li>
    outbox: new Map(), // client_msg_id -> pending send
    inflight: [], // client_msg_ids sent on the current socket, awaiting acknowledged/error
    streams: new Map(), // reply_to (user message id) -> streaming assistant reply
    answered: new Set(), // user message ids whose stored reply we have shown
    uploads: [], // files attached to the next message
    attachmentInfo: new Map(), // attachment id -> latest known status
    typing: { active: false, lastSent: 0, idleTimer: null },
    agentTypingTimer: null,
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

  function messageEl(role, timestamp) {
    var author = AUTHORS[role] || 'Helpline';
    var avatar = role === 'user' ? null : h('span', { class: 'msg__avatar', 'aria-hidden': 'true' },
      role === 'agent' ? 'SA' : 'H');
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
    var status = info.status || 'queued';
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
  }

  function markSent(rec, messageId) {
    if (state.outbox.get(rec.clientId) !== rec) return;
    state.outbox.delete(rec.clientId);
    if (messageId) {
      rec.el.dataset.id = messageId;
      state.rendered.set(messageId, rec.el);
    }
    setSendStatus(rec, 'sent');
  }

  function showUserMessage(m) {
    if (state.rendered.has(m.id)) return;
    var rec = m.client_msg_id && state.outbox.get(m.client_msg_id);
    if (rec) {
      markSent(rec, m.id);
      setTimestamp(rec.el, m.timestamp);
      return;
    }
    var li = messageEl('user', m.timestamp);
    li.dataset.id = m.id;
    li.dataset.seq = m.seq;
    li.dataset.status = 'sent';
    li._parts.text.textContent = m.content || '';
    addAttachments(li, m.attachments);
    state.rendered.set(m.id, li);
    appendMessage(li);
  }

  function showAgentMessage(m, live) {
    if (state.rendered.has(m.id)) return;
    var li = messageEl('agent', m.timestamp);
    li.dataset.id = m.id;
    li.dataset.seq = m.seq;
    li._parts.text.textContent = m.content || '';
    addAttachments(li, m.attachments);
    state.rendered.set(m.id, li);
    appendMessage(li);
    if (live) {
      hideAgentTyping();
      announce('Support agent: ' + (m.content || ''));
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
    var s = streamFor(ev);
    if (!s) return;
    if (ev.state === 'restarting') resetStream(s, ev.message_id);
    if (ev.message_id && ev.message_id !== s.messageId) return;
    setWorking(s, STATUS_LABELS[ev.state] || null);
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
      li = appendMessage(messageEl('assistant', m.timestamp));
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
    if (!live && meta.requires_escalation) {
      addEscalation(li, { required: !!meta.escalation_required, reason: meta.escalation_reason }, false);
    }
    if (live) announce('Helpline assistant: ' + stripCitations(m.content));
    return li;
  }

  // ---------------------------------------------------------------- escalation
  function addEscalation(li, ev, live) {
    var existing = li ? li.querySelector(':scope > .msg__body > .notice') : null;
    if (existing) {
      if (existing.dataset.kind === 'required' || !ev.required) return;
      existing.remove();
    }
    var notice;
    if (ev.required) {
      notice = h('div', { class: 'notice notice--handoff', 'data-kind': 'required' },
        h('span', { class: 'notice__icon', 'aria-hidden': 'true' }),
        h('p', { class: 'notice__text' },
          'A support agent has been asked to join. Please stay in this chat; they will reply here.'));
      document.querySelectorAll('.notice--offer button').forEach(function (b) {
        b.disabled = true;
      });
      if (live) announce('A support agent has been asked to join this conversation.');
    } else {
      var button = h('button', { type: 'button', class: 'btn btn--secondary' }, 'Talk to a person');
      button.addEventListener('click', function () {
        document.querySelectorAll('.notice--offer button').forEach(function (b) {
          b.disabled = true;
        });
        sendText(HANDOFF_TEXT, []);
      });
      notice = h('div', { class: 'notice notice--offer', 'data-kind': 'offer' },
        h('p', { class: 'notice__text' }, 'Not what you needed? A member of our team can help.'),
        button);
    }
    if (li) {
      withScroll(function () { li._parts.body.append(notice); });
    } else {
      appendMessage(h('li', { class: 'msg msg--system' }, notice));
    }
  }

  function onEscalation(ev) {
    var target = null;
    if (typeof ev.seq === 'number') {
      target = dom.messages.querySelector(
        '.msg--assistant[data-seq="' + (ev.seq - 1) + '"]');
    }
    if (!target) {
      var all = dom.messages.querySelectorAll('.msg--assistant[data-state="complete"]');
      target = all.length ? all[all.length - 1] : null;
    }
    addEscalation(target, ev, true);
  }

  // ---------------------------------------------------------------- session status
  function setEnded(ended) {
    state.ended = ended;
    dom.input.disabled = ended || !state.session;
    dom.send.disabled = ended || !state.session;
    dom.attach.disabled = ended || !state.session;
    var old = dom.messages.querySelector('.msg--ended');
    if (old) old.remove();
    if (ended) {
      setConn('ended');
      var button = h('button', { type: 'button', class: 'btn btn--primary' },
        'Start a new conversation');
      button.addEventListener('click', newConversation);
      appendMessage(h('li', { class: 'msg msg--system msg--ended' },
        h('div', { class: 'notice notice--ended' },
          h('p', { class: 'notice__text' }, 'This conversation has ended.'), button)));
    }
  }

  function onSessionStatus(ev) {
    if (ev.status === 'ended' || ev.status === 'deleted') {
      closeSocket();
      setEnded(true);
      announce('This conversation has ended.');
    }
  }

  // ---------------------------------------------------------------- typing
  function showAgentTyping(on) {
    clearTimeout(state.agentTypingTimer);
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
    if (rec) markSent(rec, ev.message_id);
    bumpSeq(ev.seq);
  }

  function onErrorEvent(ev) {
    // A refused message names its client_msg_id; otherwise frames are answered in order.
    if (ev.client_msg_id && state.outbox.get(ev.client_msg_id)) {
      var idx = state.inflight.indexOf(ev.client_msg_id);
      if (idx >= 0) state.inflight.splice(idx, 1);
      setSendStatus(state.outbox.get(ev.client_msg_id), 'failed', ev.message);
      showError(ev.message || 'Something went wrong.', { code: ev.code });
      return;
    }
    while (ev.code !== 'unknown_type' && state.inflight.length) {
      var rec = state.outbox.get(state.inflight.shift());
      if (rec) {
        setSendStatus(rec, 'failed', ev.message);
        break;
      }
    }
    showError(ev.message || 'Something went wrong.', { code: ev.code });
  }

  function handleEvent(ev) {
    if (!ev || typeof ev.type !== 'string') return;
    if (ev.session_id && state.session && ev.session_id !== state.session.session_id) return;
    state.lastHeard = Date.now();
    if (ev.type === 'acknowledged') return onAcknowledged(ev);
    if (typeof ev.seq === 'number' && ev.seq <= state.session.last_seq) return; // seen already
    switch (ev.type) {
      case 'connected': onConnected(); break;
      case 'user_message': if (ev.message) showUserMessage(ev.message); break;
      case 'agent_message': if (ev.message) showAgentMessage(ev.message, true); break;
      case 'start': onStart(ev); break;
      case 'status': onStatus(ev); break;
      case 'sources': onSources(ev); break;
      case 'text': onText(ev); break;
      case 'complete': if (ev.message) showAssistantMessage(ev.message, true); break;
      case 'escalation': onEscalation(ev); break;
      case 'attachment':
        onAttachmentUpdate(Object.assign({}, ev.attachment || {}, {
          attachment_id: ev.attachment_id, status: ev.status, preview: ev.preview, error: ev.error,
        }));
        break;
      case 'user_typing': if (ev.role === 'agent') showAgentTyping(ev.is_typing !== false); break;
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
      encodeURIComponent(state.session.token) + '&after=' + (state.session.last_seq || 0);
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

  function onConnected() {
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
        ws.send(JSON.stringify({
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
    api('POST', sessionPath('/messages'), {
      json: { message: rec.content, client_msg_id: rec.clientId, attachment_ids: rec.attachmentIds },
    }).then(function (res) {
      rec.restInFlight = false;
      if (gen !== state.generation) return;
      markSent(rec, res && res.message_id);
    }, function (err) {
      rec.restInFlight = false;
      if (gen !== state.generation || state.outbox.get(rec.clientId) !== rec) return;
      if (err.status === 0) {
        setSendStatus(rec, 'queued'); // sent again as soon as the socket is back
        if (state.connected) deliver(rec);
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
    setConn('connecting');
    dom.messages.textContent = '';
    dom.welcome.hidden = false;
    renderPendingUploads();
    hideAgentTyping();
    clearErrors();
  }

  function setReady(ready) {
    dom.input.disabled = !ready;
    dom.send.disabled = !ready;
    dom.attach.disabled = !ready;
    dom.newConversation.disabled = false;
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

  function openSession(fresh) {
    var saved = fresh ? null : loadSaved();
    if (!saved) return createSession();
    return api('GET', '/api/sessions/' + encodeURIComponent(saved.session_id), {
      token: saved.token,
    }).then(function (info) {
      if (info && info.status !== 'ended') return saved;
      return createSession();
    }, function (err) {
      if (err.status === 0 || err.status >= 500) throw err; // try again later, keep the session
      return createSession();
    });
  }

  function createSession() {
    return api('POST', '/api/sessions', { json: { metadata: { channel: 'web' } }, auth: false })
      .then(function (res) {
        return { session_id: res.session_id, token: res.token, last_seq: 0 };
      });
  }

  var bootAttempt = 0;
  function boot(fresh) {
    var gen = ++state.generation;
    setConn('connecting');
    setReady(false);
    return openSession(fresh).then(function (session) {
      if (gen !== state.generation) return null;
      state.session = session;
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
      dropConnection: function () { if (state.ws) state.ws.close(); },
    });

    boot(false);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
}());
