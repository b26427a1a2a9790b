// One conversation as the agent sees it: messages with their sources, attachments and
// escalation reasons, plus ownership notices. Replays never duplicate (keyed by id and seq).

import { clock, formatSize, fullTime, h, priorityWords, reasonWords, stripCitations } from './util.js';

const ATTACHMENT_STATUS = {
  queued: 'Waiting to be read',
  processing: 'Being read…',
  processed: 'Read',
  failed: 'Could not be read',
};

function authorOf(m, me) {
  if (m.role === 'user') return 'Customer';
  if (m.role === 'assistant') return 'Assistant';
  const name = (m.metadata && m.metadata.agent) || 'Agent';
  return name === me ? `${name} (you)` : name;
}

function attachmentEl(a) {
  const li = h('li', { class: 'attachment', dataset: { attachmentId: a.attachment_id || '' } },
    h('span', { class: 'attachment__icon', 'aria-hidden': 'true' }),
    h('span', { class: 'attachment__main' },
      h('span', { class: 'attachment__line' },
        h('span', { class: 'attachment__name', text: a.filename || 'file' }),
        h('span', { class: 'attachment__size', text: a.size ? formatSize(a.size) : '' })),
      h('span', { class: 'attachment__status' }),
      h('span', { class: 'attachment__preview' })));
  updateAttachment(li, a);
  return li;
}

function updateAttachment(li, a) {
  // The worker's newer word for a file read successfully is "done" (with processed: true).
  const state = a.status === 'done' || (a.processed === true && a.status !== 'failed') ? 'processed' : a.status || 'queued';
  li.dataset.status = state;
  const status = state === 'failed' && a.error
    ? `Could not be read: ${a.error}` : (ATTACHMENT_STATUS[state] || state);
  li.querySelector('.attachment__status').textContent = status;
  const preview = li.querySelector('.attachment__preview');
  preview.textContent = a.preview || '';
  preview.hidden = !a.preview;
}

function sourcesEl(sources) {
  const list = h('ol', { class: 'sources__list' });
  [...sources].sort((a, b) => (a.index ?? 0) - (b.index ?? 0)).forEach((s) => {
    list.append(h('li', { class: 'source' },
      h('span', { class: 'source__num', text: s.index ?? '' }),
      h('span', { class: 'source__title', text: s.title || 'Untitled document' })));
  });
  return h('div', { class: 'sources' }, h('p', { class: 'sources__title', text: 'Sources' }), list);
}

function escalationEl(esc) {
  const reasons = (esc.reasons || []).map(reasonWords);
  const parts = [];
  if (reasons.length) parts.push(reasons.join(' · '));
  if (esc.priority) parts.push(`${priorityWords(esc.priority)} priority`);
  const action = esc.action === 'offer' ? 'Offered a person' : 'Handed to a person';
  return h('p', { class: 'msg__escalation', text: `${action}${parts.length ? `: ${parts.join(', ')}` : ''}` });
}

export class Thread {
  constructor(list, scroller, me) {
    this.list = list;
    this.scroller = scroller;
    this.agentName = me; // () => the signed-in agent's name
    this.byId = new Map();
    this.byClientId = new Map();
    this.notices = new Set();
  }

  get me() { return this.agentName(); }

  clear() {
    this.list.replaceChildren();
    this.byId.clear();
    this.byClientId.clear();
    this.notices.clear();
  }

  nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 120;
  }

  append(li, force = false) {
    const stick = force || this.nearBottom();
    this.list.append(li);
    if (stick) this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  /** Show a stored message once; a pending copy of our own reply is replaced in place. */
  message(m, { force = false } = {}) {
    if (!m || !m.id || this.byId.has(m.id)) return;
    const pending = m.client_msg_id && this.byClientId.get(m.client_msg_id);
    const li = this.build(m);
    if (pending && pending.isConnected) {
      li.dataset.status = 'sent';
      pending.replaceWith(li);
    } else {
      this.append(li, force);
    }
    this.byId.set(m.id, li);
    if (m.client_msg_id) this.byClientId.set(m.client_msg_id, li);
  }

  build(m) {
    const role = ['user', 'assistant', 'agent'].includes(m.role) ? m.role : 'system';
    const li = h('li', { class: `msg msg--${role}`, dataset: { messageId: m.id || '', seq: m.seq ?? '' } });
    if (m.client_msg_id) li.dataset.clientMsgId = m.client_msg_id;
    const asked = m.metadata && m.metadata.request === 'person';
    const bubble = h('div', { class: 'msg__bubble' },
      h('p', { class: 'msg__text', text: role === 'assistant' ? stripCitations(m.content) : m.content || '' }));
    if (m.attachments && m.attachments.length) {
      bubble.append(h('ul', { class: 'attachments', 'aria-label': 'Attached files' }, ...m.attachments.map(attachmentEl)));
    }
    const body = h('div', { class: 'msg__body' },
      h('p', { class: 'msg__meta' },
        h('span', { class: 'msg__author', text: authorOf(m, this.me) }),
        asked ? h('span', { class: 'badge', text: 'Asked for a person' }) : null,
        m.timestamp ? h('time', { class: 'msg__time', datetime: m.timestamp, title: fullTime(m.timestamp), text: clock(m.timestamp) }) : null),
      bubble);
    if (m.sources && m.sources.length) body.append(sourcesEl(m.sources));
    if (m.escalation && m.escalation.action && m.escalation.action !== 'none') body.append(escalationEl(m.escalation));
    li.append(body);
    return li;
  }

  /** Our reply before the server has stored it. */
  pending(clientMsgId, content) {
    const li = this.build({
      role: 'agent', content, client_msg_id: clientMsgId, metadata: { agent: this.me }, timestamp: new Date().toISOString(),
    });
    li.dataset.status = 'sending';
    li.querySelector('.msg__body').append(h('p', { class: 'msg__status', text: 'Sending…' }));
    this.byClientId.set(clientMsgId, li);
    this.append(li, true);
    return li;
  }

  setStatus(clientMsgId, status, words) {
    const li = this.byClientId.get(clientMsgId);
    if (!li || li.dataset.messageId) return;
    li.dataset.status = status;
    const line = li.querySelector('.msg__status');
    if (line) line.textContent = words;
  }

  /** An acknowledged reply: now a stored message with an id (the broadcast copy is ours). */
  confirmed(clientMsgId, messageId, seq) {
    const li = this.byClientId.get(clientMsgId);
    if (!li || this.byId.has(messageId)) return;
    li.dataset.messageId = messageId;
    if (seq !== undefined) li.dataset.seq = seq;
    li.dataset.status = 'sent';
    li.querySelector('.msg__status')?.remove();
    this.byId.set(messageId, li);
  }

  /** An ownership or escalation notice; `key` (the event's seq) keeps replays single. */
  notice(kind, text, key) {
    const id = `${kind}:${key ?? text}`;
    if (this.notices.has(id)) return;
    this.notices.add(id);
    const li = h('li', { class: 'msg msg--system' },
      h('div', { class: `notice notice--${kind}`, dataset: { kind } },
        h('p', { class: 'notice__text', text })));
    this.append(li);
  }

  /** True when a message already says why it was escalated (its event need not repeat it). */
  explains(messageId) {
    const li = messageId && this.byId.get(messageId);
    return Boolean(li && li.querySelector('.msg__escalation'));
  }

  attachment(a) {
    if (!a || !a.attachment_id) return;
    this.list.querySelectorAll('.attachment').forEach((li) => {
      if (li.dataset.attachmentId === a.attachment_id) updateAttachment(li, a);
    });
  }
}
