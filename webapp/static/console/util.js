// Words the console shows agents. The generic helpers (elements, ids, times, sizes) live in
// ../shared/ with the chat page's and are re-exported here for the console's modules.

export { announce, formatSize, h, stripCitations, uuid } from '../shared/dom.js';
export { ago, clock, fullTime } from '../shared/time.js';

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

