// Sluice web console: plain JavaScript, no build step. Data comes from the
// admin listener's /api endpoints; live updates by server-sent events.
'use strict';

const S = {
  snap: null, prev: null, page: '', feed: [], feedDropped: 0, feedPaused: false,
  chHistory: [], live: null, sel: {}, dlq: null,
};
const MAX_FEED = 500;

// ---------------------------------------------------------------- helpers

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === undefined || kid === null || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}
const $ = (sel, root) => (root || document).querySelector(sel);
const fmtN = (n) => (n === undefined || n === null) ? '—' : Number(n).toLocaleString('en-US');
function fmtBytes(n) {
  if (!n) return '0 B';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + u[i];
}
function fmtMs(sec) {
  if (!sec) return '—';
  const ms = sec * 1000;
  return ms < 1 ? ms.toFixed(3) + ' ms' : ms < 100 ? ms.toFixed(1) + ' ms' : Math.round(ms) + ' ms';
}
function fmtAgo(ms) {
  if (!ms) return '—';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.floor(s / 60) + ' min ago';
  return Math.floor(s / 3600) + ' h ago';
}
// fmtClock is a local 24-hour time with milliseconds: 14:02:11.204.
function fmtClock(t) {
  const d = new Date(t), p = (n, w) => String(n).padStart(w || 2, '0');
  return p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds()) + '.' + p(d.getMilliseconds(), 3);
}
function fmtUptime(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), hh = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return (d ? d + 'd ' : '') + (d || hh ? hh + 'h ' : '') + m + 'm ' + (s % 60) + 's';
}
const pretty = (v) => JSON.stringify(v, null, 2);
function table(id, cols, rows, empty) {
  if (!rows.length) return h('div', { class: 'empty', id: id + '-empty' }, empty || 'Nothing yet.');
  return h('table', { id },
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { class: c.num ? 'num' : '' }, c.title)))),
    h('tbody', {}, rows));
}

async function api(path, body) {
  const opts = body === undefined ? {} : { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) };
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (_) { /* not JSON */ }
  if (r.status === 401) { showLogin(); throw new Error('login required'); }
  if (!r.ok) throw new Error((data && data.error && data.error.message) || ('HTTP ' + r.status));
  return data;
}
// call invokes a function through the console (as the engine): the result,
// or an Error carrying the function's error code.
async function call(fn, payload) {
  const out = await api('/api/call', { function_id: fn, payload: payload === undefined ? {} : payload });
  if (out.error) { const e = new Error(out.error.code + ': ' + out.error.message); e.code = out.error.code; throw e; }
  return out.result;
}

// ---------------------------------------------------------------- live data

function setStatus(text, cls) {
  const el = $('#status');
  el.textContent = text;
  el.className = 'status ' + (cls || '');
}

function disconnect() {
  if (S.live) { S.live.close(); S.live = null; }
}

// connect opens the one event stream: snapshots and the invocation feed.
function connect() {
  disconnect();
  S.live = new EventSource('/api/live');
  S.live.addEventListener('snapshot', (ev) => {
    S.prev = S.snap;
    S.snap = JSON.parse(ev.data);
    trackChannels();
    setStatus('live · ' + fmtClock(S.snap.engine.time_ms).slice(0, 8), 'live');
    renderSummary();
    if (PAGES[S.page] && PAGES[S.page].live) render();
  });
  S.live.addEventListener('invocation', (ev) => {
    if (S.feedPaused) return;
    S.feed.unshift(JSON.parse(ev.data));
    if (S.feed.length > MAX_FEED) S.feed.length = MAX_FEED;
    if (S.page === 'invocations') renderFeedRows();
  });
  S.live.addEventListener('dropped', (ev) => {
    S.feedDropped = JSON.parse(ev.data).dropped;
    const d = $('#feed-dropped');
    if (d) d.textContent = S.feedDropped ? S.feedDropped + ' events dropped (this page fell behind)' : '';
  });
  S.live.onerror = () => setStatus('reconnecting…', 'down');
}
// A page kept in the back/forward cache must not hold its connection.
window.addEventListener('pagehide', disconnect);
window.addEventListener('pageshow', (ev) => { if (ev.persisted) start(); });

