// Times as people read them, in the browser's own zone and language. The API sends ISO 8601
// with an offset everywhere (`…Z`), so the same instant prints the same before and after a
// reload; a value without a zone would be read as local time, so we refuse to guess.

const ZONED = /(?:Z|[+-]\d{2}:?\d{2})$/i;

/** A Date for an API timestamp (null when missing, malformed or without a zone). */
export function parseTime(iso) {
  if (typeof iso !== 'string' || !ZONED.test(iso.trim())) return null;
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? null : t;
}

// Times follow the browser's own locale and zone (the reader's clock), whatever the
// interface language.
const locale = undefined;

/** "3:41 PM" / "15:41". */
export function clock(iso) {
  const t = parseTime(iso);
  return t ? t.toLocaleTimeString(locale, { hour: '2-digit', minute: '2-digit' }) : '';
}

/** "6 Dec 2026, 15:41". */
export function fullTime(iso) {
  const t = parseTime(iso);
  return t ? t.toLocaleString(locale, { dateStyle: 'medium', timeStyle: 'short' }) : '';
}

/** "3 min ago", "2 h ago", "just now": how long someone has been waiting. */
export function ago(iso, now = Date.now()) {
  const t = parseTime(iso);
  if (!t) return '';
  const s = Math.max(0, Math.round((now - t.getTime()) / 1000));
  if (s < 45) return 'just now';
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const hrs = Math.round(m / 60);
  if (hrs < 48) return `${hrs} h ago`;
  return `${Math.round(hrs / 24)} days ago`;
}
