// One way to call the JSON API: failures become ApiError carrying the server's own code and
// message (the one error shape, {"error": {"code", "message", "details"}}); a request that
// never reached the server is status 0, code "network".

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export const NETWORK_MESSAGE = 'The server cannot be reached. Check your connection.';

/** fetch + JSON; `json` or `form` is the body; `headers` are added as given. */
export async function request(method, path, { headers = {}, json, form, networkMessage } = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers }, cache: 'no-store', credentials: 'same-origin' };
  if (json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(json);
  } else if (form) {
    init.body = form;
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network', networkMessage || NETWORK_MESSAGE);
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

/** ws(s)://<this host><path>?<params>. */
export function socketUrl(path, params) {
  const proto = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  const query = new URLSearchParams(params).toString();
  return `${proto}//${window.location.host}${path}?${query}`;
}
