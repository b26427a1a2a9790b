// The staff HTTP API: every call carries X-API-Key; failures become ApiError with the
// server's own code and message (the one JSON error shape).

import { ApiError, request, socketUrl } from '../shared/http.js';

export { ApiError, socketUrl };

const KEY_STORAGE = 'helpline.console.key';

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

  request(method, path, body) {
    const headers = { 'X-API-Key': this.key };
    // A FormData body goes as multipart (the browser sets the boundary); anything else as JSON.
    if (body instanceof FormData) return request(method, path, { headers, form: body });
    return request(method, path, { headers, json: body });
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