function trackChannels() {
  const c = S.snap.channels, t = S.snap.engine.time_ms;
  const last = S.chHistory[S.chHistory.length - 1];
  let fps = 0, bps = 0;
  if (last && t > last.t) {
    fps = Math.max(0, (c.frames_total - last.frames) * 1000 / (t - last.t));
    bps = Math.max(0, (c.bytes_total - last.bytes) * 1000 / (t - last.t));
  }
  S.chHistory.push({ t, frames: c.frames_total, bytes: c.bytes_total, fps, bps, active: c.active });
  if (S.chHistory.length > 120) S.chHistory.shift();
}

function renderSummary() {
  const s = S.snap;
  const workers = (s.workers && s.workers.workers) || [];
  const fns = (s.functions && s.functions.functions) || [];
  const last = S.chHistory[S.chHistory.length - 1] || {};
  const cards = [
    ['workers', workers.filter((w) => w.name !== 'sluice-engine').length, 'workers'],
    ['functions', fns.length, 'functions'],
    ['inflight', s.engine.invocations_in_flight, 'in flight'],
    ['channels', s.channels.active, 'channels'],
    ['throughput', fmtBytes(last.bps || 0) + '/s', 'channel throughput'],
    ['queues', s.queues.length, 'queues'],
    ['uptime', fmtUptime(s.engine.uptime_seconds), 'uptime · v' + s.engine.version],
  ];
  $('#summary').replaceChildren(...cards.map(([id, v, k]) => h('div', { class: 'card', id: 'card-' + id }, h('div', { class: 'v' }, typeof v === 'number' ? fmtN(v) : v), h('div', { class: 'k' }, k))));
}

// ---------------------------------------------------------------- pages

function triggersByFunction() {
  const m = new Map();
  for (const t of (S.snap.triggers && S.snap.triggers.registered_triggers) || []) {
    if (!m.has(t.function_id)) m.set(t.function_id, []);
    m.get(t.function_id).push(t);
  }
  return m;
}

