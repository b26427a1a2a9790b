// How one message's parts look: text with citation markers, its sources, attachments.
// Pure DOM builders (no conversation state), so the page and the widget's frame share them.

import { formatSize, h, safeId } from '../shared/dom.js';
import { t } from '../shared/i18n.js';

const CITATION = /\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]/g;

/** The article's own address, when the document's metadata gave one (http(s) only). */
export function articleUrl(source) {
  const url = source && typeof source.url === 'string' ? source.url.trim() : '';
  return /^https?:\/\/[^\s]+$/i.test(url) ? url : null;
}

export function sourceDomId(key, n) {
  return `src-${safeId(key)}-${n}`;
}

/** The reply's text; "[1]" becomes a link to the article (or, without a URL, to the source
 * listed under the reply). */
export function renderText(container, text, sources, key) {
  container.textContent = '';
  const body = String(text || '');
  const byIndex = new Map();
  (sources || []).forEach((s) => { if (s) byIndex.set(Number(s.index), s); });
  CITATION.lastIndex = 0;
  let last = 0;
  let match;
  while ((match = CITATION.exec(body)) !== null) {
    if (match.index > last) container.append(document.createTextNode(body.slice(last, match.index)));
    const sup = h('sup', { class: 'cite' });
    match[1].split(',').forEach((part, i) => {
      const n = parseInt(part.trim(), 10);
      const src = byIndex.get(n);
      if (i) sup.append(document.createTextNode(' '));
      if (!src) {
        sup.append(h('span', { class: 'cite__plain' }, String(n)));
        return;
      }
      const url = articleUrl(src);
      const label = t('sourceLabel', { n, title: src.title || t('helpArticle') });
      sup.append(h('a', {
        class: 'cite__link',
        href: url || `#${sourceDomId(key, n)}`,
        target: url ? '_blank' : null,
        rel: url ? 'noopener noreferrer' : null,
        'aria-label': url ? `${label} ${t('newTab')}` : label,
        'data-source': n,
      }, String(n)));
    });
    container.append(sup);
    last = CITATION.lastIndex;
  }
  if (last < body.length) container.append(document.createTextNode(body.slice(last)));
}

/** The list of sources under a reply: title (a link when the article has a URL) and the
 * passage used. Internal ids (document, chunk, external id) are never shown to customers. */
export function renderSources(li, sources, key) {
  const old = li.querySelector(':scope > .msg__body > .sources');
  if (old) old.remove();
  if (!sources || !sources.length) return;
  const headingId = `sources-${safeId(key)}`;
  const list = h('ol', { class: 'sources__list', 'aria-labelledby': headingId });
  sources.slice().sort((a, b) => a.index - b.index).forEach((s) => {
    const url = articleUrl(s);
    const title = s.title || t('helpArticle');
    const head = url
      ? h('a', {
        class: 'source__title source__link', href: url, target: '_blank', rel: 'noopener noreferrer',
        'aria-label': `${title} ${t('newTab')}`,
      }, title)
      : h('span', { class: 'source__title', text: title });
    list.append(h('li', {
      class: 'source', id: sourceDomId(key, s.index), tabindex: '-1', value: s.index,
    },
    h('span', { class: 'source__num', 'aria-hidden': 'true' }, String(s.index)),
    h('div', { class: 'source__body' },
      h('p', { class: 'source__head' }, head),
      s.snippet ? h('p', { class: 'source__snippet', text: s.snippet }) : null)));
  });
  const box = h('div', { class: 'sources' },
    h('h3', { class: 'sources__title', id: headingId }, t('sources')), list);
  li._parts.body.append(box);
}

/** A file chip: in the composer (removable) or on a sent message. */
export function attachmentEl(info, removable) {
  const li = h('li', { class: 'attachment', 'data-attachment-id': info.attachment_id || null });
  const icon = h('span', { class: 'attachment__icon', 'aria-hidden': 'true' });
  const name = h('span', { class: 'attachment__name', text: info.filename || 'file' });
  const size = h('span', { class: 'attachment__size', text: formatSize(info.size) });
  const status = h('span', { class: 'attachment__status' });
  const preview = h('span', { class: 'attachment__preview', hidden: true });
  const main = h('div', { class: 'attachment__main' },
    h('div', { class: 'attachment__line' }, name, size), status, preview);
  li.append(icon, main);
  li._parts = { status, preview, name, size };
  if (removable) {
    const remove = h('button', {
      type: 'button', class: 'attachment__remove',
      'aria-label': t('removeFile', { name: info.filename || 'file' }),
    }, '×');
    li.append(remove);
    li._parts.remove = remove;
  }
  updateAttachmentEl(li, info);
  return li;
}

export function updateAttachmentEl(li, info) {
  // "done" is the worker's newer word for a file read successfully.
  const status = info.status === 'done' ? 'processed' : info.status || 'queued';
  li.dataset.status = status;
  let label = t(`att.${status}`);
  if (label === `att.${status}`) label = status;
  if (status === 'failed' && info.error) label += `: ${info.error}`;
  li._parts.status.textContent = label;
  if (info.preview && status !== 'failed') {
    li._parts.preview.textContent = info.preview;
    li._parts.preview.hidden = false;
  }
  if (info.size !== undefined && info.size !== null) {
    li._parts.size.textContent = formatSize(info.size);
  }
}
