// The staff HTTP API: every call carries X-API-Key; failures become ApiError with the
// server's own code and message (the one JSON error shape).

const KEY_STORAGE = 'helpline.console.key';

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export function savedKey() {
  try { return sessionStorage.getItem(KEY_STORAGE) || ''; } catch { return ''; }
}

export function saveKey(key) {
  try { sessionStorage.setItem(KEY_STORAGE, key); } catch { /* private mode: keep it in memory */ }
}

export function forgetKey() {
  try { sessionStorage.removeItem(KEY_STORAGE); } catch { /* nothing stored */ }
}

export class StaffApi {
  constructor(key) {
    this.key = key;
    this.token = null; // {value, agent, expiresAt}
  }

  async request(method, path, body) {
    const headers = { 'X-API-Key': this.key, Accept: 'application/json' };
    const init = { method, headers, cache: 'no-store', credentials: 'same-origin' };
    if (body instanceof FormData) {
      init.body = body; // the browser sets the multipart boundary
    } else if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch {
      throw new ApiError(0, 'network', 'The server cannot be reached. Check your connection.');
    }
    const text = await resp.text().catch(() => '');
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = null; }
    if (!resp.ok) {
      const err = (data && data.error) || {};
      throw new ApiError(resp.status, err.code || `http_${resp.status}`,
        err.message || `The server answered ${resp.status}.`, err.details);
    }
    return data;
  }

  /** A socket token (sockets cannot send headers); cached until a minute before it expires. */
  async socketToken(force = false) {
    const t = this.token;
    if (!force && t && t.expiresAt - Date.now() > 60_000) return t;
    const data = await this.request('POST', '/api/console/token');
    const life = Number(data.expires_in) > 0 ? Number(data.expires_in) : 300;
    this.token = {
      value: data.token,
      agent: (data.agent && data.agent.name) || 'Support',
      expiresAt: Date.now() + life * 1000,
    };
    return this.token;
  }

  tickets(status = 'active') {
    return this.request('GET', `/api/tickets?status=${encodeURIComponent(status)}&limit=200`);
  }

  ticket(id) {
    return this.request('GET', `/api/tickets/${encodeURIComponent(id)}`);
  }

  act(id, action, body) {
    return this.request('POST', `/api/tickets/${encodeURIComponent(id)}/${action}`, body);
  }

  history(sessionId) {
    return this.request('GET', `/api/chat/sessions/${encodeURIComponent(sessionId)}/messages?limit=500`);
  }

  documents({ q = '', status = '' } = {}) {
    const params = new URLSearchParams({ limit: '1000' });
    if (q) params.set('q', q);
    if (status) params.set('status', status);
    return this.request('GET', `/api/kb/documents?${params}`);
  }

  uploadDocument(file, title) {
    const form = new FormData();
    form.append('file', file);
    if (title) form.append('title', title);
    return this.request('POST', '/api/kb/documents', form);
  }

  deleteDocument(id) {
    return this.request('DELETE', `/api/kb/documents/${encodeURIComponent(id)}`);
  }

  reindexDocument(id) {
    return this.request('POST', `/api/kb/documents/${encodeURIComponent(id)}/reindex`);
  }

  /** `/api/reports/<name>` for a period: {from, to, tz, limit?}. */
  report(name, params) {
    const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v));
    return this.request('GET', `/api/reports/${name}?${query}`);
  }

  send(sessionId, message, clientMsgId) {
    return this.request('POST', `/api/chat/sessions/${encodeURIComponent(sessionId)}/messages`,
      { message, client_msg_id: clientMsgId });
  }
}

export function socketUrl(path, params) {
  const proto = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  const query = new URLSearchParams(params).toString();
  return `${proto}//${window.location.host}${path}?${query}`;
}