const PAGES = {
  workers: { title: 'Workers', live: true, render(root) {
    const ws = (S.snap.workers && S.snap.workers.workers) || [];
    root.append(table('workers-table', [
      { title: 'Name' }, { title: 'Runtime' }, { title: 'Version' }, { title: 'Functions', num: true },
      { title: 'Active invocations', num: true }, { title: 'Connected' }, { title: 'Address' }, { title: 'Id' }],
    ws.map((w) => h('tr', { 'data-worker-name': w.name || '' },
      h('td', {}, h('strong', {}, w.name || '(unnamed)')), h('td', {}, w.runtime || '—'), h('td', {}, w.version || '—'),
      h('td', { class: 'num' }, fmtN(w.function_count)), h('td', { class: 'num' }, fmtN(w.active_invocations)),
      h('td', {}, w.connected_at_ms ? fmtAgo(w.connected_at_ms) : '—'), h('td', { class: 'mono' }, w.ip_address || '—'),
      h('td', { class: 'mono muted' }, w.id))), 'No workers connected.'));
  } },

  functions: { title: 'Functions', live: true, render(root) {
    const q = (S.sel.fnFilter || '').toLowerCase();
    const internal = !!S.sel.fnInternal;
    const filter = h('input', { type: 'search', id: 'fn-filter', placeholder: 'filter by id or worker', value: S.sel.fnFilter || '',
      oninput: (e) => { S.sel.fnFilter = e.target.value; renderBody(); } });
    const cb = h('input', { type: 'checkbox', id: 'fn-internal', onchange: (e) => { S.sel.fnInternal = e.target.checked; renderBody(); } });
    cb.checked = internal;
    root.append(h('div', { class: 'toolbar' }, filter, h('label', {}, cb, ' engine functions')));
    const body = h('div', { id: 'fn-body' });
    root.append(body);
    function renderBody() {
      const q = (S.sel.fnFilter || '').toLowerCase();
      const stats = S.snap.function_stats || {};
      const trig = triggersByFunction();
      const fns = ((S.snap.functions && S.snap.functions.functions) || [])
        .filter((f) => S.sel.fnInternal || !(f.function_id.startsWith('engine::') || f.worker_name === 'sluice-engine'))
        .filter((f) => !q || f.function_id.toLowerCase().includes(q) || (f.worker_name || '').toLowerCase().includes(q))
        .sort((a, b) => a.function_id.localeCompare(b.function_id));
      body.replaceChildren(table('functions-table', [
        { title: 'Function' }, { title: 'Worker' }, { title: 'Triggers' }, { title: 'Calls', num: true }, { title: 'Errors', num: true },
        { title: 'Error rate', num: true }, { title: 'Mean', num: true }, { title: 'p50', num: true }, { title: 'p99', num: true }],
      fns.map((f) => {
        const st = stats[f.function_id] || { count: 0, errors: 0 };
        const rate = st.count ? (100 * st.errors / st.count) : 0;
        return h('tr', { 'data-function': f.function_id },
          h('td', { class: 'mono' }, f.function_id, f.namespace ? h('span', { class: 'tag' }, f.namespace) : null, f.description ? h('div', { class: 'muted' }, f.description) : null),
          h('td', {}, f.worker_name),
          h('td', {}, (trig.get(f.function_id) || []).map((t) => h('span', { class: 'tag', title: t.config_summary }, t.trigger_type + (t.trigger_type === 'http' ? ' ' + routeOf(t) : '')))),
          h('td', { class: 'num calls' }, fmtN(st.count)), h('td', { class: 'num errors' + (st.errors ? ' bad' : '') }, fmtN(st.errors)),
          h('td', { class: 'num' }, st.count ? rate.toFixed(1) + ' %' : '—'),
          h('td', { class: 'num' }, fmtMs(st.mean_seconds)), h('td', { class: 'num' }, st.p50_seconds ? '≤ ' + fmtMs(st.p50_seconds) : '—'),
          h('td', { class: 'num' }, st.p99_seconds ? '≤ ' + fmtMs(st.p99_seconds) : '—'));
      }), q ? 'No function matches.' : 'No functions registered.'));
    }
    renderBody();
    return { keep: true, update: renderBody };
  } },

  routes: { title: 'HTTP routes', live: true, render(root) {
    const stats = new Map((S.snap.http_stats || []).map((r) => [r.route, r]));
    const routes = ((S.snap.triggers && S.snap.triggers.registered_triggers) || []).filter((t) => t.trigger_type === 'http');
    const base = S.snap.engine.http_url || '';
    root.append(h('p', { class: 'muted' }, 'HTTP triggers, served on ', h('code', {}, base || '(HTTP listener off)')));
    root.append(table('routes-table', [{ title: 'Route' }, { title: 'Function' }, { title: 'Worker' }, { title: 'Requests', num: true },
      { title: '5xx', num: true }, { title: 'Statuses' }, { title: 'Mean', num: true }],
    routes.map((t) => {
      const r = routeOf(t), st = stats.get(r) || { count: 0, errors: 0, by_status: {} };
      return h('tr', { 'data-route': r }, h('td', { class: 'mono' }, r), h('td', { class: 'mono' }, t.function_id), h('td', {}, t.worker_name),
        h('td', { class: 'num requests' }, fmtN(st.count)), h('td', { class: 'num' + (st.errors ? ' bad' : '') }, fmtN(st.errors)),
        h('td', {}, Object.entries(st.by_status || {}).map(([k, v]) => h('span', { class: 'tag' }, k + ': ' + v))),
        h('td', { class: 'num' }, fmtMs(st.mean_seconds)));
    }), 'No HTTP routes registered.'));
    const other = (S.snap.http_stats || []).filter((r) => r.route === '_none');
    if (other.length) root.append(h('p', { class: 'muted' }, 'Requests that matched no route: ' + fmtN(other[0].count)));
  } },

  channels: { title: 'Channels', live: true, render(root) {
    const c = S.snap.channels, last = S.chHistory[S.chHistory.length - 1] || {};
    const card = (id, v, k) => h('div', { class: 'card', id }, h('div', { class: 'v' }, v), h('div', { class: 'k' }, k));
    root.append(h('div', { class: 'summary', id: 'channels-cards' },
      card('ch-active', fmtN(c.active), 'open channels'), card('ch-bps', fmtBytes(last.bps || 0) + '/s', 'throughput'),
      card('ch-fps', fmtN(Math.round(last.fps || 0)) + '/s', 'frames'), card('ch-buffered', fmtBytes(c.buffered_bytes), 'buffered'),
      card('ch-bytes', fmtBytes(c.bytes_total), 'bytes since start'), card('ch-frames', fmtN(c.frames_total), 'frames since start'),
      card('ch-aborted', fmtN(c.aborted_total), 'aborted')));
    root.append(h('h3', {}, 'Throughput, last two minutes'));
    const cv = h('canvas', { class: 'spark', id: 'ch-spark', width: 1000, height: 90 });
    root.append(cv);
    drawSpark(cv, S.chHistory.map((x) => x.bps));
    // Per channel: bytes from its writer socket, the rate since the last
    // snapshot (in-process ends, e.g. HTTP bodies, are not counted).
    const prev = new Map(((S.prev && S.prev.channels.list) || []).map((x) => [x.id, x]));
    const dt = S.prev ? (S.snap.engine.time_ms - S.prev.engine.time_ms) / 1000 : 0;
    const list = c.list || [];
    root.append(h('h3', {}, 'Open channels' + (c.active > list.length ? ' (the ' + list.length + ' most recent of ' + fmtN(c.active) + ')' : '')));
    root.append(table('channels-table', [{ title: 'Channel' }, { title: 'Owner' }, { title: 'Opened' }, { title: 'Writer' }, { title: 'Reader' },
      { title: 'Frames', num: true }, { title: 'Bytes', num: true }, { title: 'Rate', num: true }],
    list.map((x) => {
      const p = prev.get(x.id);
      const rate = p && dt > 0 ? Math.max(0, (x.bytes - p.bytes) / dt) : 0;
      return h('tr', { 'data-channel': x.id, 'data-owner': x.owner_name || '' }, h('td', { class: 'mono' }, x.id + '…'),
        h('td', {}, x.owner_name || (x.owner ? x.owner.slice(0, 8) : 'engine')), h('td', {}, fmtAgo(Date.parse(x.created))),
        h('td', { class: x.writer === 'connected' ? 'ok' : 'muted' }, x.writer), h('td', { class: x.reader === 'connected' ? 'ok' : 'muted' }, x.reader),
        h('td', { class: 'num' }, fmtN(x.frames)), h('td', { class: 'num bytes' }, fmtBytes(x.bytes)), h('td', { class: 'num' }, fmtBytes(rate) + '/s'));
    }), 'No open channels.'));
  } },

  queues: { title: 'Queues', live: true, render(root) {
    root.append(table('queues-table', [{ title: 'Queue' }, { title: 'Type' }, { title: 'Consumers', num: true }, { title: 'Depth', num: true },
      { title: 'In flight', num: true }, { title: 'Dead letters', num: true }, { title: '' }],
    S.snap.queues.map((q) => h('tr', { 'data-queue': q.name }, h('td', { class: 'mono' }, q.name), h('td', {}, q.broker_type),
      h('td', { class: 'num' }, fmtN(q.subscriber_count)), h('td', { class: 'num depth' }, fmtN(q.depth)), h('td', { class: 'num' }, fmtN(q.in_flight)),
      h('td', { class: 'num dlq' + (q.dlq ? ' bad' : '') }, fmtN(q.dlq)),
      h('td', {}, h('button', { class: 'secondary dlq-browse', 'data-queue': q.name, onclick: () => openDLQ(q.name) }, 'Dead letters'))))
    , 'No queues. Declare them in the config or with queue::define.'));
    const box = h('div', { id: 'dlq-box' });
    root.append(box);
    renderDLQ(box);
    return { keep: true, update() {
      const t = PAGES.queues;
      const tmp = h('div'); t.render.call(t, tmp);
      $('#queues-table, #queues-table-empty', root).replaceWith(tmp.firstChild);
    } };
  } },

  state: { title: 'State', live: false, render(root) {
    const groups = h('div', { class: 'list', id: 'state-groups' }, h('div', { class: 'muted' }, 'loading…'));
    const right = h('div', {});
    root.append(h('div', { class: 'toolbar' }, h('button', { class: 'secondary', id: 'state-refresh', onclick: () => loadGroups() }, 'Refresh')));
    root.append(h('div', { class: 'grid2' }, groups, right));
    const scope = h('input', { type: 'text', id: 'state-scope', placeholder: 'scope' });
    const key = h('input', { type: 'text', id: 'state-key', placeholder: 'key' });
    const val = h('textarea', { id: 'state-value', placeholder: 'value (JSON) for set' });
    const out = h('pre', { id: 'state-out' }, 'Select a scope, or get/set/delete a key.');
    const act = (fn, payload) => call(fn, payload).then((r) => { out.textContent = pretty(r); if (fn !== 'state::get') loadGroups(); }).catch((e) => { out.textContent = e.message; });
    right.append(h('div', { class: 'form' },
      h('div', { class: 'toolbar' }, scope, key,
        h('button', { id: 'state-get', onclick: () => act('state::get', { scope: scope.value, key: key.value }) }, 'Get'),
        h('button', { class: 'secondary', id: 'state-set', onclick: () => { let v; try { v = JSON.parse(val.value); } catch (e) { out.textContent = 'value is not JSON: ' + e.message; return; } act('state::set', { scope: scope.value, key: key.value, value: v }); } }, 'Set'),
        h('button', { class: 'danger', id: 'state-delete', onclick: () => act('state::delete', { scope: scope.value, key: key.value }) }, 'Delete')),
      val, h('h3', {}, 'Values'), out));
    async function loadGroups() {
      try {
        const r = await call('state::list_groups', {});
        const gs = (r && r.groups) || [];
        groups.replaceChildren(...(gs.length ? gs.map((g) => h('a', { 'data-scope': g, class: g === S.sel.scope ? 'sel' : '', onclick: () => { S.sel.scope = g; scope.value = g; loadScope(g); loadGroups(); } }, g)) : [h('div', { class: 'empty' }, 'No state yet.')]));
      } catch (e) { groups.replaceChildren(h('div', { class: 'empty bad' }, e.message)); }
    }
    async function loadScope(g) {
      try { out.textContent = pretty(await call('state::list', { scope: g })); } catch (e) { out.textContent = e.message; }
    }
    loadGroups();
    if (S.sel.scope) { scope.value = S.sel.scope; loadScope(S.sel.scope); }
  } },

  streams: { title: 'Streams', live: false, render(root) {
    const list = h('div', { class: 'list', id: 'streams-list' }, h('div', { class: 'muted' }, 'loading…'));
    const out = h('pre', { id: 'stream-items' }, 'Select a stream group.');
    const head = h('h3', { id: 'stream-title' }, 'Items');
    root.append(h('div', { class: 'toolbar' }, h('button', { class: 'secondary', id: 'streams-refresh', onclick: () => { loadAll(); if (S.sel.stream) loadGroup(...S.sel.stream); } }, 'Refresh'),
      S.snap && S.snap.engine.streams_addr ? h('span', { class: 'muted' }, 'clients connect to ws://' + S.snap.engine.streams_addr) : null));
    root.append(h('div', { class: 'grid2' }, list, h('div', {}, head, out)));
    async function loadAll() {
      try {
        const r = await call('stream::list_all', {});
        const items = [];
        for (const s of (r && r.stream) || []) for (const g of s.groups || []) {
          const sel = S.sel.stream && S.sel.stream[0] === s.id && S.sel.stream[1] === g;
          items.push(h('a', { 'data-stream': s.id, 'data-group': g, class: sel ? 'sel' : '', onclick: () => { S.sel.stream = [s.id, g]; loadGroup(s.id, g); loadAll(); } }, s.id + ' › ' + g));
        }
        list.replaceChildren(...(items.length ? items : [h('div', { class: 'empty' }, 'No streams yet.')]));
      } catch (e) { list.replaceChildren(h('div', { class: 'empty bad' }, e.message)); }
    }
    async function loadGroup(name, group) {
      head.textContent = name + ' › ' + group;
      try { out.textContent = pretty(await call('stream::list', { stream_name: name, group_id: group })); } catch (e) { out.textContent = e.message; }
    }
    loadAll();
    if (S.sel.stream) loadGroup(...S.sel.stream);
  } },

  invocations: { title: 'Live invocations', live: false, render(root) {
    const filter = h('input', { type: 'search', id: 'feed-filter', placeholder: 'filter by function', value: S.sel.feedFilter || '',
      oninput: (e) => { S.sel.feedFilter = e.target.value; renderFeedRows(); } });
    const pause = h('button', { class: 'secondary', id: 'feed-pause', onclick: () => { S.feedPaused = !S.feedPaused; pause.textContent = S.feedPaused ? 'Resume' : 'Pause'; } }, S.feedPaused ? 'Resume' : 'Pause');
    root.append(h('div', { class: 'toolbar' }, filter, pause, h('button', { class: 'secondary', id: 'feed-clear', onclick: () => { S.feed = []; renderFeedRows(); } }, 'Clear'),
      h('span', { class: 'warn', id: 'feed-dropped' }, S.feedDropped ? S.feedDropped + ' events dropped' : '')));
    root.append(h('table', { id: 'feed-table' }, h('thead', {}, h('tr', {}, ['Time', 'Function', 'Caller', 'Duration', 'Outcome'].map((t, i) => h('th', { class: i === 3 ? 'num' : '' }, t)))), h('tbody', { id: 'feed-rows' })));
    renderFeedRows();
  } },

  trigger: { title: 'Trigger a function', live: false, render(root) {
    const fns = ((S.snap && S.snap.functions && S.snap.functions.functions) || []).map((f) => f.function_id).sort();
    const dl = h('datalist', { id: 'fn-ids' }, fns.map((f) => h('option', { value: f })));
    const fn = h('input', { type: 'text', id: 'trigger-function', list: 'fn-ids', placeholder: 'function id', value: S.sel.triggerFn || '' });
    const payload = h('textarea', { id: 'trigger-payload' });
    payload.value = S.sel.triggerPayload || '{}';
    const voidCb = h('input', { type: 'checkbox', id: 'trigger-void' });
    const out = h('pre', { id: 'trigger-result', class: 'muted' }, 'The result appears here.');
    const btn = h('button', { id: 'trigger-submit', onclick: async () => {
      S.sel.triggerFn = fn.value; S.sel.triggerPayload = payload.value;
      let data;
      try { data = payload.value.trim() ? JSON.parse(payload.value) : null; } catch (e) { out.textContent = 'payload is not JSON: ' + e.message; out.className = 'bad'; return; }
      btn.disabled = true; out.textContent = 'calling…'; out.className = 'muted';
      const t0 = performance.now();
      try {
        const r = await api('/api/call', { function_id: fn.value, payload: data, void: voidCb.checked });
        const ms = (performance.now() - t0).toFixed(1);
        if (r.error) { out.textContent = 'error ' + r.error.code + ' (' + ms + ' ms)\n' + r.error.message; out.className = 'bad'; }
        else { out.textContent = (voidCb.checked ? 'sent (void)' : pretty(r.result)) ; out.className = 'ok'; out.dataset.ms = ms; }
      } catch (e) { out.textContent = e.message; out.className = 'bad'; }
      btn.disabled = false;
    } }, 'Call');
    root.append(h('div', { class: 'form' }, dl, h('label', { for: 'trigger-function' }, 'Function'), fn,
      h('label', { for: 'trigger-payload' }, 'Payload (JSON)'), payload,
      h('div', { class: 'toolbar' }, btn, h('label', {}, voidCb, ' fire and forget (void)')),
      h('label', {}, 'Result'), out));
  } },
};

