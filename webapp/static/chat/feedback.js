// Thumbs up / down under each bot answer, with an optional reason for a thumbs down
// (POST /api/chat/sessions/<id>/messages/<message_id>/feedback; a new rating replaces the
// earlier one, so the customer can change their mind). History brings the stored verdict back.

import { announce, h } from '../shared/dom.js';
import { t } from '../shared/i18n.js';

// Drawn, not emoji: many systems (kiosks, servers, some Linux desktops) have no emoji font.
const THUMB = 'M2 21h4V9H2v12zm20-11a2 2 0 0 0-2-2h-6.3l1-4.6v-.3c0-.4-.2-.8-.4-1.1L13.2 1 6.6 7.6'
  + 'C6.2 8 6 8.5 6 9v10a2 2 0 0 0 2 2h9c.8 0 1.5-.5 1.8-1.2l3-7.1c.1-.2.2-.5.2-.7v-2z';

function thumb(down) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', '16');
  svg.setAttribute('height', '16');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  if (down) svg.setAttribute('transform', 'rotate(180)');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('fill', 'currentColor');
  path.setAttribute('d', THUMB);
  svg.append(path);
  return svg;
}

/**
 * Add the feedback row to a completed answer `li` for `message` (id, feedback?).
 * send(messageId, body) => Promise: the API call with the conversation's token.
 */
export function addFeedback(li, message, send) {
  if (!message || !message.id || li.querySelector(':scope > .msg__body > .feedback')) return;
  const stored = message.feedback && typeof message.feedback === 'object' ? message.feedback : null;
  const row = h('div', { class: 'feedback', role: 'group', 'aria-label': t('feedbackAsk') });
  const ask = h('span', { class: 'feedback__ask', text: t('feedbackAsk') });
  const up = h('button', {
    type: 'button', class: 'feedback__btn', 'data-rating': 'up', 'aria-pressed': 'false',
    'aria-label': t('feedbackUp'), title: t('feedbackUp'),
  }, thumb(false));
  const down = h('button', {
    type: 'button', class: 'feedback__btn', 'data-rating': 'down', 'aria-pressed': 'false',
    'aria-label': t('feedbackDown'), title: t('feedbackDown'),
  }, thumb(true));
  const status = h('p', { class: 'feedback__done', role: 'status' });
  const error = h('p', { class: 'feedback__error', role: 'alert', hidden: true });
  row.append(ask, up, down, status, error);
  let form = null;

  function pressed(rating) {
    up.setAttribute('aria-pressed', rating === 'up' ? 'true' : 'false');
    down.setAttribute('aria-pressed', rating === 'down' ? 'true' : 'false');
    row.dataset.rating = rating || '';
  }

  function submit(rating, reason) {
    error.hidden = true;
    up.disabled = true;
    down.disabled = true;
    const body = { rating };
    if (reason) body.reason = reason;
    return send(message.id, body).then(() => {
      pressed(rating);
      if (form) { form.remove(); form = null; }
      status.textContent = t('feedbackThanks');
      announce(t('feedbackThanks'));
    }, (err) => {
      error.textContent = t('feedbackFailed', { message: err.message });
      error.hidden = false;
    }).finally(() => {
      up.disabled = false;
      down.disabled = false;
    });
  }

  function askReason() {
    if (form) { form.querySelector('input').focus(); return; }
    const id = `feedback-reason-${message.id}`;
    const input = h('input', {
      type: 'text', id, class: 'feedback__reason', maxlength: '500', autocomplete: 'off',
      'aria-label': t('feedbackReason'), placeholder: t('feedbackReason'),
    });
    form = h('form', { class: 'feedback__form', novalidate: true },
      input, h('button', { type: 'submit', class: 'btn btn--secondary feedback__send' }, t('feedbackSend')));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      submit('down', input.value.trim());
    });
    row.insertBefore(form, status);
    input.focus();
  }

  up.addEventListener('click', () => submit('up'));
  // A thumbs down is recorded at once (a reason is optional), then a reason may follow.
  down.addEventListener('click', () => submit('down').then(() => { if (!error.hidden) return; askReason(); }));
  pressed(stored && stored.rating);
  li._parts.body.append(row);
}
