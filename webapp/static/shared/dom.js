// DOM helpers shared by the chat page, the widget's frame and the console.
// Data from the server only ever reaches the page as text (textContent), never as HTML.

/** Build an element; `text` goes through textContent, `on…` keys add listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') el.textContent = String(value);
    else if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
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
  if (window.crypto && typeof window.crypto.randomUUID === 'function') return window.crypto.randomUUID();
  const b = window.crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** An id fragment safe inside an element id or a CSS selector. */
export function safeId(raw) {
  return String(raw || '').replace(/[^A-Za-z0-9_-]/g, '');
}

/** "512 B", "3.4 KB", "1.2 MB". */
export function formatSize(bytes) {
  const n = Number(bytes);
  if (!Number.isFinite(n) || n < 0) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MB`;
}

let announceTimer = null;

/** Tell screen readers about something that changed out of view (#announcer, polite). */
export function announce(text) {
  const region = document.getElementById('announcer');
  if (!region) return;
  clearTimeout(announceTimer);
  region.textContent = '';
  announceTimer = setTimeout(() => { region.textContent = text; }, 60);
}

/** Strip the bot's "[1]" citation markers (for announcements and the console's thread). */
export function stripCitations(text) {
  return String(text || '').replace(/\s?\[\d{1,3}(?:\s*,\s*\d{1,3})*\]/g, '');
}