function routeOf(t) {
  const c = t.config || {};
  return String(c.http_method || 'GET').toUpperCase() + ' /' + String(c.api_path || '').replace(/^\/+/, '');
}

function drawSpark(cv, values) {
  const ctx = cv.getContext('2d');
  const w = cv.width, ht = cv.height;
  ctx.clearRect(0, 0, w, ht);
  if (values.length < 2) return;
  const max = Math.max(1, ...values);
  ctx.strokeStyle = '#1f6feb'; ctx.lineWidth = 2; ctx.beginPath();
  values.forEach((v, i) => {
    const x = i * (w - 4) / (values.length - 1) + 2, y = ht - 4 - (v / max) * (ht - 8);
    if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
  });
  ctx.stroke();
  ctx.fillStyle = '#667085'; ctx.font = '12px system-ui';
  ctx.fillText('max ' + fmtBytes(max) + '/s', 8, 14);
}

function renderFeedRows() {
  const body = $('#feed-rows');
  if (!body) return;
  const q = (S.sel.feedFilter || '').toLowerCase();
  const rows = S.feed.filter((ev) => !q || ev.function_id.toLowerCase().includes(q)).slice(0, 200);
  body.replaceChildren(...rows.map((ev) => h('tr', { 'data-function': ev.function_id, 'data-outcome': ev.outcome },
    h('td', { class: 'mono' }, fmtClock(ev.time)),
    h('td', { class: 'mono' }, ev.function_id, ev.namespace ? h('span', { class: 'tag' }, ev.namespace) : null),
    h('td', {}, ev.caller_name || (ev.caller ? ev.caller.slice(0, 8) : 'engine')),
    h('td', { class: 'num' }, ev.outcome === 'void' ? '—' : ev.duration_ms.toFixed(2) + ' ms'),
    h('td', { class: ev.outcome }, ev.outcome + (ev.error_code ? ' (' + ev.error_code + ')' : '')))));
  if (!rows.length) body.replaceChildren(h('tr', {}, h('td', { colspan: 5, class: 'muted', id: 'feed-empty' }, 'Waiting for invocations…')));
}

