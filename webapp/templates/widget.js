/* Helpline chat widget loader: paste
 *   <script src="https://helpline.example/widget.js" data-lang="fr" async></script>
 * on any page of a site listed in WIDGET_ORIGINS. It adds a launcher bubble (in a shadow root,
 * so the site's CSS and ours never mix) that opens the chat in a frame on /embed: the same
 * page, modules, protocol and reconnection as the full chat page. Open/closed state, the unread
 * count, whether a chat was started and the conversation's id and token are kept in this
 * site's localStorage (the frame's own storage is third-party: often blocked or wiped); the
 * messages themselves stay in the frame (our origin), which the site cannot read. */
(function () {
  'use strict';

  var CONFIG = {{ config|tojson }};
  var script = document.currentScript;
  if (!script || window.__helplineWidget) return;
  window.__helplineWidget = true;

  var base = new URL(script.src, window.location.href).origin;
  var data = script.dataset;
  var lang = /^[a-z]{2}$/i.test(data.lang || '') ? data.lang.toLowerCase() : '';
  var side = data.position === 'left' ? 'left' : 'right';
  var color = /^#(?:[0-9a-f]{3}|[0-9a-f]{6})$/i.test(data.color || '') ? data.color : CONFIG.color || '#2f54c8';
  var KEY = 'helpline.widget';
  var SESSION_KEY = 'helpline.widget.session';
  var READY_TIMEOUT_MS = 15000;
  var LOAD_GRACE_MS = 2000;

  var state = load();
  var t = function (key, vars) { return key === 'unread' ? String(vars.count) : key; };
  var frame = null;
  var ready = false;
  var readyTimer = null;

  function load() {
    try {
      var saved = JSON.parse(window.localStorage.getItem(KEY) || '{}') || {};
      return { open: saved.open === true, unread: Math.max(0, saved.unread | 0), started: saved.started === true };
    } catch (err) {
      return { open: false, unread: 0, started: false };
    }
  }

  function save() {
    try { window.localStorage.setItem(KEY, JSON.stringify(state)); } catch (err) { /* private mode */ }
  }

  // The conversation (its id, token and last seen seq) lives here, in this site's storage:
  // the frame's own storage is third-party and many browsers block or wipe it.
  function loadSession() {
    try { return JSON.parse(window.localStorage.getItem(SESSION_KEY) || 'null'); } catch (err) { return null; }
  }

  function saveSession(saved) {
    try {
      if (saved && typeof saved === 'object') window.localStorage.setItem(SESSION_KEY, JSON.stringify(saved));
      else window.localStorage.removeItem(SESSION_KEY);
    } catch (err) { /* private mode: the chat still works, it just won't resume */ }
  }

  var host = document.createElement('div');
  host.id = 'helpline-widget';
  var root = host.attachShadow({ mode: 'open' });
  var css = document.createElement('style');
  css.textContent = [
    ':host { all: initial; }',
    '.launcher { position: fixed; bottom: 20px; ' + side + ': 20px; z-index: 2147483000;',
    '  width: 60px; height: 60px; border-radius: 50%; border: 0; cursor: pointer; color: #fff;',
    '  background: var(--hl-color); box-shadow: 0 8px 24px rgba(0,0,0,.25); display: grid; place-items: center; }',
    '.launcher:focus-visible { outline: 3px solid #1d4ed8; outline-offset: 3px; }',
    '.badge { position: absolute; top: -4px; ' + (side === 'left' ? 'left' : 'right') + ': -4px; min-width: 22px; height: 22px;',
    '  padding: 0 6px; border-radius: 11px; background: #b42318; color: #fff; box-sizing: border-box;',
    '  font: 700 12px/22px system-ui, sans-serif; text-align: center; }',
    '.panel { position: fixed; bottom: 92px; ' + side + ': 20px; z-index: 2147483000;',
    '  width: 400px; height: min(640px, calc(100vh - 120px)); max-width: calc(100vw - 40px);',
    '  border-radius: 16px; overflow: hidden; background: #fff; box-shadow: 0 16px 48px rgba(0,0,0,.3);',
    '  display: flex; flex-direction: column; }',
    '.bar { display: flex; justify-content: flex-end; padding: 4px; background: var(--hl-color); }',
    '.close { width: 32px; height: 32px; border: 0; border-radius: 8px; cursor: pointer; color: #fff;',
    '  background: transparent; font: 22px/1 system-ui, sans-serif; }',
    '.close:focus-visible { outline: 2px solid #fff; }',
    'iframe { flex: 1; width: 100%; border: 0; }',
    '.fail { margin: auto; padding: 24px; font: 15px/1.5 system-ui, sans-serif; color: #1b2330; text-align: center; }',
    '.fail a { color: var(--hl-color); }',
    '[hidden] { display: none !important; }',
    '@media (max-width: 480px) { .panel { inset: 0; width: auto; height: auto; max-width: none; border-radius: 0; } }',
  ].join('\n');
  host.style.setProperty('--hl-color', color);

  var launcher = document.createElement('button');
  launcher.type = 'button';
  launcher.className = 'launcher';
  launcher.setAttribute('aria-expanded', 'false');
  launcher.innerHTML = '<svg viewBox="0 0 24 24" width="28" height="28" aria-hidden="true" focusable="false">' +
    '<path fill="currentColor" d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-4.4 3.5A1 1 0 0 1 3 20.7V6a2 2 0 0 1 1-2z"/></svg>';
  var badge = document.createElement('span');
  badge.className = 'badge';
  badge.hidden = true;
  launcher.appendChild(badge);

  var panel = document.createElement('div');
  panel.className = 'panel';
  panel.hidden = true;
  panel.setAttribute('role', 'dialog');
  panel.setAttribute('aria-label', CONFIG.name);
  var bar = document.createElement('div');
  bar.className = 'bar';
  var close = document.createElement('button');
  close.type = 'button';
  close.className = 'close';
  close.textContent = '×';
  bar.appendChild(close);
  panel.appendChild(bar);
  root.append(css, panel, launcher);

  function label() {
    launcher.setAttribute('aria-label', t('open') + (state.unread ? ' (' + t('unread', { count: state.unread }) + ')' : ''));
    close.setAttribute('aria-label', t('close'));
    badge.textContent = state.unread > 99 ? '99+' : String(state.unread);
    badge.hidden = !state.unread || state.open;
  }

  function frameUrl() {
    var q = 'origin=' + encodeURIComponent(window.location.origin) + (lang ? '&lang=' + lang : '');
    return base + '/embed?' + q;
  }

  function ensureFrame() {
    if (frame) return;
    frame = document.createElement('iframe');
    frame.title = CONFIG.name;
    frame.src = frameUrl();
    frame.setAttribute('allow', 'clipboard-write');
    // A frame that never says hello was refused (this site is not in WIDGET_ORIGINS, so the
    // browser blocked it) or the server is down: say so rather than show an empty box. The
    // chat says hello before its frame's load event, so a short grace after it is enough.
    frame.addEventListener('load', function () {
      clearTimeout(readyTimer);
      readyTimer = setTimeout(function () { if (!ready) failed(); }, LOAD_GRACE_MS);
    });
    readyTimer = setTimeout(function () { if (!ready) failed(); }, READY_TIMEOUT_MS);
    panel.appendChild(frame);
  }

  function failed() {
    if (panel.querySelector('.fail')) return;
    var box = document.createElement('p');
    box.className = 'fail';
    box.setAttribute('role', 'alert');
    box.textContent = t('unavailable') + ' ';
    var link = document.createElement('a');
    link.href = base + '/' + (lang ? '?lang=' + lang : '');
    link.target = '_blank';
    link.rel = 'noopener';
    link.textContent = t('openFull');
    box.appendChild(link);
    if (frame) frame.hidden = true;
    panel.appendChild(box);
    host.dataset.state = 'failed';
  }

  function setOpen(open) {
    state.open = open;
    if (open) {
      state.unread = 0;
      state.started = true;
      ensureFrame();
    }
    save();
    panel.hidden = !open;
    launcher.setAttribute('aria-expanded', open ? 'true' : 'false');
    host.dataset.open = open ? 'true' : 'false';
    label();
    if (open && ready) frame.contentWindow.postMessage({ helpline: 'opened' }, base);
  }

  window.addEventListener('message', function (e) {
    if (e.origin !== base || !frame || e.source !== frame.contentWindow || !e.data) return;
    var kind = e.data.helpline;
    if (kind === 'ready') {
      ready = true;
      e.source.postMessage({ helpline: 'saved', session: loadSession() }, base);
      clearTimeout(readyTimer);
      host.dataset.state = 'ready';
      if (state.open) frame.contentWindow.postMessage({ helpline: 'opened' }, base);
    } else if (kind === 'session') {
      saveSession(e.data.session);
    } else if (kind === 'message' && !state.open) {
      state.unread += 1;
      save();
      label();
    }
  });
  // Another tab of this site opened or closed the chat, or read its messages.
  window.addEventListener('storage', function (e) {
    if (e.key !== KEY) return;
    var next = load();
    state.unread = next.unread;
    if (next.started && !frame) ensureFrame();
    label();
  });

  launcher.addEventListener('click', function () { setOpen(!state.open); });
  close.addEventListener('click', function () {
    setOpen(false);
    launcher.focus();
  });

  function mount() {
    document.body.appendChild(host);
    if (state.started) ensureFrame(); // counts unread messages while closed
    setOpen(state.open);
  }

  // The interface strings are the chat's own (one lookup function), loaded from our server.
  import(base + '/static/shared/i18n.js').then(function (i18n) {
    var wanted = lang ? [lang] : navigator.languages || [navigator.language];
    i18n.setLanguage(i18n.pickLanguage(wanted, CONFIG.language));
    t = i18n.t;
  }).catch(function () {
    t = function (key, vars) { return ({ open: 'Chat', close: '×', unavailable: '', openFull: base })[key] || (vars ? String(vars.count) : key); };
  }).then(function () {
    if (document.body) mount();
    else document.addEventListener('DOMContentLoaded', mount);
  });
}());
