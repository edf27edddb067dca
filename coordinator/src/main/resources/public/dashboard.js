// Kage Bunshin dashboard: plain JavaScript, no build step. Everything it shows comes from the API with the key the
// user gives (kept in this tab's sessionStorage only), so it shows that key's tenant and nothing else. Data is put
// into the page with textContent, never as HTML.
'use strict';

const KEY_ITEM = 'kage.apiKey';
const POLL_MS = 3000;
const state = { key: null, tasks: new Map(), selected: null, stream: null, poll: null, agents: [], lastEventId: null };

const $ = (selector) => document.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === 'class') node.className = value;
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(child ?? ''));
  return node;
}

/**
 * A task id for a table cell: its last 8 characters. Ids are UUID version 7, whose first characters are the time they
 * were made (every task of the same minute starts alike); the last ones are random. The whole id is the cell's title.
 */
function shortId(id) {
  return '…' + id.slice(-8);
}

function say(text) {
  $('#message').textContent = text || '';
}

/** Calls the API; throws an Error carrying the API's own message when it answers with an error. */
async function api(path, options = {}) {
  const headers = Object.assign({ 'X-API-Key': state.key, Accept: 'application/json' }, options.headers || {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
  if (!response.ok) {
    const fields = body && Array.isArray(body.errors) && body.errors.length
      ? ' (' + body.errors.map((e) => e.field + ': ' + e.message).join('; ') + ')' : '';
    const error = new Error(response.status + ': ' + ((body && body.message) || response.statusText) + fields);
    error.status = response.status;
    throw error;
  }
  return body;
}

function ago(iso) {
  if (!iso) return '';
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 60) return seconds + ' s ago';
  if (seconds < 3600) return Math.round(seconds / 60) + ' min ago';
  return new Date(iso).toLocaleString();
}

function duration(ms) {
  if (!ms) return '—';
  return ms < 1000 ? ms + ' ms' : (ms / 1000).toFixed(1) + ' s';
}

function usd(value) {
  const n = Number(value || 0);
  return '$' + (n === 0 ? '0' : n.toFixed(4).replace(/0+$/, '').replace(/\.$/, ''));
}

function agentNames(agents) {
  return (agents || []).map((a) => (typeof a === 'string' ? a : a.cli_name)).join(', ');
}

// ---- connection -------------------------------------------------------------------------------------------------

async function connect(key) {
  state.key = key;
  try {
    const page = await api('/api/v1/tasks?limit=50');
    sessionStorage.setItem(KEY_ITEM, key);
    say('');
    $('#board').hidden = false;
    $('#connect').hidden = true;
    $('#disconnect').hidden = false;
    $('#key').value = '';
    $('#key').placeholder = key.slice(0, 6) + '…';
    state.tasks.clear();
    $('#tasks tbody').replaceChildren();
    for (const task of page.tasks.slice().reverse()) upsertTask(task);
    await refreshFleet();
    renderAgentChoices();
    follow();
    state.poll = setInterval(refreshFleet, POLL_MS);
  } catch (error) {
    state.key = null;
    sessionStorage.removeItem(KEY_ITEM);
    say(error.status === 401 ? 'That key is not accepted (401).' : 'Cannot connect: ' + error.message);
  }
}

function disconnect() {
  sessionStorage.removeItem(KEY_ITEM);
  if (state.stream) state.stream.abort();
  clearInterval(state.poll);
  Object.assign(state, { key: null, stream: null, poll: null, selected: null, lastEventId: null });
  $('#board').hidden = true;
  $('#connect').hidden = false;
  $('#disconnect').hidden = true;
  $('#key').placeholder = 'X-API-Key';
  setLive(false);
}

function setLive(on) {
  const live = $('#live');
  live.className = 'live ' + (on ? 'on' : 'off');
  live.textContent = on ? 'live' : 'offline';
}

// ---- live events: the tenant's stream, read with fetch (EventSource cannot send the key header) ------------------

async function follow() {
  const controller = new AbortController();
  state.stream = controller;
  const headers = { 'X-API-Key': state.key, Accept: 'text/event-stream' };
  if (state.lastEventId) headers['Last-Event-ID'] = state.lastEventId;
  try {
    const response = await fetch('/api/v1/events', { headers, signal: controller.signal });
    if (!response.ok) throw new Error('events answered ' + response.status);
    setLive(true);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    let event = { id: null, name: 'message', data: [] };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline).replace(/\r$/, '');
        buffer = buffer.slice(newline + 1);
        if (line === '') {
          if (event.data.length) dispatch(event);
          event = { id: null, name: 'message', data: [] };
        } else if (!line.startsWith(':')) {
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'id') event.id = text;
          else if (field === 'event') event.name = text;
          else if (field === 'data') event.data.push(text);
        }
      }
    }
  } catch (error) {
    if (controller.signal.aborted) return;
  }
  setLive(false);
  if (state.stream === controller && state.key) setTimeout(() => state.key && follow(), 1000);
}

const pendingRefresh = new Map();