// ---------------------------------------------------------------- DLQ

async function openDLQ(queue) {
  S.dlq = { queue, messages: null, msg: '' };
  renderDLQ($('#dlq-box'));
  try { S.dlq.messages = await call('engine::queue::dlq_messages', { queue, limit: 100 }); } catch (e) { S.dlq.msg = e.message; S.dlq.messages = []; }
  renderDLQ($('#dlq-box'));
}

function renderDLQ(box) {
  if (!box) return;
  const d = S.dlq;
  if (!d) { box.replaceChildren(); return; }
  const redrive = async (fn, payload, what) => {
    try { const r = await call(fn, payload); d.msg = what + ': ' + (r && r.redriven !== undefined ? r.redriven + ' redriven' : 'done'); }
    catch (e) { d.msg = e.message; }
    await openDLQ(d.queue).then(() => { S.dlq.msg = d.msg; renderDLQ($('#dlq-box')); });
  };
  const msgs = d.messages;
  box.replaceChildren(
    h('h3', { id: 'dlq-title', 'data-queue': d.queue }, 'Dead letters of ' + d.queue),
    h('div', { class: 'toolbar' },
      h('button', { id: 'dlq-redrive-all', disabled: !msgs || !msgs.length, onclick: () => redrive('iii::queue::redrive', { queue: d.queue }, 'redrive all') }, 'Redrive all'),
      h('button', { class: 'secondary', id: 'dlq-reload', onclick: () => openDLQ(d.queue) }, 'Reload'),
      h('span', { id: 'dlq-msg', class: 'muted' }, d.msg || '')),
    msgs === null ? h('div', { class: 'muted' }, 'loading…') : table('dlq-table', [{ title: 'Id' }, { title: 'Function' }, { title: 'Error' },
      { title: 'Failed' }, { title: 'Retries', num: true }, { title: 'Payload' }, { title: '' }],
    msgs.map((m) => h('tr', { 'data-message': m.id }, h('td', { class: 'mono' }, m.id), h('td', { class: 'mono' }, m.function_id),
      h('td', { class: 'bad' }, m.error), h('td', {}, fmtAgo(m.failed_at * 1000)), h('td', { class: 'num' }, fmtN(m.retries)),
      h('td', {}, h('code', {}, JSON.stringify(m.payload).slice(0, 200))),
      h('td', {}, h('button', { class: 'secondary redrive', 'data-message': m.id, onclick: () => redrive('iii::queue::redrive_message', { queue: d.queue, message_id: m.id }, 'redrive ' + m.id) }, 'Redrive'), ' ',
        h('button', { class: 'danger discard', 'data-message': m.id, onclick: () => redrive('iii::queue::discard_message', { queue: d.queue, message_id: m.id }, 'discard ' + m.id) }, 'Discard')))),
    'The dead-letter queue of ' + d.queue + ' is empty.'));
}

