// The open ticket: its details, claim / release / resolve, and the conversation, live over the
// session socket with the staff token (history first, then `after=<last seq>`).

import { socketUrl } from './api.js';
import { ownerWords, ticketTitle } from './queue.js';
import { Reply } from './reply.js';
import { LiveSocket } from '../shared/socket.js';
import { Thread } from './thread.js';
import { actionErrorWords, ago, fullTime, priorityWords, reasonWords, sentence } from './util.js';

const TYPING_TIMEOUT_MS = 8000; // a lost "stopped typing" must not leave the hint up forever
const byId = (id) => document.getElementById(id);

function escalationWords(ev) {
  const reasons = (ev.reasons && ev.reasons.length ? ev.reasons : [ev.reason]).filter(Boolean).map(reasonWords);
  const why = reasons.length ? `: ${reasons.join(', ')}` : '';
  if (!ev.required) return `The assistant offered a person${why}.`;
  const priority = ev.priority ? ` (${priorityWords(ev.priority).toLowerCase()} priority)` : '';
  return `Handed to a person${why}${priority}.`;
}

/** Built once per page; `ctx.api` and `ctx.me` are read when used (they change on sign-in). */
export class TicketView {
  constructor(ctx, { onTicket }) {
    this.ctx = ctx;
    this.onTicket = onTicket; // a ticket changed through an action here
    this.ticket = null;
    this.socket = null;
    this.lastSeq = 0;
    this.gen = 0;
    this.busy = false;
    this.ended = false;
    this.el = {
      placeholder: byId('ticket-placeholder'), view: byId('ticket-view'), title: byId('ticket-title'),
      state: byId('ticket-state'), priority: byId('ticket-priority'), category: byId('ticket-category'),
      reasons: byId('ticket-reasons'), contact: byId('ticket-contact'), created: byId('ticket-created'),
      claim: byId('claim'), release: byId('release'), resolve: byId('resolve'),
      options: byId('resolve-options'), resume: byId('resolve-resume'), end: byId('resolve-end'),
      cancel: byId('resolve-cancel'), error: byId('ticket-error'), typing: byId('customer-typing'),
    };
    this.thread = new Thread(byId('thread'), byId('thread-scroll'), () => this.me);
    this.reply = new Reply(
      { form: byId('reply'), input: byId('reply-input'), button: byId('reply-send') },
      {
        socket: () => this.socket, api: () => this.api, thread: this.thread,
        sessionId: () => (this.ticket ? this.ticket.session_id : null),
        onError: (words) => this.showError(words),
      },
    );
    this.bindActions();
  }

  get api() { return this.ctx.api; }

  get me() { return this.ctx.me; }

  bindActions() {
    const e = this.el;
    e.claim.addEventListener('click', () => this.act('claim'));
    e.release.addEventListener('click', () => this.act('release'));
    e.resolve.addEventListener('click', () => this.toggleResolve(e.options.hidden));
    e.resume.addEventListener('click', () => this.act('resolve', { end_session: false }));
    e.end.addEventListener('click', () => this.act('resolve', { end_session: true }));
    e.cancel.addEventListener('click', () => this.toggleResolve(false));
    e.options.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') this.toggleResolve(false); });
  }

  toggleResolve(open) {
    this.el.options.hidden = !open;
    this.el.resolve.setAttribute('aria-expanded', String(open));
    (open ? this.el.resume : this.el.resolve).focus();
  }

  /** Show a ticket: history from REST, then live events from just after it. */
  async open(ticket) {
    if (this.ticket && this.ticket.id === ticket.id) { this.el.title.focus(); return; }
    this.close();
    const gen = ++this.gen;
    this.ticket = ticket;
    this.el.placeholder.hidden = true;
    this.el.view.hidden = false;
    this.render();
    this.el.title.focus();
    try {
      const data = await this.api.history(ticket.session_id);
      if (gen !== this.gen) return;
      for (const m of data.messages || []) {
        this.thread.message(m, { force: true });
        this.lastSeq = Math.max(this.lastSeq, m.seq || 0);
      }
    } catch (err) {
      if (gen !== this.gen) return;
      this.showError(`The conversation could not be loaded: ${sentence(err.message)}`);
    }
    this.connect(gen);
  }

  connect(gen) {
    const sessionId = this.ticket.session_id;
    this.socket = new LiveSocket({
      url: async (force) => {
        const token = await this.api.socketToken(force);
        return socketUrl('/ws', { session_id: sessionId, token: token.value, after: String(this.lastSeq) });
      },
      onEvent: (ev) => { if (gen === this.gen) this.onEvent(ev); },
      onState: (state) => { if (gen === this.gen) this.el.view.dataset.socket = state; },
      onFinal: (code, reason) => { if (gen === this.gen) this.onFinal(code, reason); },
    });
    this.socket.start();
  }

  close() {
    this.gen += 1;
    this.reply.reset();
    if (this.socket) this.socket.stop();
    this.socket = null;
    this.ticket = null;
    this.lastSeq = 0;
    this.ended = false;
    this.thread.clear();
    this.customerTyping(false);
    this.showError('');
    this.el.options.hidden = true;
  }

  /** The queue heard about this ticket (another agent claimed it, a contact email arrived…). */
  update(ticket) {
    if (!this.ticket || ticket.id !== this.ticket.id) return;
    const known = Date.parse(this.ticket.updated_at);
    if (Date.parse(ticket.updated_at) < known) return;
    this.ticket = ticket;
    this.render();
  }

