// A WebSocket that comes back, shared by the chat page, the widget's frame and the console:
// capped exponential backoff with jitter, a fresh URL per attempt (so a fresh token and the
// current `after=<seq>`: the server replays whatever was missed), close codes that mean "stop
// trying" honoured, and an optional heartbeat that gives up on a half-open connection.

// Close codes from the server (see the README): 4003 bad token, 4004 gone, 4009 ended.
export const AUTH_CODE = 4003;
const FINAL_CODES = [4001, 4004, 4009];
const BASE_DELAY = 500;
const MAX_DELAY = 15_000;

export class LiveSocket {
  /**
   * url: async (forceNewToken) => string; onEvent(ev); onState(state, detail) with state
   * connecting | online | reconnecting (detail: seconds) | closed;
   * onFinal(code, reason): the server said this socket must not come back.
   * retryAuth: a 4003 asks `url` for a new token (staff tokens expire) instead of stopping.
   * heartbeat: {every, silence} in ms: ping, and drop a socket silent for `silence`.
   */
  constructor({
    url, onEvent, onState = () => {}, onFinal = () => {}, retryAuth = true, heartbeat = null,
  }) {
    this.url = url;
    this.onEvent = onEvent;
    this.onState = onState;
    this.onFinal = onFinal;
    this.finalCodes = new Set(retryAuth ? FINAL_CODES : [...FINAL_CODES, AUTH_CODE]);
    this.heartbeat = heartbeat;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.pinger = null;
    this.lastHeard = 0;
    this.pingId = 0;
    this.stopped = false;
    this.forceToken = false;
  }

  get open() {
    return Boolean(this.ws && this.ws.readyState === WebSocket.OPEN);
  }

  /** Failed attempts since the last open socket (0 while connected). */
  get failures() {
    return this.attempt;
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
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.retry();
      return;
    }
    this.ws = ws;
    ws.addEventListener('open', () => {
      if (this.ws !== ws) return;
      this.attempt = 0;
      this.onState('online');
      this.startHeartbeat(ws);
    });
    ws.addEventListener('message', (msg) => {
      if (this.ws !== ws) return;
      this.lastHeard = Date.now();
      let ev;
      try { ev = JSON.parse(msg.data); } catch { return; }
      if (ev && typeof ev.type === 'string') this.onEvent(ev);
    });
    ws.addEventListener('close', (e) => {
      if (this.ws !== ws) return;
      this.gone(e.code, e.reason);
    });
  }

  gone(code, reason) {
    this.ws = null;
    this.stopHeartbeat();
    if (this.stopped) return;
    if (this.finalCodes.has(code)) {
      this.stopped = true;
      this.onState('closed', reason);
      this.onFinal(code, reason);
      return;
    }
    if (code === AUTH_CODE) this.forceToken = true; // the token may have expired
    this.retry();
  }

  retry() {
    if (this.stopped) return;
    const delay = Math.min(MAX_DELAY, BASE_DELAY * 2 ** this.attempt);
    this.attempt += 1;
    this.onState('reconnecting', Math.max(1, Math.round(delay / 1000)));
    this.timer = setTimeout(() => this.start(), delay / 2 + Math.random() * (delay / 2));
  }

  /** Try again now (the network came back), without waiting for the backoff. */
  wake() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.timer);
    this.start();
  }

  startHeartbeat(ws) {
    this.stopHeartbeat();
    if (!this.heartbeat) return;
    this.lastHeard = Date.now();
    this.pinger = setInterval(() => {
      if (this.ws !== ws || ws.readyState !== WebSocket.OPEN) return;
      if (Date.now() - this.lastHeard > this.heartbeat.silence) {
        // Half-open: give up on it without waiting for a close handshake.
        try { ws.close(); } catch { /* already closing */ }
        this.gone(1006, 'no answer to pings');
        return;
      }
      this.send({ type: 'ping', id: ++this.pingId });
    }, this.heartbeat.every);
  }

  stopHeartbeat() {
    clearInterval(this.pinger);
    this.pinger = null;
  }

  send(event) {
    if (!this.open) return false;
    try {
      this.ws.send(JSON.stringify(event));
      return true;
    } catch {
      return false;
    }
  }

  /** Close now and come back (a test hook, and what a dead network looks like). */
  drop() {
    if (this.ws) this.ws.close();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.stopHeartbeat();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      try { ws.close(1000, 'bye'); } catch { /* already closed */ }
    }
  }
}
