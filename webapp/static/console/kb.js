// The knowledge-base view: list and search documents with their indexing status, upload a
// file, re-index or delete one. While any document is queued or being indexed the list is
// read again every two seconds, so a status changes on screen without a reload.

import { fullTime, h, sentence } from './util.js';

const STATUS_WORDS = {
  queued: 'Queued', processing: 'Indexing…', done: 'Indexed', failed: 'Failed',
};
const POLL_MS = 2000;

export class KbView {
  constructor(api, els) {
    this.api = api;
    this.els = els; // {list, count, status, search, filter, form, file, title, submit}
    this.timer = null;
    this.searchTimer = null;
    this.alive = true;
    this.onSearch = () => {
      clearTimeout(this.searchTimer);
      this.searchTimer = setTimeout(() => this.refresh(), 250);
    };
    this.onUpload = (e) => { e.preventDefault(); this.upload(); };
    els.search.addEventListener('input', this.onSearch);
    els.filter.addEventListener('change', this.onSearch);
    els.form.addEventListener('submit', this.onUpload);
  }

  destroy() {
    this.alive = false;
    clearTimeout(this.timer);
    clearTimeout(this.searchTimer);
    this.els.search.removeEventListener('input', this.onSearch);
    this.els.filter.removeEventListener('change', this.onSearch);
    this.els.form.removeEventListener('submit', this.onUpload);
  }

  async refresh() {
    clearTimeout(this.timer);
    let docs;
    try {
      docs = await this.api.documents({ q: this.els.search.value.trim(), status: this.els.filter.value });
    } catch (err) {
      this.say(`The documents could not be loaded: ${sentence(err.message)}`);
      return;
    }
    if (!this.alive) return;
    this.render(docs);
    if (docs.some((d) => d.status === 'queued' || d.status === 'processing')) {
      this.timer = setTimeout(() => this.refresh(), POLL_MS);
    }
  }

  say(text) {
    this.els.status.textContent = text;
  }

  render(docs) {
    const sorted = [...docs].sort((a, b) => String(a.title).localeCompare(String(b.title)));
    this.els.count.textContent = String(sorted.length);
    this.els.list.replaceChildren(...sorted.map((d) => this.row(d)));
    this.els.list.dataset.loads = String((Number(this.els.list.dataset.loads) || 0) + 1);
    this.els.empty.hidden = sorted.length > 0;
  }

  row(doc) {
    const url = doc.metadata && typeof doc.metadata.url === 'string' && /^https?:\/\//i.test(doc.metadata.url)
      ? doc.metadata.url : null;
    const title = url
      ? h('a', { href: url, target: '_blank', rel: 'noopener noreferrer', text: doc.title || doc.source || '(untitled)' })
      : h('span', { text: doc.title || doc.source || '(untitled)' });
    const actions = h('td', { class: 'kb__actions' });
    const reindex = h('button', {
      type: 'button', class: 'btn btn--ghost btn--small kb__reindex', text: 'Re-index',
      disabled: doc.status === 'queued' || doc.status === 'processing',
      onclick: () => this.reindex(doc),
    });
    const remove = h('button', {
      type: 'button', class: 'btn btn--danger btn--small kb__delete', text: 'Delete',
      onclick: () => this.confirmDelete(doc, actions, reindex, remove),
    });
    actions.append(reindex, remove);
    return h('tr', { class: 'kb__row', dataset: { documentId: doc.id, status: doc.status } },
      h('td', { class: 'kb__title' }, title,
        doc.external_id ? h('span', { class: 'kb__ext', text: doc.external_id }) : null),
      h('td', {},
        h('span', { class: `badge badge--${doc.status}`, text: STATUS_WORDS[doc.status] || doc.status }),
        doc.error ? h('span', { class: 'kb__error', text: doc.error }) : null),
      h('td', { class: 'num', text: doc.chunk_count }),
      h('td', { text: fullTime(doc.updated_at) }),
      actions);
  }

  /** Deleting asks once more in place (no browser dialog), naming the document. */
  confirmDelete(doc, cell, reindex, remove) {
    const yes = h('button', {
      type: 'button', class: 'btn btn--danger btn--small kb__confirm', text: `Delete “${doc.title || doc.id}”`,
      onclick: () => this.remove(doc),
    });
    const no = h('button', {
      type: 'button', class: 'btn btn--ghost btn--small', text: 'Keep',
      onclick: () => cell.replaceChildren(reindex, remove),
    });
    cell.replaceChildren(yes, no);
    yes.focus();
  }

  async remove(doc) {
    try {
      await this.api.deleteDocument(doc.id);
      this.say(`Deleted “${doc.title || doc.id}”.`);
    } catch (err) {
      this.say(`It could not be deleted: ${sentence(err.message)}`);
    }
    this.refresh();
  }

  async reindex(doc) {
    try {
      await this.api.reindexDocument(doc.id);
      this.say(`“${doc.title || doc.id}” is being indexed again.`);
    } catch (err) {
      this.say(`It could not be re-indexed: ${sentence(err.message)}`);
    }
    this.refresh();
  }

  async upload() {
    const file = this.els.file.files && this.els.file.files[0];
    if (!file) { this.say('Choose a file first (PDF, Word, HTML, Markdown or text).'); return; }
    this.els.submit.disabled = true;
    try {
      const doc = await this.api.uploadDocument(file, this.els.title.value.trim());
      this.say(`Uploaded “${doc.title || file.name}”: it is being indexed.`);
      this.els.form.reset();
    } catch (err) {
      this.say(`The file was not added: ${sentence(err.message)}`);
    } finally {
      this.els.submit.disabled = false;
    }
    this.refresh();
  }
}