  render() {
    const t = this.ticket;
    const e = this.el;
    const mine = t.status === 'claimed' && t.agent === this.me;
    e.title.textContent = ticketTitle(t);
    e.state.textContent = t.status === 'resolved' && t.resolution === 'ended'
      ? 'Resolved, conversation ended' : ownerWords(t, this.me);
    e.view.dataset.status = t.status;
    e.priority.textContent = priorityWords(t.priority);
    e.priority.dataset.priority = t.priority || 'normal';
    e.category.textContent = t.category || 'Not categorised';
    e.reasons.textContent = (t.reasons || []).map(reasonWords).join(', ') || 'None given';
    e.contact.textContent = t.contact_email || 'Not given';
    e.created.textContent = ago(t.created_at);
    e.created.title = fullTime(t.created_at);
    // Claim stays offered when someone else holds the ticket: the server decides, and says who.
    e.claim.hidden = mine || t.status === 'resolved';
    e.release.hidden = !mine;
    e.resolve.hidden = !(mine || t.status === 'open');
    if (e.resolve.hidden) e.options.hidden = true;
    for (const b of [e.claim, e.release, e.resolve, e.resume, e.end]) b.disabled = this.busy;
    const hint = this.ended ? 'This conversation has ended.'
      : mine ? 'Write a reply…' : 'Claim the ticket to reply';
    this.reply.setEnabled(!this.ended, hint);
  }

  async act(action, body) {
    if (!this.ticket || this.busy) return;
    const id = this.ticket.id;
    this.busy = true;
    this.showError('');
    this.render();
    try {
      const ticket = await this.api.act(id, action, body);
      this.afterAction(id, ticket, action);
    } catch (err) {
      if (this.ticket && this.ticket.id === id) this.showError(actionErrorWords(err));
      this.reload(id);
    } finally {
      this.busy = false;
      if (this.ticket && this.ticket.id === id) this.render();
    }
  }

  afterAction(id, ticket, action) {
    this.onTicket(ticket);
    if (!this.ticket || this.ticket.id !== id) return;
    this.update(ticket);
    if (action === 'resolve') this.el.options.hidden = true;
    if (action === 'claim') byId('reply-input').focus();
    else this.el.title.focus();
  }

  /** After a refusal the ticket has moved on: show what it is now. */
  async reload(id) {
    try {
      const ticket = await this.api.ticket(id);
      this.onTicket(ticket);
      this.update(ticket);
    } catch { /* the error already shown says enough */ }
  }

  showError(words) {
    this.el.error.textContent = words || '';
  }

  customerTyping(on) {
    clearTimeout(this.typingTimer);
    this.el.typing.hidden = !on;
    if (on) this.typingTimer = setTimeout(() => { this.el.typing.hidden = true; }, TYPING_TIMEOUT_MS);
  }

  onFinal(code, reason) {
    if (code === 4009 || code === 4004) {
      this.ended = true;
      this.thread.notice('ended', code === 4004 ? 'This conversation was deleted.' : 'This conversation has ended.', 'final');
    } else {
      this.showError(`Live updates stopped: ${sentence(reason || 'the server refused the connection')}`);
    }
    this.render();
  }

  onEvent(ev) {
    if (ev.session_id && this.ticket && ev.session_id !== this.ticket.session_id) return;
    if (ev.type === 'acknowledged') {
      this.reply.acknowledged(ev);
      this.lastSeq = Math.max(this.lastSeq, ev.seq || 0);
      return;
    }
    if (typeof ev.seq === 'number') {
      if (ev.seq <= this.lastSeq) return; // replayed and already shown
      this.lastSeq = ev.seq;
    }
    const handler = this.handlers[ev.type];
    if (handler) handler.call(this, ev);
  }
}

TicketView.prototype.handlers = {
  connected() { this.reply.resend(); },
  user_message(ev) { this.customerTyping(false); this.thread.message(ev.message); },
  agent_message(ev) { this.thread.message(ev.message); },
  complete(ev) { this.thread.message(ev.message); },
  escalation(ev) {
    if (this.thread.explains(ev.message_id)) return;
    this.thread.notice('escalation', escalationWords(ev), ev.seq);
  },
  agent_joined(ev) {
    const name = (ev.agent && ev.agent.name) || 'An agent';
    this.thread.notice('agent_joined', name === this.me ? 'You joined the chat.' : `${name} joined the chat.`, ev.seq);
  },
  agent_left(ev) {
    const name = (ev.agent && ev.agent.name) || 'The agent';
    const who = name === this.me ? 'You' : name;
    const text = ev.reason === 'released' ? `${who} released the ticket; the customer is back in the queue.`
      : ev.owner === 'ended' ? `${who} resolved the ticket and ended the conversation.`
        : `${who} resolved the ticket; the assistant answers again.`;
    this.thread.notice('agent_left', text, ev.seq);
  },
  session_status(ev) {
    if (ev.status !== 'ended' && ev.status !== 'deleted') return;
    this.ended = true;
    this.thread.notice('ended', ev.status === 'deleted' ? 'This conversation was deleted.' : 'This conversation has ended.', 'final');
    this.render();
  },
  attachment(ev) {
    this.thread.attachment({ ...(ev.attachment || {}), attachment_id: ev.attachment_id, status: ev.status, preview: ev.preview, error: ev.error });
  },
  user_typing(ev) { if (ev.role === 'user') this.customerTyping(ev.is_typing !== false); },
  error(ev) { if (!this.reply.refused(ev)) this.showError(sentence(ev.message)); },
};
