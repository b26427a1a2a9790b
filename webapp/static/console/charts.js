// Small SVG charts for the report page: vertical bars (stacked or grouped) and horizontal
// bars. No library and no CDN: a few shapes drawn with createElementNS, text through
// textContent, colours from CSS classes (so the dark theme applies), a <title> on every bar
// for its exact value, and an aria-label summarising the chart for screen readers.

const NS = 'http://www.w3.org/2000/svg';

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = String(text);
  return el;
}

/** A round upper bound and a few ticks for an axis from 0 to `max`. */
export function niceScale(max, ticks = 4, whole = false) {
  if (!(max > 0)) return { top: 1, step: 1 };
  const raw = whole ? Math.max(1, Math.ceil(max / ticks)) : max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((v) => v >= raw) || 10 * mag;
  return { top: Math.ceil(max / step) * step, step };
}

function legend(series) {
  const ul = document.createElement('ul');
  ul.className = 'chart__legend';
  for (const one of series) {
    const li = document.createElement('li');
    const key = document.createElement('span');
    key.className = `chart__key ${one.cls}`;
    key.setAttribute('aria-hidden', 'true');
    li.append(key, document.createTextNode(one.name));
    ul.append(li);
  }
  return ul;
}

function frame(title, summary, svg, series) {
  const fig = document.createElement('figure');
  fig.className = 'chart';
  const cap = document.createElement('figcaption');
  cap.className = 'chart__title';
  cap.textContent = title;
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `${title}: ${summary}`);
  fig.append(cap, svg);
  if (series && series.length > 1) fig.append(legend(series));
  return fig;
}

/**
 * Vertical bars per category (days, scores): `series` = [{name, cls, values[]}], stacked or
 * side by side. `format` turns a value into the text of its tooltip.
 */
export function barChart({ title, categories, series, stacked = false, format = String, labelEvery }) {
  const W = 640; const H = 220; const L = 36; const R = 8; const T = 10; const B = 28;
  const totals = categories.map((_, i) => (stacked
    ? series.reduce((sum, one) => sum + (one.values[i] || 0), 0)
    : Math.max(0, ...series.map((one) => one.values[i] || 0))));
  const { top, step } = niceScale(Math.max(0, ...totals), 4, format === String);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart__svg', preserveAspectRatio: 'none' });
  const y = (v) => T + (H - T - B) * (1 - v / top);
  for (let v = 0; v <= top + 1e-9; v += step) {
    svg.append(s('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'chart__grid' }));
    svg.append(s('text', { x: L - 6, y: y(v) + 4, class: 'chart__tick', 'text-anchor': 'end' }, +v.toFixed(2)));
  }
  const band = (W - L - R) / Math.max(1, categories.length);
  const every = labelEvery || Math.max(1, Math.ceil(categories.length / 10));
  categories.forEach((cat, i) => {
    const x0 = L + i * band;
    const g = s('g', { class: 'chart__group', 'data-category': cat });
    let base = 0;
    series.forEach((one, k) => {
      const v = one.values[i] || 0;
      const width = stacked ? band * 0.7 : (band * 0.8) / series.length;
      const x = stacked ? x0 + band * 0.15 : x0 + band * 0.1 + k * width;
      const from = stacked ? base : 0;
      const rect = s('rect', {
        x, width: Math.max(1, width - 1), y: y(from + v), height: Math.max(0, y(from) - y(from + v)),
        class: `chart__bar ${one.cls}`, 'data-value': v, 'data-series': one.name,
      });
      rect.append(s('title', {}, `${cat} · ${one.name}: ${format(v)}`));
      g.append(rect);
      if (stacked) base += v;
    });
    svg.append(g);
    if (i % every === 0) {
      svg.append(s('text', { x: x0 + band / 2, y: H - 8, class: 'chart__tick', 'text-anchor': 'middle' }, cat));
    }
  });
  const total = totals.reduce((a, b) => a + b, 0);
  return frame(title, `${categories.length} bars, ${series.map((o) => o.name).join(', ')}; total ${format(total)}`, svg, series);
}

/** Horizontal bars, one per labelled row (reasons), longest first as given. */
export function hbarChart({ title, rows, cls = 'chart__s1', format = String, empty = 'Nothing in this period.' }) {
  if (!rows.length) {
    const p = document.createElement('p');
    p.className = 'chart__empty';
    p.textContent = empty;
    const fig = frame(title, empty, s('svg', { viewBox: '0 0 640 24', class: 'chart__svg chart__svg--empty' }));
    fig.append(p);
    return fig;
  }
  const W = 640; const row = 26; const L = 220; const R = 48; const H = rows.length * row + 6;
  const max = Math.max(1, ...rows.map((r) => r.value));
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart__svg' });
  rows.forEach((r, i) => {
    const y = 3 + i * row;
    const len = ((W - L - R) * r.value) / max;
    svg.append(s('text', { x: L - 8, y: y + 17, class: 'chart__label', 'text-anchor': 'end' }, r.label));
    const rect = s('rect', { x: L, y: y + 4, height: row - 8, width: Math.max(1, len), class: `chart__bar ${r.cls || cls}`, 'data-value': r.value });
    rect.append(s('title', {}, `${r.label}: ${format(r.value)}`));
    svg.append(rect);
    svg.append(s('text', { x: L + len + 6, y: y + 17, class: 'chart__tick' }, format(r.value)));
  });
  return frame(title, rows.map((r) => `${r.label} ${format(r.value)}`).join('; '), svg);
}