// ---------------------------------------------------------------- routing

let current = null;
function render() {
  const page = PAGES[S.page];
  const main = $('#main');
  if (!page) return;
  if (page.live && !S.snap) { main.replaceChildren(h('div', { class: 'muted' }, 'waiting for the engine…')); return; }
  if (current && current.page === S.page && current.keep) { current.update(); main.dataset.updated = String(Date.now()); return; }
  const root = h('div', {});
  root.append(h('h2', {}, page.title));
  const r = page.render(root) || {};
  main.replaceChildren(root);
  main.dataset.page = S.page;
  main.dataset.updated = String(Date.now());
  current = { page: S.page, keep: !!r.keep, update: r.update };
}

function route() {
  const p = (location.hash.replace(/^#\/?/, '') || 'workers').split('?')[0];
  S.page = PAGES[p] ? p : 'workers';
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === S.page);
  document.title = PAGES[S.page].title + ' · Sluice';
  current = null;
  if (S.page !== 'queues') S.dlq = null;
  render();
}

// ---------------------------------------------------------------- login

function showLogin(msg) {
  disconnect();
  setStatus('login required', 'down');
  const tok = h('input', { type: 'password', id: 'login-token', placeholder: 'token', autocomplete: 'current-password' });
  const err = h('div', { class: 'bad', id: 'login-error' }, msg || '');
  const go = async () => {
    const r = await fetch('/api/login', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token: tok.value }) });
    if (r.ok) { start(); return; }
    err.textContent = 'Wrong token.';
  };
  $('#main').replaceChildren(h('div', { class: 'login', id: 'login' }, h('h2', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'This engine requires a token (one of auth.tokens).'), tok,
    h('button', { id: 'login-submit', onclick: go }, 'Sign in'), err));
  current = null;
  tok.addEventListener('keydown', (e) => { if (e.key === 'Enter') go(); });
}

async function start() {
  let sess;
  try { sess = await (await fetch('/api/session')).json(); } catch (e) { setStatus('engine unreachable', 'down'); return; }
  if (sess.auth && !sess.authorized) { showLogin(); return; }
  connect();
  route();
}

window.addEventListener('hashchange', route);
start();
