// A WebSocket that comes back: capped exponential backoff with jitter, a fresh URL (and so a
// fresh token) per attempt, and close codes that mean "stop trying" honoured.

// Close codes from the server (see the README): 4003 bad token, 4004 gone, 4009 ended.
const AUTH_CODE = 4003;
const FINAL_CODES = new Set([4001, 4004, 4009]);
const BASE_DELAY = 500;
const MAX_DELAY = 15_000;

export class LiveSocket {
  /**
   * url: async (forceNewToken) => string; onEvent(ev); onState(state, detail);
   * onFinal(code, reason): the server said this socket must not come back.
   */
  constructor({ url, onEvent, onState = () => {}, onFinal = () => {} }) {
    this.url = url;
    this.onEvent = onEvent;
    this.onState = onState;
    this.onFinal = onFinal;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = false;
    this.forceToken = false;
  }

  get open() {
    return Boolean(this.ws && this.ws.readyState === WebSocket.OPEN);
  }

  async start() {
    this.stopped = false;
    clearTimeout(this.timer);
    if (this.ws) return;
    this.onState(this.attempt ? 'reconnecting' : 'connecting');
    let url;
    try {
      url = await this.url(this.forceToken);
    } catch (err) {
      if (err && err.status === 401) {
        this.stop();
        this.onFinal(AUTH_CODE, err.message);
        return;
      }
      this.retry();
      return;
    }
    if (this.stopped || this.ws) return;
    this.forceToken = false;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.addEventListener('open', () => {
      if (this.ws === ws) { this.attempt = 0; this.onState('online'); }
    });
    ws.addEventListener('message', (msg) => {
      if (this.ws !== ws) return;
      let ev;
      try { ev = JSON.parse(msg.data); } catch { return; }
      if (ev && typeof ev.type === 'string') this.onEvent(ev);
    });
    ws.addEventListener('close', (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (FINAL_CODES.has(e.code)) {
        this.stopped = true;
        this.onState('closed', e.reason);
        this.onFinal(e.code, e.reason);
        return;
      }
      if (e.code === AUTH_CODE) this.forceToken = true; // the token may have expired
      this.retry();
    });
  }

  retry() {
    if (this.stopped) return;
    const delay = Math.min(MAX_DELAY, BASE_DELAY * 2 ** this.attempt);
    this.attempt += 1;
    this.onState('reconnecting', Math.round(delay / 1000));
    this.timer = setTimeout(() => this.start(), delay / 2 + Math.random() * (delay / 2));
  }

  send(event) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(event));
    return true;
  }

  /** Close now and come back (a test hook, and what a dead network looks like). */
  drop() {
    if (this.ws) this.ws.close();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, 'bye');
  }
}