function dispatch(event) {
  if (event.id) state.lastEventId = event.id;
  let data;
  try { data = JSON.parse(event.data.join('\n')); } catch (e) { return; }
  // The stream's first event: events before it may be missing (the first connection, or a resume past what the capped
  // stream still holds), so the tasks are read again.
  if (event.name === 'stream.connected') {
    if (data.complete === 'false') readTasksAgain();
    return;
  }
  const id = data.task_id;
  if (!id || pendingRefresh.has(id)) return;
  // Several events of one task arrive together: one read of the task answers them all.
  pendingRefresh.set(id, setTimeout(async () => {
    pendingRefresh.delete(id);
    try { upsertTask(await api('/api/v1/tasks/' + encodeURIComponent(id))); } catch (e) { /* gone or not ours */ }
  }, 150));
}

// The newest tasks listed again, and each task shown open that the listing does not have read on its own.
async function readTasksAgain() {
  try {
    const page = await api('/api/v1/tasks?limit=50');
    const listed = new Set();
    for (const task of page.tasks.slice().reverse()) {
      listed.add(task.task_id);
      upsertTask(task);
    }
    for (const [id, task] of state.tasks) {
      if (!listed.has(id) && (task.status === 'queued' || task.status === 'running')) {
        try { upsertTask(await api('/api/v1/tasks/' + encodeURIComponent(id))); } catch (e) { /* gone or not ours */ }
      }
    }
  } catch (e) { /* the next connection reads them again */ }
}

// ---- tasks ------------------------------------------------------------------------------------------------------

function upsertTask(task) {
  const id = task.task_id;
  const held = state.tasks.get(id);
  // Reads of one task can be answered out of order (a slow one after a later one): an older view never replaces a newer.
  if (held && held.updated_at && task.updated_at && Date.parse(task.updated_at) < Date.parse(held.updated_at)) return;
  state.tasks.set(id, Object.assign(held || {}, task));
  const view = state.tasks.get(id);
  let row = $('#tasks tbody').querySelector('tr[data-task-id="' + CSS.escape(id) + '"]');
  const cells = [
    el('td', {}, el('code', { title: id }, shortId(id))),
    el('td', { class: 'status ' + view.status }, view.status),
    el('td', {}, (view.description || '').slice(0, 120)),
    el('td', {}, agentNames(view.agents)),
    el('td', { class: 'muted' }, ago(view.created_at)),
  ];
  if (!row) {
    row = el('tr', { dataset: { taskId: id } });
    row.addEventListener('click', () => select(id));
    $('#tasks tbody').prepend(row);
  }
  row.replaceChildren(...cells);
  row.classList.toggle('selected', state.selected === id);
  if (state.selected === id) renderDetail(view);
}

async function select(id) {
  state.selected = id;
  for (const row of document.querySelectorAll('#tasks tbody tr')) row.classList.toggle('selected', row.dataset.taskId === id);
  try {
    upsertTask(await api('/api/v1/tasks/' + encodeURIComponent(id)));
  } catch (error) {
    say(error.message);
  }
}

function renderDetail(task) {
  $('#task-detail').hidden = false;
  $('#detail-id').textContent = task.task_id;
  const status = $('#detail-status');
  status.textContent = task.status;
  status.className = 'status ' + task.status;
  const budget = task.budget;
  $('#detail-budget').textContent = budget
    ? 'Budget: ' + budget.tokens_used + ' of ' + budget.token_limit + ' tokens used, ' + budget.tokens_reserved
      + ' reserved, ' + usd(budget.usd_used) + ' spent (' + budget.mode + ' mode)'
    : '';
  const rows = (task.agents || []).filter((a) => typeof a === 'object').map((a) => el('tr', { class: 'agent-row', dataset: { agent: a.cli_name } },
    el('td', {}, a.cli_name),
    el('td', { class: 'status ' + a.status }, a.status + (a.waiting ? ' (' + a.waiting + ')' : '')),
    el('td', { class: 'tokens' }, a.tokens_in + ' / ' + a.tokens_out),
    el('td', { class: 'cost' }, usd(a.cost_usd)),
    el('td', {}, a.branch ? el('code', {}, a.branch) : '—'),
    el('td', { class: 'diff' }, a.diff_stat || '—'),
    el('td', {}, a.error ? a.error.error_type + ': ' + a.error.error_message : '')));
  $('#detail-agents tbody').replaceChildren(...rows);
}

async function submitTask(event) {
  event.preventDefault();
  const agents = [...document.querySelectorAll('input[name=agent]:checked')].map((box) => ({ cli_name: box.value }));
  if (!agents.length) {
    say('Choose at least one agent.');
    return;
  }
  try {
    const created = await api('/api/v1/tasks', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ description: $('#description').value, cli_assignments: agents, priority: $('#priority').value }),
    });
    say('');
    $('#description').value = '';
    upsertTask({ task_id: created.task_id, status: created.status, description: '', agents: agents.map((a) => a.cli_name),
      created_at: new Date().toISOString() });
    await select(created.task_id);
  } catch (error) {
    say('Not submitted: ' + error.message);
  }
}

