// Interface strings in several languages, one lookup function. The language is the embed
// snippet's `data-lang` (passed as ?lang=), else the first of navigator.languages we have,
// else the configured DEFAULT_LANGUAGE; any key missing in a language falls back to English.
// The widget's loader imports this module from a host page (served with CORS for that), so
// nothing here touches the document unless asked to (translatePage).

import de from './i18n/de.js';
import en from './i18n/en.js';
import es from './i18n/es.js';
import fr from './i18n/fr.js';

export const LANGUAGES = { en, fr, es, de };

let current = 'en';

/** The first supported language among `wanted` (e.g. ['fr-CA', 'en']), else `fallback`. */
export function pickLanguage(wanted, fallback = 'en') {
  for (const tag of wanted || []) {
    const base = String(tag || '').toLowerCase().split('-')[0];
    if (LANGUAGES[base]) return base;
  }
  return LANGUAGES[fallback] ? fallback : 'en';
}

/** Use `lang` from now on (English when we do not have it); returns the one chosen. */
export function setLanguage(lang) {
  current = LANGUAGES[lang] ? lang : 'en';
  return current;
}

export function language() {
  return current;
}

/** The string for `key` in the current language, `{name}` placeholders filled from `vars`. */
export function t(key, vars) {
  const table = LANGUAGES[current];
  let value = Object.prototype.hasOwnProperty.call(table, key) ? table[key] : en[key];
  if (value === undefined) return key;
  if (typeof value !== 'string') return value;
  if (vars) value = value.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
  return value;
}

/** Translate server-rendered text marked with data-i18n (text), -label, -title, -placeholder. */
export function translatePage(root = document) {
  root.querySelectorAll('[data-i18n]').forEach((el) => { el.textContent = t(el.dataset.i18n); });
  root.querySelectorAll('[data-i18n-label]').forEach((el) => el.setAttribute('aria-label', t(el.dataset.i18nLabel)));
  root.querySelectorAll('[data-i18n-title]').forEach((el) => el.setAttribute('title', t(el.dataset.i18nTitle)));
}
