// The report page: a period of days in a time zone, headline numbers, plots drawn by
// charts.js from /api/reports/summary, and the knowledge base's to-do list from
// /api/reports/unanswered (questions the bot could not answer or whose answer was disliked).

import { barChart, hbarChart } from './charts.js';
import { fullTime, h, reasonWords, sentence } from './util.js';

const percent = (v) => (v === null || v === undefined ? '–' : `${Math.round(v * 100)} %`);
const DAY_MS = 86_400_000;

function localZone() {
  try { return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC'; } catch { return 'UTC'; }
}

function isoDay(date) {
  const p = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())}`;
}

export class ReportsView {
  constructor(api, els) {
    this.api = api;
    this.els = els; // {form, from, to, tz, kpis, charts, todo, todoCount, status}
    const today = new Date();
    if (!els.to.value) els.to.value = isoDay(today);
    if (!els.from.value) els.from.value = isoDay(new Date(today.getTime() - 13 * DAY_MS));
    if (!els.tz.value) els.tz.value = localZone();
    this.onSubmit = (e) => { e.preventDefault(); this.refresh(); };
    els.form.addEventListener('submit', this.onSubmit);
  }

  destroy() {
    this.els.form.removeEventListener('submit', this.onSubmit);
  }

  params() {
    return { from: this.els.from.value, to: this.els.to.value, tz: this.els.tz.value.trim() };
  }

  async refresh() {
    this.els.status.textContent = 'Loading…';
    let summary; let todo;
    try {
      [summary, todo] = await Promise.all([
        this.api.report('summary', this.params()),
        this.api.report('unanswered', { ...this.params(), limit: '100' }),
      ]);
    } catch (err) {
      this.els.status.textContent = `The report could not be loaded: ${sentence(err.message)}`;
      return;
    }
    this.els.status.textContent = `${summary.period.from} to ${summary.period.to}, days in ${summary.period.tz}.`;
    this.renderKpis(summary.totals, summary.ratings);
    this.renderCharts(summary);
    this.renderTodo(todo);
    this.els.charts.dataset.loads = String((Number(this.els.charts.dataset.loads) || 0) + 1);
  }

  renderKpis(t, ratings) {
    const avg = (who) => {
      const r = ratings.find((x) => x.handled_by === who);
      return r && r.average !== null ? `${r.average.toFixed(1)} / 5 (${r.count})` : '–';
    };
    const kpi = (label, value, note, key) => h('div', { class: 'kpi', dataset: { kpi: key } },
      h('dt', { class: 'kpi__label', text: label }),
      h('dd', { class: 'kpi__value', text: value }),
      note ? h('dd', { class: 'kpi__note', text: note }) : null);
    this.els.kpis.replaceChildren(
      kpi('Conversations', String(t.conversations), `tickets opened: ${t.tickets}`, 'conversations'),
      kpi('Answered by the bot alone', percent(t.deflection_rate), `${t.bot_only} conversations`, 'deflection'),
      kpi('Abstentions', percent(t.abstention_rate), `${t.abstentions} of ${t.answers} answers`, 'abstentions'),
      kpi('Thumbs up', percent(t.thumbs_up_rate), `${t.thumbs_up} up · ${t.thumbs_down} down`, 'feedback'),
      kpi('Rating: bot', avg('bot'), null, 'rating-bot'),
      kpi('Rating: person', avg('person'), null, 'rating-person'),
    );
  }

  renderCharts(r) {
    const days = r.days.map((d) => d.date.slice(5)); // MM-DD under the bars
    const col = (key) => r.days.map((d) => d[key]);
    const other = r.days.map((d) => Math.max(0, d.conversations - d.bot_only - d.escalated));
    const scores = ['1', '2', '3', '4', '5'];
    const ratingOf = (who) => (r.ratings.find((x) => x.handled_by === who) || { scores: {} }).scores;
    this.els.charts.replaceChildren(
      barChart({
        title: 'Conversations per day',
        categories: days,
        stacked: true,
        series: [
          { name: 'Bot alone', cls: 'chart__s1', values: col('bot_only') },
          { name: 'Person asked for', cls: 'chart__s2', values: col('escalated') },
          { name: 'No answer yet', cls: 'chart__s3', values: other },
        ],
      }),
      barChart({
        title: 'Share answered by the bot alone (deflection)',
        categories: days,
        series: [{
          name: 'Deflection', cls: 'chart__s1',
          values: r.days.map((d) => (d.conversations ? d.bot_only / d.conversations : 0)),
        }],
        format: percent,
      }),
      barChart({
        title: 'Bot answers and abstentions per day',
        categories: days,
        series: [
          { name: 'Answers', cls: 'chart__s4', values: col('answers') },
          { name: 'Abstentions', cls: 'chart__s2', values: col('abstentions') },
        ],
      }),
      hbarChart({
        title: 'Escalations by reason',
        rows: r.escalation_reasons.map((x) => ({ label: reasonWords(x.reason), value: x.count })),
        cls: 'chart__s2',
        empty: 'No tickets in this period.',
      }),
      barChart({
        title: 'Answer feedback per day',
        categories: days,
        stacked: true,
        series: [
          { name: 'Thumbs up', cls: 'chart__s1', values: col('thumbs_up') },
          { name: 'Thumbs down', cls: 'chart__s5', values: col('thumbs_down') },
        ],
      }),
      barChart({
        title: 'Conversation ratings: bot vs person',
        categories: scores.map((x) => `${x} ★`),
        labelEvery: 1,
        series: [
          { name: 'Bot', cls: 'chart__s1', values: scores.map((x) => ratingOf('bot')[x] || 0) },
          { name: 'Person', cls: 'chart__s4', values: scores.map((x) => ratingOf('person')[x] || 0) },
        ],
      }),
    );
  }

  renderTodo(todo) {
    this.els.todoCount.textContent = String(todo.total);
    const rows = todo.items.map((item) => h('tr', { class: 'todo__row', dataset: { messageId: item.message_id } },
      h('td', { class: 'todo__question' }, h('span', { text: item.question }),
        h('details', { class: 'todo__answer' }, h('summary', { text: 'The bot said' }), h('p', { text: item.answer }))),
      h('td', { class: 'num', text: item.count }),
      h('td', { text: [
        item.abstained ? `could not answer ×${item.abstained}` : '',
        item.thumbs_down ? `thumbs down ×${item.thumbs_down}` : '',
      ].filter(Boolean).join(', ') }),
      h('td', { text: item.reasons.join(' · ') }),
      h('td', { text: fullTime(item.last_at) })));
    if (!rows.length) {
      rows.push(h('tr', {}, h('td', { colspan: '5', class: 'todo__empty', text: 'Nothing to do: every question in this period was answered and none was disliked.' })));
    }
    this.els.todo.replaceChildren(...rows);
  }
}
