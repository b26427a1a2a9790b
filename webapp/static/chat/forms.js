// The two small forms a conversation may offer: an email address for a reply when nobody can
// answer now, and the 1–5 rating at its end. Each talks to the API through `ctx` (built by
// app.js for the current conversation):
//   ctx.session                 the conversation ({session_id, token, contact_email, rated})
//   ctx.post(suffix, body)      POST /api/sessions/<id><suffix> with its token
//   ctx.current()               false once the customer started another conversation
//   ctx.save()                  remember the session's new state (email given, rated)

import { announce, h } from '../shared/dom.js';
import { t } from '../shared/i18n.js';

function contactDone(email) {
  return h('p', { id: 'contact-done', class: 'contact__done', role: 'status' },
    t('contactDone', { email }));
}

/** The email form (or, once given, where we will reply); null when already on the page. */
export function contactBox(ctx) {
  const { session } = ctx;
  if (!session || document.getElementById('contact-form') || document.getElementById('contact-done')) {
    return null;
  }
  const box = h('div', { class: 'contact' });
  if (session.contact_email) {
    box.append(contactDone(session.contact_email));
    return box;
  }
  const input = h('input', {
    type: 'email', id: 'contact-email', class: 'contact__input', autocomplete: 'email',
    inputmode: 'email', required: true, maxlength: '254', placeholder: 'you@example.com',
    'aria-describedby': 'contact-error',
  });
  const submit = h('button', { type: 'submit', class: 'btn btn--primary' }, t('send'));
  const error = h('p', { id: 'contact-error', class: 'contact__error', role: 'alert', hidden: true });
  const form = h('form', { id: 'contact-form', class: 'contact__form', novalidate: true },
    h('label', { for: 'contact-email', class: 'contact__label' }, t('contactLabel')),
    h('div', { class: 'contact__row' }, input, submit),
    error);

  function fail(text) {
    error.textContent = text;
    error.hidden = false;
    input.setAttribute('aria-invalid', 'true');
    submit.disabled = false;
    input.focus();
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const email = input.value.trim();
    if (!email) return fail(t('contactEmpty'));
    if (input.validity && input.validity.typeMismatch) return fail(t('contactInvalid'));
    error.hidden = true;
    input.removeAttribute('aria-invalid');
    submit.disabled = true;
    ctx.post('/contact', { email }).then((res) => {
      if (!ctx.current()) return;
      session.contact_email = (res && res.contact_email) || email;
      ctx.save();
      form.replaceWith(contactDone(session.contact_email));
      announce(t('contactThanks', { email: session.contact_email }));
    }, (err) => {
      if (!ctx.current()) return;
      if (err.status === 422) fail(t('contactWrong'));
      else if (err.status === 409) fail(t('contactNoRequest', { message: err.message }));
      else fail(err.message);
    });
    return undefined;
  });
  box.append(form);
  return box;
}

function ratingThanks(text) {
  return h('p', { id: 'rating-thanks', class: 'rating__thanks', role: 'status' },
    text || t('ratingThanks'));
}

/** The 1–5 rating, once per conversation; null when rated or already on the page. */
export function ratingForm(ctx) {
  const { session } = ctx;
  if (!session || session.rated || document.getElementById('rating')) return null;
  let score = 0;
  const buttons = [];
  const error = h('p', { class: 'rating__error', role: 'alert', hidden: true });
  const scores = h('div', { class: 'rating__scores', role: 'group', 'aria-label': t('ratingGroup') });
  [1, 2, 3, 4, 5].forEach((n) => {
    const word = t('ratingWords')[n - 1];
    const b = h('button', {
      type: 'button', class: 'rating__score', 'data-score': n, 'aria-pressed': 'false',
      'aria-label': t('ratingScore', { n, word }), title: word,
    }, '★');
    b.addEventListener('click', () => {
      score = n;
      buttons.forEach((other, i) => {
        other.setAttribute('aria-pressed', i + 1 === n ? 'true' : 'false');
        other.classList.toggle('is-on', i < n);
      });
      error.hidden = true;
    });
    buttons.push(b);
    scores.append(b);
  });
  const comment = h('textarea', { id: 'rating-comment', class: 'rating__comment', rows: '2', maxlength: '2000' });
  const submit = h('button', { type: 'submit', id: 'rating-submit', class: 'btn btn--primary' }, t('ratingSend'));
  const form = h('form', { id: 'rating', class: 'rating', novalidate: true, 'aria-labelledby': 'rating-title' },
    h('p', { id: 'rating-title', class: 'rating__title' }, t('ratingTitle')),
    scores,
    h('label', { for: 'rating-comment', class: 'rating__label' }, t('ratingComment')),
    comment, error, submit);

  function rated(text) {
    session.rated = true;
    ctx.save();
    form.replaceWith(ratingThanks(text));
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!score) {
      error.textContent = t('ratingChoose');
      error.hidden = false;
      if (buttons[0]) buttons[0].focus();
      return;
    }
    submit.disabled = true;
    error.hidden = true;
    const text = comment.value.trim();
    ctx.post('/rating', { score, comment: text || undefined }).then(() => {
      if (!ctx.current()) return;
      rated();
      announce(t('ratingThanksAnnounce'));
    }, (err) => {
      if (!ctx.current()) return;
      if (err.status === 409 || err.code === 'already_rated') {
        rated(t('ratingAlready'));
        return;
      }
      error.textContent = t('ratingFailed', { message: err.message });
      error.hidden = false;
      submit.disabled = false;
    });
  });
  return form;
}
