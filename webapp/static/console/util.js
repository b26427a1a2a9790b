// Small helpers shared by the console modules. Data only ever reaches the page as text.

/** Build an element; `text` goes through textContent, never HTML. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') el.textContent = String(value);
    else if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** A v4 UUID (crypto.randomUUID is missing on plain-HTTP origins in some browsers). */
export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// Reasons arrive as machine words; agents read sentences.
const REASONS = {
  explicit_request: 'Asked for a person',
  customer_choice: 'Chose to talk to a person',
  callback_request: 'Asked to be contacted',
  negative_sentiment: 'Sounds unhappy',
  repeated_question: 'Asked the same question again',
  low_confidence_twice: 'The assistant could not answer twice',
  agent_takeover: 'Taken over by an agent',
  processing_failed: 'The assistant failed to answer',
};

export function reasonWords(code) {
  if (REASONS[code]) return REASONS[code];
  const plain = String(code || '').replace(/[_-]+/g, ' ').trim();
  return plain ? plain[0].toUpperCase() + plain.slice(1) : 'No reason given';
}

export const PRIORITY_ORDER = { urgent: 0, high: 1, normal: 2, low: 3 };

export function priorityWords(priority) {
  const p = String(priority || 'normal');
  return p[0].toUpperCase() + p.slice(1);
}

// Where the server's own message reads like a log line, say what it means for the agent.
const REPLY_ERRORS = {
  not_claimed: 'Claim this ticket before replying: only the agent who holds it can write to the customer.',
  session_not_active: 'This conversation has ended, so the customer cannot get new messages.',
  rate_limited: 'Too many messages at once. Wait a moment and send again.',
  empty_message: 'Write something before sending.',
};

/** The server's message as a sentence ("sam already took…" stays the server's words). */
export function sentence(message) {
  const text = String(message || '').trim() || 'Something went wrong. Try again.';
  return text[0].toUpperCase() + text.slice(1) + (/[.!?…]$/.test(text) ? '' : '.');
}

export function replyErrorWords(code, message) {
  return REPLY_ERRORS[code] || sentence(message);
}

/** A refused claim, release or resolve: name who holds the ticket when the server says. */
export function actionErrorWords(err) {
  const details = (err && err.details) || {};
  if (err && err.code === 'ticket_taken' && details.agent) return `${details.agent} already took this ticket.`;
  if (err && err.code === 'ticket_taken' && details.status === 'resolved') return 'This ticket is already resolved.';
  return sentence(err && err.message);
}

/** "3 min", "2 h", "just now": how long someone has been waiting. */
export function ago(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 45) return 'just now';
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const hrs = Math.round(m / 60);
  if (hrs < 48) return `${hrs} h ago`;
  return `${Math.round(hrs / 24)} days ago`;
}

export function clock(iso) {
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return '';
  return t.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

export function fullTime(iso) {
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return '';
  return t.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

export function formatSize(bytes) {
  const n = Number(bytes) || 0;
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${Math.round(n / 1024)} KB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MB`;
}

/** Strip the bot's "[1]" citation markers: the console lists the sources separately. */
export function stripCitations(text) {
  return String(text || '').replace(/\s?\[(\d+(?:\s*,\s*\d+)*)\]/g, '');
}

let announceTimer = null;

/** Tell screen readers about something that changed out of view (new ticket, claim). */
export function announce(text) {
  const region = document.getElementById('announcer');
  if (!region) return;
  clearTimeout(announceTimer);
  region.textContent = '';
  announceTimer = setTimeout(() => { region.textContent = text; }, 60);
}
