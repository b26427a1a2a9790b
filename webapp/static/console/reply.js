// The agent's reply box: Enter sends, Shift+Enter breaks the line; typing is told to the
// customer; a reply goes over the session socket, or over REST when the socket is down, and
// is re-sent with the same client_msg_id after a reconnect (the server drops duplicates).

import { replyErrorWords, uuid } from './util.js';

const TYPING_IDLE_MS = 3000;

export class Reply {
  constructor({ form, input, button }, { socket, api, thread, sessionId, onError }) {
    this.form = form;
    this.input = input;
    this.button = button;
    this.socket = socket; // () => LiveSocket | null
    this.api = api; // () => StaffApi (the signed-in agent's)
    this.thread = thread;
    this.sessionId = sessionId; // () => string | null
    this.onError = onError;
    this.outbox = new Map(); // client_msg_id -> content, until acknowledged
    this.typing = false;
    this.idle = null;
    form.addEventListener('submit', (e) => { e.preventDefault(); this.submit(); });
    input.addEventListener('keydown', (e) => this.keydown(e));
    input.addEventListener('input', () => this.noteTyping());
    input.addEventListener('blur', () => this.stopTyping());
  }

  keydown(e) {
    if (e.key !== 'Enter' || e.shiftKey || e.isComposing || e.altKey || e.ctrlKey || e.metaKey) return;
    e.preventDefault();
    this.submit();
  }

  reset() {
    this.stopTyping();
    this.outbox.clear();
    this.input.value = '';
  }

  noteTyping() {
    clearTimeout(this.idle);
    if (!this.input.value.trim()) { this.stopTyping(); return; }
    if (!this.typing) this.typing = this.sendTyping(true);
    this.idle = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping() {
    clearTimeout(this.idle);
    if (this.typing) this.sendTyping(false);
    this.typing = false;
  }

  sendTyping(on) {
    const s = this.socket();
    return Boolean(s && s.send({ type: 'typing', is_typing: on }));
  }

  submit() {
    const content = this.input.value.trim();
    if (!content || !this.sessionId()) return;
    this.stopTyping();
    const id = uuid();
    this.outbox.set(id, content);
    this.thread.pending(id, content);
    this.input.value = '';
    this.input.focus();
    this.deliver(id);
  }

  deliver(id) {
    const content = this.outbox.get(id);
    if (content === undefined) return;
    const s = this.socket();
    if (s && s.send({ type: 'message', content, client_msg_id: id })) return;
    this.viaRest(id, content);
  }

  async viaRest(id, content) {
    const sessionId = this.sessionId();
    try {
      const body = await this.api().send(sessionId, content, id);
      if (this.sessionId() !== sessionId) return;
      this.outbox.delete(id);
      this.thread.confirmed(id, body.message_id, body.seq);
    } catch (err) {
      if (this.sessionId() !== sessionId) return;
      if (err.status === 0) {
        this.thread.setStatus(id, 'queued', 'Not sent yet: waiting for the connection…');
        return; // stays in the outbox; sent again on reconnect
      }
      this.failed(id, err.code, err.message);
    }
  }

  /** The session socket is (back) up: anything not acknowledged goes again. */
  resend() {
    for (const id of this.outbox.keys()) this.deliver(id);
  }

  acknowledged(ev) {
    if (!ev.client_msg_id || !this.outbox.has(ev.client_msg_id)) return;
    this.outbox.delete(ev.client_msg_id);
    this.thread.confirmed(ev.client_msg_id, ev.message_id, ev.seq);
  }

  /** An `error` event; true when it concerned one of our replies. */
  refused(ev) {
    if (!ev.client_msg_id || !this.outbox.has(ev.client_msg_id)) return false;
    this.failed(ev.client_msg_id, ev.code, ev.message);
    return true;
  }

  failed(id, code, message) {
    const words = replyErrorWords(code, message);
    const content = this.outbox.get(id);
    this.outbox.delete(id);
    if (content && !this.input.value) this.input.value = content; // nothing typed is lost
    this.thread.setStatus(id, 'failed', `Not sent: ${words}`);
    this.onError(words);
  }

  setEnabled(on, hint) {
    this.input.disabled = !on;
    this.button.disabled = !on;
    if (hint !== undefined) this.input.placeholder = hint;
  }
}