function renderAgentChoices() {
  const box = $('#agent-choices');
  const chosen = new Set([...box.querySelectorAll('input:checked')].map((input) => input.value));
  box.replaceChildren(...state.agents.map((agent) => {
    const input = el('input', { type: 'checkbox', name: 'agent', value: agent });
    input.checked = chosen.has(agent);
    return el('label', {}, input, ' ' + agent);
  }));
}

// ---- fleet panels -----------------------------------------------------------------------------------------------

async function refreshFleet() {
  const results = await Promise.allSettled([
    api('/api/v1/queues').then(renderQueues),
    api('/api/v1/workers').then(renderWorkers),
    api('/api/v1/budgets').then(renderBudgets),
    api('/api/v1/limits').then(renderLimits),
    api('/api/v1/reports/recent-errors?limit=10').then(renderErrors),
  ]);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed && failed.reason && failed.reason.status === 401) disconnect();
}

function renderQueues(data) {
  const agents = data.agents.map((a) => a.agent);
  if (agents.join() !== state.agents.join()) {
    state.agents = agents;
    renderAgentChoices();
  }
  const rows = [];
  for (const agent of data.agents) {
    for (const p of agent.priorities) {
      rows.push(el('tr', { dataset: { agent: agent.agent, priority: p.priority } },
        el('td', {}, agent.agent), el('td', {}, p.priority), el('td', {}, String(p.waiting)), el('td', {}, String(p.pending)),
        el('td', {}, String(p.consumers)), el('td', {}, p.waiting || p.pending ? duration(p.oldest_age_ms) : '—'),
        el('td', {}, p.priority === 'high' ? String(agent.delayed) : '')));
    }
  }
  $('#queues tbody').replaceChildren(...rows);
  $('#dead').textContent = 'Dead letters: ' + data.dead;
}

function renderWorkers(data) {
  $('#workers tbody').replaceChildren(...data.workers.map((w) => el('tr', { dataset: { worker: w.id } },
    el('td', {}, w.id), el('td', {}, (w.agents || []).join(', ')), el('td', {}, w.busy + ' / ' + w.slots),
    el('td', {}, String((w.in_flight || []).length)), el('td', { class: 'muted' }, ago(w.heartbeat_at)))));
}

function gauge(label, used, limit) {
  const share = limit > 0 ? Math.min(1, used / limit) : 0;
  const fill = el('div', { class: 'fill' + (share >= 1 ? ' over' : share >= 0.8 ? ' high' : '') });
  fill.style.width = (share * 100).toFixed(1) + '%';
  return el('div', { class: 'gauge' }, el('div', {}, label), el('div', { class: 'bar' }, fill));
}

function renderBudgets(data) {
  const pools = [...(data.tenant || []), ...(data.agents || [])];
  const gauges = pools.map((p) => {
    const limited = p.token_limit > 0;
    const label = p.kind + ' ' + p.owner + ' (' + p.period + '): ' + p.tokens_used + (limited ? ' of ' + p.token_limit : '')
      + ' tokens, ' + p.tokens_reserved + ' held' + (Number(p.usd_limit) > 0 ? ', ' + usd(p.usd_used) + ' of ' + usd(p.usd_limit) : '');
    return gauge(label, p.tokens_used + p.tokens_reserved, limited ? p.token_limit : 0);
  });
  $('#budgets').replaceChildren(el('p', { class: 'muted' }, 'Tenant ' + data.tenant_name + ', ' + data.mode + ' mode'),
    ...(gauges.length ? gauges : [el('p', {}, 'No pools yet.')]));
}

function renderLimits(data) {
  $('#limits tbody').replaceChildren(...data.limits.map((l) => {
    const current = l.current || l.configured || {};
    const waiting = l.waiting || {};
    return el('tr', { dataset: { group: l.group } },
      el('td', {}, l.group), el('td', {}, (l.agents || []).join(', ')), el('td', {}, l.used + ' / ' + l.effective),
      el('td', {}, (current.window_seconds || '?') + ' s'), el('td', { class: l.cooldown_ms > 0 ? 'status failed' : '' },
        l.cooldown_ms > 0 ? duration(l.cooldown_ms) : '—'),
      el('td', {}, ['high', 'normal', 'low'].map((p) => p + ' ' + (waiting[p] || 0)).join(', ')));
  }));
}

function renderErrors(data) {
  $('#errors tbody').replaceChildren(...data.errors.map((e) => el('tr', {},
    el('td', { class: 'muted' }, ago(e.occurred_at)), el('td', {}, el('code', { title: e.task_id }, shortId(e.task_id))),
    el('td', {}, e.cli_name || ''), el('td', {}, e.error_type), el('td', {}, e.error_message))));
}

// ---- start ------------------------------------------------------------------------------------------------------

$('#login').addEventListener('submit', (event) => {
  event.preventDefault();
  const key = $('#key').value.trim();
  if (key) connect(key);
});
$('#disconnect').addEventListener('click', disconnect);
$('#submit-form').addEventListener('submit', submitTask);
const remembered = sessionStorage.getItem(KEY_ITEM);
if (remembered) connect(remembered);
