// Entry point of the customer chat (the page at `/` and the widget's frame at `/embed`):
// language, branding, the bridge to the widget's host page, then the conversation itself.

import { pickLanguage, setLanguage, translatePage } from '../shared/i18n.js';
import { start } from './app.js';

const body = document.body.dataset;

function chooseLanguage() {
  // The embed snippet's data-lang (?lang=) wins; else the browser's preference list.
  if (body.lang) return setLanguage(body.lang);
  const wanted = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
  return setLanguage(pickLanguage(wanted, body.defaultLang || 'en'));
}

function mix(hex, other, share) {
  const parse = (c) => [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16));
  const full = (c) => (c.length === 4 ? `#${c[1]}${c[1]}${c[2]}${c[2]}${c[3]}${c[3]}` : c);
  const a = parse(full(hex));
  const b = parse(full(other));
  return `#${a.map((v, i) => Math.round(v * (1 - share) + b[i] * share).toString(16).padStart(2, '0')).join('')}`;
}

/** BRAND_COLOR (validated as #rgb / #rrggbb by the server) replaces the primary colour. */
function applyBrandColor(color) {
  if (!/^#(?:[0-9a-f]{3}|[0-9a-f]{6})$/i.test(color || '')) return;
  const root = document.documentElement.style;
  root.setProperty('--primary', color);
  root.setProperty('--primary-strong', mix(color, '#000000', 0.18));
  root.setProperty('--primary-soft', mix(color, '#ffffff', 0.88));
  root.setProperty('--focus', color);
}

/** In the widget's frame: talk to the host page (only an allowed origin) — ready, a new
 * message for the unread count, an overdue answer — and let it keep the conversation (see
 * app.js, loadSaved). No message content ever crosses. Resolves to the options for start(). */
function widgetBridge() {
  if (body.embedded !== 'true' || !body.parentOrigin || window.parent === window) return Promise.resolve({});
  const origin = body.parentOrigin;
  const post = (message) => {
    try { window.parent.postMessage(message, origin); } catch { /* parent gone */ }
  };
  return new Promise((resolve) => {
    const bridge = {
      notify: (kind) => post({ helpline: kind }),
      persist: (saved) => post({ helpline: 'session', session: saved }),
    };
    // A loader that does not answer (an old copy, a blocked script) must not stall the chat.
    const fallback = setTimeout(() => resolve(bridge), 1500);
    window.addEventListener('message', (e) => {
      if (e.origin !== origin || e.source !== window.parent || !e.data) return;
      if (e.data.helpline === 'saved') {
        clearTimeout(fallback);
        resolve({ ...bridge, saved: e.data.session || null });
      } else if (e.data.helpline === 'opened') {
        const input = document.getElementById('composer-input');
        if (input && !input.disabled) input.focus();
      }
    });
    post({ helpline: 'ready' });
  });
}

document.documentElement.lang = chooseLanguage();
translatePage();
applyBrandColor(body.brandColor);
widgetBridge().then((bridge) => {
  start({ overdueSeconds: Math.max(1, parseInt(body.overdueSeconds, 10) || 10), ...bridge });
});
