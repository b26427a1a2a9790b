// The live queue: the database's list (GET /api/tickets) kept current by `ticket` events.

import { PRIORITY_ORDER, ago, announce, h, priorityWords, reasonWords } from './util.js';

const BASE_TITLE = 'Helpline console';

function newer(a, b) {
  // An event may overtake a slower one; keep whichever copy changed last.
  const ta = Date.parse(a && a.updated_at);
  const tb = Date.parse(b && b.updated_at);
  return Number.isNaN(ta) || Number.isNaN(tb) || ta >= tb;
}

/** Open tickets first (most urgent, then longest waiting), then claimed ones. */
function compare(a, b) {
  const open = (t) => (t.status === 'open' ? 0 : 1);
  if (open(a) !== open(b)) return open(a) - open(b);
  const pa = PRIORITY_ORDER[a.priority] ?? 2;
  const pb = PRIORITY_ORDER[b.priority] ?? 2;
  if (pa !== pb) return pa - pb;
  return Date.parse(a.created_at) - Date.parse(b.created_at);
}

export function ownerWords(ticket, me) {
  if (ticket.status === 'resolved') return 'Resolved';
  if (ticket.status !== 'claimed') return 'Waiting for an agent';
  if (ticket.agent && ticket.agent === me) return 'Claimed by you';
  return `Claimed by ${ticket.agent || 'another agent'}`;
}

export function ticketTitle(ticket) {
  return (ticket.summary || '').trim() || `Conversation ${String(ticket.session_id || ticket.id).slice(0, 8)}`;
}

export class Queue {
  constructor(api, { list, count, empty, status }, { me, onOpen, onChange }) {
    this.api = api;
    this.el = { list, count, empty, status };
    this.me = me;
    this.onOpen = onOpen;
    this.onChange = onChange;
    this.tickets = new Map();
    this.items = new Map();
    this.selected = null;
    this.loading = null;
    this.duringLoad = null;
    this.clock = setInterval(() => this.render(), 30_000); // "3 min ago" keeps moving
  }

  destroy() {
    clearInterval(this.clock);
    this.tickets.clear();
    this.items.clear();
    this.el.list.replaceChildren();
    delete this.el.list.dataset.loads;
    document.title = BASE_TITLE;
  }

  /** Re-read the list; events that arrive meanwhile are re-applied on top of the answer. */
  async refresh() {
    if (this.loading) { this.again = true; return this.loading; }
    this.duringLoad = [];
    this.loading = (async () => {
      try {
        const data = await this.api.tickets('active');
        const fresh = new Map((data.tickets || []).map((t) => [t.id, t]));
        for (const t of this.duringLoad) this.merge(fresh, t);
        this.tickets = fresh;
        const total = Number(data.total) || 0;
        this.el.status.textContent = total > fresh.size
          ? `Showing the first ${fresh.size} of ${total} active tickets.` : '';
        // Tests (and curious agents) can see that a reconnect re-read the list.
        this.el.list.dataset.loads = String(Number(this.el.list.dataset.loads || 0) + 1);
      } catch (err) {
        this.el.status.textContent = `The queue could not be loaded: ${err.message}`;
      } finally {
        this.duringLoad = null;
        this.loading = null;
      }
      this.render();
      if (this.again) { this.again = false; await this.refresh(); }
    })();
    return this.loading;
  }

  merge(map, ticket) {
    const known = map.get(ticket.id);
    if (known && !newer(ticket, known)) return;
    if (ticket.status === 'resolved') map.delete(ticket.id);
    else map.set(ticket.id, ticket);
  }

  /** A `ticket` event from the console socket. */
  apply(ev) {
    const t = ev.ticket;
    if (!t || !t.id) return;
    const before = this.tickets.get(t.id);
    if (this.duringLoad) this.duringLoad.push(t);
    this.merge(this.tickets, t);
    this.render();
    this.describe(ev.change, t, before);
    this.onChange(t);
  }

  describe(change, t, before) {
    if (change === 'opened' && !before) announce(`New ticket: ${ticketTitle(t)}`);
    else if (change === 'claimed' && t.agent !== this.me) announce(`${t.agent || 'An agent'} claimed: ${ticketTitle(t)}`);
    else if (change === 'released') announce(`Back in the queue: ${ticketTitle(t)}`);
  }

  get(id) {
    return this.tickets.get(id) || null;
  }

  select(id) {
    this.selected = id;
    for (const [key, li] of this.items) {
      const button = li.querySelector('.ticket__open');
      if (key === id) button.setAttribute('aria-current', 'true');
      else button.removeAttribute('aria-current');
      li.classList.toggle('is-selected', key === id);
    }
  }

  render() {
    const sorted = [...this.tickets.values()].sort(compare);
    const focusedId = document.activeElement && document.activeElement.closest
      ? document.activeElement.closest('.ticket')?.dataset.ticketId : null;
    const keep = new Set(sorted.map((t) => t.id));
    for (const [id, li] of this.items) {
      if (!keep.has(id)) { li.remove(); this.items.delete(id); }
    }
    sorted.forEach((t, i) => {
      const li = this.itemFor(t);
      if (this.el.list.children[i] !== li) this.el.list.insertBefore(li, this.el.list.children[i] || null);
    });
    if (focusedId && this.items.has(focusedId) && !this.el.list.contains(document.activeElement)) {
      this.items.get(focusedId).querySelector('.ticket__open').focus();
    }
    const waiting = sorted.filter((t) => t.status === 'open').length;
    this.el.count.textContent = String(waiting);
    this.el.empty.hidden = sorted.length > 0;
    document.title = waiting ? `(${waiting}) ${BASE_TITLE}` : BASE_TITLE;
    this.select(this.selected);
  }

  itemFor(t) {
    let li = this.items.get(t.id);
    if (!li) {
      li = this.newItem(t.id);
      this.items.set(t.id, li);
    }
    li.dataset.status = t.status;
    li.dataset.priority = t.priority || 'normal';
    const part = (name) => li.querySelector(`.ticket__${name}`);
    const reasons = (t.reasons || []).map(reasonWords).join(' · ');
    part('priority').textContent = priorityWords(t.priority);
    part('agent').textContent = ownerWords(t, this.me);
    part('summary').textContent = ticketTitle(t);
    part('reasons').textContent = reasons;
    part('reasons').hidden = !reasons;
    part('meta').textContent = [t.category, ago(t.created_at)].filter(Boolean).join(' · ');
    // One spoken sentence instead of the spans run together.
    const label = [ticketTitle(t), ownerWords(t, this.me), `${priorityWords(t.priority)} priority`, reasons]
      .filter(Boolean).join('. ');
    li.querySelector('.ticket__open').setAttribute('aria-label', label);
    return li;
  }

  /** Built once per ticket and updated in place, so a click or focus survives updates. */
  newItem(id) {
    const span = (name) => h('span', { class: `ticket__${name}` });
    const button = h('button', { type: 'button', class: 'ticket__open', onclick: () => this.onOpen(id) },
      h('span', { class: 'ticket__top' }, span('priority'), span('agent')),
      span('summary'), span('reasons'), span('meta'));
    return h('li', { class: 'ticket', dataset: { ticketId: id } }, button);
  }
}
