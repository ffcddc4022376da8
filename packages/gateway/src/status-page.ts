// The status page: one HTML document with inline style and script (no external assets, a
// nonce-based Content-Security-Policy) that polls `status.json` and draws it: the figures now,
// who holds the slots and who waits, and the last five minutes as SVG charts with legends.
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { SHED_REASONS } from './activity/shed-reason.js';

/** Where the status page lives; its JSON is at `${STATUS_PATH}.json`. */
export const STATUS_PATH = '/sluice/status';

const STYLE = `
:root { color-scheme: light dark; --fg: #1f2328; --muted: #656d76; --card: #f6f8fa; --line: #d0d7de;
  --ok: #1a7f37; --warn: #bf8700; --bad: #cf222e; --info: #0969da; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --muted: #8d96a0; --card: #161b22; --line: #30363d; } body { background: #0d1117; } }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; padding: 20px 24px; color: var(--fg); }
header { display: flex; align-items: center; gap: 12px; flex-wrap: wrap; margin-bottom: 16px; }
h1 { font-size: 20px; margin: 0 8px 0 0; }
h2 { font-size: 12px; text-transform: uppercase; letter-spacing: .06em; margin: 0 0 8px; color: var(--muted); font-weight: 600; }
.muted { color: var(--muted); } .small { font-size: 12px; }
.badge { padding: 2px 10px; border-radius: 999px; font-weight: 600; font-size: 13px; color: #fff; background: var(--muted); }
.ok { --level: var(--ok); } .warn { --level: var(--warn); } .bad { --level: var(--bad); } .info { --level: var(--info); }
.badge.ok, .badge.warn, .badge.bad { background: var(--level); }
section, figure { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; margin: 0; min-width: 0; }
.grid { display: grid; gap: 12px; margin-bottom: 12px; }
.kpis { grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); }
.two { grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); }
.cards { grid-template-columns: repeat(auto-fit, minmax(220px, 1fr)); }
.big { font-size: 26px; font-weight: 650; font-variant-numeric: tabular-nums; line-height: 1.2; }
.bar { height: 6px; border-radius: 3px; background: var(--line); overflow: hidden; margin: 6px 0 4px; }
.bar > div { height: 100%; width: 0; background: var(--level, var(--info)); }
dl { display: grid; grid-template-columns: 1fr auto; gap: 2px 12px; margin: 6px 0 0; }
dt { color: var(--muted); } dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; }
.callout { border-left: 4px solid var(--level, var(--info)); padding: 8px 12px; margin: 0 0 10px; background: var(--card); border-radius: 4px; font-size: 15px; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding-bottom: 6px; }
th { font-size: 12px; color: var(--muted); font-weight: 600; text-align: right; padding: 3px 6px; border-bottom: 1px solid var(--line); }
td { text-align: right; padding: 3px 6px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th:first-child, td:first-child, td.reasons { text-align: left; } td.reasons { white-space: normal; color: var(--muted); font-size: 12px; }
td .bar { width: 60px; display: inline-block; margin: 0 0 1px 6px; vertical-align: middle; }
tr.empty td { color: var(--muted); text-align: left; }
svg.chart { width: 100%; height: auto; display: block; }
svg text { font-size: 10px; fill: var(--muted); }
.grid-line { stroke: var(--line); stroke-width: 1; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12px; margin-top: 6px; }
.legend svg { width: 18px; height: 10px; vertical-align: -1px; margin-right: 4px; }
.note { color: var(--muted); font-size: 13px; }
#error { display: none; color: var(--bad); font-weight: 600; }
ul.changes { list-style: none; padding: 0; margin: 0; font-size: 13px; max-height: 180px; overflow: auto; }
/* series */
.c-inflight { fill: #0969da33; stroke: #0969da; } .c-queued { stroke: #bf8700; } .c-limit { stroke: #57606a; }
.c-ceiling { stroke: #8c959f; stroke-dasharray: 5 3; } .c-dbmax { stroke: #cf222e; stroke-dasharray: 5 3; }
.c-db { fill: #1b7c8333; stroke: #1b7c83; } .c-ok { fill: #2da44e; } .c-error { stroke: #cf222e; stroke-dasharray: 2 2; }
.c-queue_full { fill: #fb8f44; } .c-queue_timeout { fill: #bc4c00; } .c-circuit_open { fill: #8250df; }
.c-database_down { fill: #cf222e; } .c-unauthenticated { fill: #8c959f; } .c-shutting_down { fill: #d4a72c; }
.c-wait50 { stroke: #bf8700; } .c-wait99 { stroke: #bf8700; stroke-dasharray: 5 3; }
.c-up50 { stroke: #0969da; } .c-up99 { stroke: #0969da; stroke-dasharray: 5 3; }
.b-closed, .b-up { fill: #2da44e; } .b-half-open { fill: #d4a72c; } .b-open, .b-down { fill: #cf222e; } .b-none { fill: var(--line); }
path, line { fill: none; stroke-width: 1.6; } path.area { stroke-width: 1.6; }
`;

const SCRIPT = `
const $ = (id) => document.getElementById(id);
const REASONS = ${JSON.stringify(Object.fromEntries(SHED_REASONS.map((r) => [r, r.replaceAll('_', ' ')])))};
const dash = '\\u2013';
const fmt = (n, digits) => n === null || n === undefined ? dash : n.toLocaleString('en-US', { maximumFractionDigits: digits || 0 });
const rate = (x) => x === null || x === undefined ? dash : fmt(x, x < 10 ? 1 : 0);
const ms = (x) => x === null || x === undefined ? dash : x >= 1000 ? fmt(x / 1000, x < 10000 ? 1 : 0) + ' s' : fmt(x, x < 10 ? 1 : 0) + ' ms';
const pct = (x) => x === null || x === undefined ? dash : (x * 100).toFixed(1) + '%';
function set(id, text) { const el = $(id); if (el) el.textContent = text; }
function level(el, l) { el.classList.remove('ok', 'warn', 'bad', 'info'); if (l) el.classList.add(l); }
function bar(el, share, l) { el.style.width = (Math.max(0, Math.min(1, share)) * 100).toFixed(1) + '%'; level(el.parentElement, l); }
function usage(share) { return share >= 0.9 ? 'bad' : share >= 0.7 ? 'warn' : 'ok'; }
function reasons(byReason, unit, always) {
  const given = Object.entries(byReason || {}).filter((e) => e[1] > 0);
  // One reason: its name says it (the figure is next to it); several: each with its share.
  return given.map((e) => (REASONS[e[0]] || e[0]) + (given.length > 1 || always ? ' ' + rate(e[1]) + unit : '')).join(', ');
}

// --- charts: SVG strings from fixed series (never from request data) ---
const W = 600, H = 150, L = 56, R = 8, T = 8, B = 18, PW = W - L - R, PH = H - T - B;
function niceMax(v) { const p = Math.pow(10, Math.floor(Math.log10(Math.max(v, 1e-9)))); for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p; return 10 * p; }
function axisLabel(seconds) { return seconds >= 120 ? '-' + Math.round(seconds / 60) + ' min' : '-' + Math.round(seconds) + ' s'; }
function chart(h, spec) {
  const n = h.requestsPerSecond.length, span = Math.max(n, 30), step = PW / span;
  const x = (i) => L + (span - n + i + 0.5) * step;
  const all = spec.series.flatMap((s) => s.stack ? Array.from({ length: n }, (_, i) => s.stack.reduce((a, p) => a + (p.values[i] || 0), 0)) : s.values).filter((v) => v !== null && v !== undefined);
  const max = spec.log ? Math.pow(10, Math.max(1, Math.ceil(Math.log10(Math.max(1, ...all))))) : niceMax(Math.max(spec.min || 1, ...all));
  const lo = 1;
  const y = spec.log ? (v) => T + PH * (1 - Math.log10(Math.max(lo, v) / lo) / Math.log10(max / lo)) : (v) => T + PH * (1 - v / max);
  let out = '';
  const ticks = spec.log ? Array.from({ length: Math.round(Math.log10(max)) + 1 }, (_, i) => Math.pow(10, i)) : [0, max / 2, max];
  for (const t of ticks) out += '<line class="grid-line" x1="' + L + '" x2="' + (W - R) + '" y1="' + y(t).toFixed(1) + '" y2="' + y(t).toFixed(1) + '"/>' +
    '<text x="' + (L - 4) + '" y="' + (y(t) + 3).toFixed(1) + '" text-anchor="end">' + spec.tick(t) + '</text>';
  const seconds = span * h.bucketMs / 1000;
  out += '<text x="' + L + '" y="' + (H - 4) + '">' + axisLabel(seconds) + '</text><text x="' + (L + PW / 2) + '" y="' + (H - 4) + '" text-anchor="middle">' +
    axisLabel(seconds / 2) + '</text><text x="' + (W - R) + '" y="' + (H - 4) + '" text-anchor="end">now</text>';
  for (const s of spec.series) {
    if (s.hideKey) continue;
    if (s.stack) {
      for (let i = 0; i < n; i++) {
        let base = 0;
        for (const p of s.stack) {
          const v = p.values[i] || 0; if (v <= 0) continue;
          out += '<rect class="' + p.cls + '" x="' + (x(i) - step * 0.42).toFixed(1) + '" width="' + (step * 0.84).toFixed(1) + '" y="' + y(base + v).toFixed(1) + '" height="' + Math.max(0.5, y(base) - y(base + v)).toFixed(1) + '"/>';
          base += v;
        }
      }
      continue;
    }
    let d = '', open = false, first = 0, last = 0;
    const segs = [];
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) { if (open) segs.push([first, last, d]); open = false; d = ''; return; }
      d += (open ? 'L' : 'M') + x(i).toFixed(1) + ' ' + y(v).toFixed(1) + ' ';
      if (!open) first = i; open = true; last = i;
    });
    if (open) segs.push([first, last, d]);
    for (const [a, b, p] of segs) {
      out += s.area ? '<path class="' + s.cls + ' area" d="' + p + 'L' + x(b).toFixed(1) + ' ' + y(0).toFixed(1) + ' L' + x(a).toFixed(1) + ' ' + y(0).toFixed(1) + ' Z"/>'
        : '<path class="' + s.cls + '" d="' + p + '"/>';
    }
  }
  let height = H;
  for (const band of spec.bands || []) {
    out += '<text x="' + (L - 4) + '" y="' + (height + 8) + '" text-anchor="end">' + band.name + '</text>';
    band.values.forEach((v, i) => { out += '<rect class="b-' + (v || 'none') + '" x="' + (x(i) - step / 2).toFixed(1) + '" width="' + (step + 0.3).toFixed(1) + '" y="' + height + '" height="9"/>'; });
    height += 13;
  }
  return { svg: out, height: height + 2 };
}
function draw(id, h, spec) {
  const c = chart(h, spec), el = $(id);
  el.setAttribute('viewBox', '0 0 ' + W + ' ' + c.height);
  el.innerHTML = c.svg;
  const keys = [];
  for (const s of spec.series) if (s.stack) keys.push(...s.stack.map((p) => ({ name: p.name, cls: p.cls, box: true }))); else if (!s.hideKey) keys.push({ name: s.name, cls: s.cls, box: s.area });
  $(id + '-legend').innerHTML = keys.map((k) => '<span><svg viewBox="0 0 18 10">' + (k.box
    ? '<rect class="' + k.cls + '" x="1" y="1" width="16" height="8"/>' : '<line class="' + k.cls + '" x1="0" x2="18" y1="5" y2="5"/>') + '</svg>' + k.name + '</span>').join('') +
    (spec.bands || []).map((b) => '<span>' + b.name + ': ' + b.keys.map((k) => '<svg viewBox="0 0 18 10"><rect class="b-' + k + '" width="18" height="10"/></svg>' + k).join(' ') + '</span>').join('');
}

function whoRows(id, table, limit, label) {
  const body = $(id);
  body.replaceChildren();
  if (table.top.length === 0) {
    const tr = body.insertRow(); tr.className = 'empty';
    const td = tr.insertCell(); td.colSpan = 7; td.textContent = 'none in the last minute';
  }
  for (const e of table.top) {
    const tr = body.insertRow();
    tr.insertCell().textContent = label(e);
    const held = tr.insertCell(); held.textContent = fmt(e.inFlight);
    const b = document.createElement('div'); b.className = 'bar'; const fill = document.createElement('div'); b.append(fill); held.append(b);
    bar(fill, limit > 0 ? e.inFlight / limit : 0, e.inFlight / limit >= 0.5 ? 'warn' : 'info');
    tr.insertCell().textContent = fmt(e.queued);
    tr.insertCell().textContent = fmt(e.slots, 1);
    tr.insertCell().textContent = rate(e.requestsPerSecond);
    tr.insertCell().textContent = rate(e.shedPerMinute);
    const why = tr.insertCell(); why.className = 'reasons'; why.textContent = reasons(e.shedByReason, '');
  }
  set(id + '-count', table.top.length + ' of ' + table.tracked + ' tracked');
}
const userName = (e) => e.name ? e.name + ' (id ' + e.id + ')' : 'user id ' + e.id;
function heaviest(prefix, e, limit, label, what) {
  const el = $(prefix);
  if (!e) { set(prefix + '-who', 'none'); set(prefix + '-detail', 'no ' + what + ' active in the last minute'); level(el, 'info'); return; }
  set(prefix + '-who', label(e));
  const share = limit > 0 ? e.inFlight / limit : 0;
  let text = 'holds ' + fmt(e.inFlight) + ' of ' + fmt(limit) + ' slots (' + Math.round(share * 100) + '%), ' + fmt(e.queued) + ' queued; last minute: ' +
    fmt(e.slots, 1) + ' slots on average, ' + rate(e.requestsPerSecond) + ' req/s';
  if (e.shedPerMinute > 0) text += ', ' + rate(e.shedPerMinute) + ' shed/min (' + reasons(e.shedByReason, '') + ')';
  set(prefix + '-detail', text);
  level(el, share >= 0.5 || e.queued > 0 ? 'warn' : 'info');
}

function render(s) {
  const a = s.admission, c = s.cache, d = s.database, r = s.requests, now = s.recent, h = s.history;
  set('state', s.state); level($('state'), s.state === 'running' ? 'ok' : 'warn');
  set('breaker', s.breaker); level($('breaker'), s.breaker === 'closed' ? 'ok' : s.breaker === 'open' ? 'bad' : 'warn');
  const health = d ? d.health.state : 'not watched';
  set('db-health', 'database ' + health); level($('db-health'), health === 'up' ? 'ok' : health === 'down' ? 'bad' : '');
  set('upstream', s.upstream); set('version', 'v' + s.version);
  set('uptime', fmt(Math.round((s.at - s.startedAt) / 1000)) + ' s'); set('updated', new Date(s.at).toLocaleTimeString());
  // now
  set('in-flight', fmt(a.inFlight)); set('limit', fmt(a.limit)); bar($('in-flight-bar'), a.limit ? a.inFlight / a.limit : 0, usage(a.limit ? a.inFlight / a.limit : 0));
  set('limit-source', 'ceiling ' + fmt(a.ceiling) + ' · ' + a.limitSource + (a.control !== 'off' ? ' · ' + a.control : ''));
  set('queued', fmt(a.queued)); set('queued-classes', 'interactive ' + fmt(a.byClass.interactive.queued) + ' · bulk ' + fmt(a.byClass.bulk.queued));
  set('rps', rate(now.requestsPerSecond)); set('rps-window', 'per second, last ' + now.rateWindowMs / 1000 + ' s, shed included');
  set('sps', rate(now.shedPerSecond)); set('sps-reasons', reasons(now.shedByReason, '/s', true) || 'none shed');
  level($('sps-card'), now.shedPerSecond > 0 ? 'warn' : '');
  set('qw', ms(now.queueWaitMs.p50)); set('qw-p99', ms(now.queueWaitMs.p99));
  set('up', ms(now.upstreamMs.p50)); set('up-p99', ms(now.upstreamMs.p99));
  set('hit-ratio', pct(c.hitRatio));
  const hit = c.hitRatio === null ? 0 : c.hitRatio;
  bar($('hit-ratio-bar'), hit, c.hitRatio === null ? '' : hit >= 0.9 ? 'ok' : hit >= 0.5 ? 'warn' : 'bad');
  // who
  heaviest('heaviest-user', s.users.top[0], a.limit, userName, 'validated user');
  heaviest('heaviest-client', s.clients.top[0], a.limit, (e) => e.id, 'client');
  whoRows('users', s.users, a.limit, userName);
  whoRows('clients', s.clients, a.limit, (e) => e.id);
  // history
  const present = Object.keys(REASONS).filter((k) => h.shedPerSecond[k].some((v) => v > 0));
  const answered = h.requestsPerSecond.map((v, i) => Math.max(0, v - Object.keys(REASONS).reduce((t, k) => t + h.shedPerSecond[k][i], 0)));
  draw('chart-slots', h, { tick: (t) => fmt(t, 1), min: 4, series: [
    { name: 'in flight (max)', cls: 'c-inflight', values: h.inFlight, area: true },
    { name: 'queued (max)', cls: 'c-queued', values: h.queued },
    { name: 'limit', cls: 'c-limit', values: h.limit },
    { name: 'ceiling', cls: 'c-ceiling', values: h.ceiling }],
    bands: [{ name: 'breaker', values: h.breaker, keys: ['closed', 'half-open', 'open'] }].concat(d && d.health.state !== 'unguarded'
      ? [{ name: 'database', values: h.database, keys: ['up', 'down'] }] : []) });
  draw('chart-requests', h, { tick: (t) => fmt(t, 1), series: [
    { stack: [{ name: 'answered by the upstream', cls: 'c-ok', values: answered }].concat(present.map((k) => ({ name: 'shed: ' + REASONS[k], cls: 'c-' + k, values: h.shedPerSecond[k] }))) },
    { name: 'upstream errors', cls: 'c-error', values: h.upstreamErrorsPerSecond, hideKey: !h.upstreamErrorsPerSecond.some((v) => v > 0) }] });
  draw('chart-latency', h, { log: true, tick: (t) => ms(t), series: [
    { name: 'queue wait p50', cls: 'c-wait50', values: h.queueWaitMs.p50 }, { name: 'queue wait p99', cls: 'c-wait99', values: h.queueWaitMs.p99 },
    { name: 'upstream p50', cls: 'c-up50', values: h.upstreamMs.p50 }, { name: 'upstream p99', cls: 'c-up99', values: h.upstreamMs.p99 }] });
  $('db-chart').hidden = !d; $('db-embedded').hidden = !!d;
  if (d) {
    draw('chart-db', h, { tick: (t) => fmt(t), series: [
      { name: 'connections on the server', cls: 'c-db', values: h.dbConnections, area: true },
      { name: 'max_connections minus reserved', cls: 'c-dbmax', values: h.dbMax },
      { name: 'admission limit', cls: 'c-limit', values: h.limit }] });
  } else set('embedded-limit', fmt(a.limit));
  // details
  set('l1-hits', fmt(c.l1Hits)); set('l2-hits', fmt(c.l2Hits)); set('misses', fmt(c.misses));
  set('validator-calls', fmt(c.validatorCalls)); set('validator-errors', fmt(c.validatorErrors)); set('l2-state', c.l2State); set('validator', c.validator);
  $('db-details').hidden = !d;
  if (d) {
    const usable = d.maxConnections === null ? null : d.maxConnections - (d.reservedConnections || 0);
    set('db-connections', fmt(d.connections)); set('db-max', fmt(usable)); set('db-level', d.level);
    bar($('db-bar'), usable ? (d.connections || 0) / usable : 0, usage(usable ? (d.connections || 0) / usable : 0));
    set('db-states', Object.entries(d.byState).map((e) => e[0] + ' ' + e[1]).join(', ') || dash);
    set('db-pool', fmt(d.pool.total) + ' of ' + fmt(d.pool.max) + ' (' + fmt(d.pool.idle) + ' idle)');
    set('db-outages', fmt(d.health.outages) + (d.health.lastError ? ' · ' + d.health.lastError : ''));
    set('db-reaped', d.reaped === null ? 'off' : fmt(d.reaped)); set('db-purged', d.purged === null ? 'off' : fmt(d.purged));
  }
  set('requests', fmt(r.total));
  for (const k of ['2xx', '3xx', '4xx', '5xx']) set('status-' + k, fmt(r.byStatus[k] || 0));
  set('upstream-errors', fmt(r.upstreamErrors));
  set('shed-total', reasons(r.shed, '', true) || 'none');
  const list = $('changes'); list.replaceChildren();
  for (const ch of s.changes.slice().reverse()) {
    const li = document.createElement('li');
    li.textContent = new Date(ch.at).toLocaleTimeString() + '  ' + ch.what + ' ' + ch.from + ' \\u2192 ' + ch.to;
    list.append(li);
  }
  if (!s.changes.length) { const li = document.createElement('li'); li.className = 'muted'; li.textContent = 'no breaker or database change since start'; list.append(li); }
  set('semaphore', a.semaphore + (s.redis ? ' (Redis ' + s.redis.mode + ', ' + s.redis.status + ')' : ''));
  set('connections', s.connections ? fmt(s.connections.open) + ' of ' + fmt(s.connections.max) : dash);
  set('refused', s.connections ? fmt(s.connections.refused.total + s.connections.refused.perClient) : dash);
}
async function tick() {
  try {
    const res = await fetch(location.pathname.replace(/[/]$/, '') + '.json', { cache: 'no-store' });
    if (!res.ok) throw new Error('HTTP ' + res.status);
    render(await res.json());
    $('error').style.display = 'none';
    document.body.dataset.loaded = 'true';
  } catch (e) {
    $('error').textContent = 'status unavailable: ' + e.message; $('error').style.display = 'block';
  } finally { setTimeout(tick, 2000); }
}
tick();
`;

const figure = (id: string, title: string, note: string): string =>
  `<figure><h2>${title}</h2><svg id="${id}" class="chart" viewBox="0 0 600 150" role="img" aria-label="${title}"></svg>` +
  `<div class="legend" id="${id}-legend"></div><div class="note">${note}</div></figure>`;
const who = (id: string, title: string, first: string): string =>
  `<section><table><caption>${title} <span class="muted small" id="${id}-count"></span></caption>` +
  `<thead><tr><th>${first}</th><th>in flight</th><th>queued</th><th>avg slots</th><th>req/s</th><th>shed/min</th><th>shed why</th></tr></thead>` +
  `<tbody id="${id}"></tbody></table></section>`;

const BODY = `
<header>
  <h1>Sluice gateway</h1><span id="state" class="badge">…</span>
  <span class="muted">breaker</span><span id="breaker" class="badge">…</span><span id="db-health" class="badge">…</span>
  <span class="muted">upstream <b id="upstream">…</b> · up <span id="uptime">…</span> · <span id="version"></span> · updated <span id="updated">never</span></span>
  <span id="error"></span>
</header>
<div class="grid kpis">
  <section><h2>In flight / limit</h2><div class="big"><span id="in-flight">-</span> / <span id="limit">-</span></div>
    <div class="bar"><div id="in-flight-bar"></div></div><div class="muted small" id="limit-source"></div></section>
  <section><h2>Queued</h2><div class="big" id="queued">-</div><div class="muted small" id="queued-classes"></div></section>
  <section><h2>Requests</h2><div class="big" id="rps">-</div><div class="muted small" id="rps-window"></div></section>
  <section id="sps-card"><h2>Shed</h2><div class="big" id="sps">-</div><div class="muted small" id="sps-reasons"></div></section>
  <section><h2>Queue wait p50</h2><div class="big" id="qw">-</div><div class="muted small">p99 <b id="qw-p99">-</b> · last minute</div></section>
  <section><h2>Upstream p50</h2><div class="big" id="up">-</div><div class="muted small">p99 <b id="up-p99">-</b> · to the response head, last minute</div></section>
  <section><h2>Session cache hits</h2><div class="big" id="hit-ratio">-</div><div class="bar"><div id="hit-ratio-bar"></div></div>
    <div class="muted small">share of credential checks answered without the database: higher is better</div></section>
</div>
<h2>Who holds the slots and who waits</h2>
<p class="callout" id="heaviest-user">Heaviest user: <b id="heaviest-user-who">…</b> <span id="heaviest-user-detail"></span></p>
<p class="callout" id="heaviest-client">Heaviest client: <b id="heaviest-client-who">…</b> <span id="heaviest-client-detail"></span></p>
<div class="grid two">
  ${who('users', 'Users', 'user')}
  ${who('clients', 'Client addresses', 'client')}
</div>
<p class="note">In flight and queued are now; avg slots, req/s and shed/min are weighted over about the last minute. Users are validated identities (no credential is kept); the heaviest hold and wait for the most slots.</p>
<h2>The last five minutes</h2>
<div class="grid two">
  ${figure('chart-slots', 'Admission slots', 'Most requests in flight and queued per 2 s; the limit follows the database under the ceiling. Bands: the worst breaker and database state in each 2 s.')}
  ${figure('chart-requests', 'Requests per second, by outcome', 'Requests answered by the upstream and those the gateway shed, by reason.')}
  ${figure('chart-latency', 'Latency (log scale)', 'Queue wait (time to get a slot) and upstream latency (to the response head), p50 and p99 per 2 s.')}
  <div id="db-chart">${figure('chart-db', 'Database connections', 'Client connections on the PostgreSQL server, what it allows, and the admission limit.')}</div>
  <section id="db-embedded" hidden><h2>Database</h2><p><b>Embedded mode: no database URL.</b> The gateway cannot see PostgreSQL here: no connection
    counts against <code>max_connections</code>, no outage guard (requests reach the upstream while its database is down), no reaper for leaked
    connections and no session purge. The limit stays a fixed <b id="embedded-limit">-</b> and sessions are validated through the upstream.</p>
    <p class="note">Start the gateway with <code>--database-url</code> (or <code>DATABASE_URL</code>) to see and guard the database.</p></section>
</div>
<div class="grid cards">
  <section><h2>Session cache</h2><dl><dt>L1 hits</dt><dd id="l1-hits">-</dd><dt>L2 hits</dt><dd id="l2-hits">-</dd><dt>misses</dt><dd id="misses">-</dd>
    <dt>validator calls</dt><dd id="validator-calls">-</dd><dt>validator errors</dt><dd id="validator-errors">-</dd><dt>validator</dt><dd id="validator">-</dd>
    <dt>Redis (L2)</dt><dd id="l2-state">-</dd></dl></section>
  <section id="db-details"><h2>Database now</h2><div class="big"><span id="db-connections">-</span> / <span id="db-max">-</span></div>
    <div class="bar"><div id="db-bar"></div></div><dl><dt>level</dt><dd id="db-level">-</dd><dt>by state</dt><dd id="db-states">-</dd>
    <dt>gateway pool</dt><dd id="db-pool">-</dd><dt>outages</dt><dd id="db-outages">-</dd><dt>reaped</dt><dd id="db-reaped">-</dd><dt>sessions purged</dt><dd id="db-purged">-</dd></dl></section>
  <section><h2>Requests since start</h2><div class="big" id="requests">-</div>
    <dl><dt>2xx</dt><dd id="status-2xx">-</dd><dt>3xx</dt><dd id="status-3xx">-</dd><dt>4xx</dt><dd id="status-4xx">-</dd><dt>5xx</dt><dd id="status-5xx">-</dd>
    <dt>upstream errors</dt><dd id="upstream-errors">-</dd><dt>shed</dt><dd id="shed-total">-</dd></dl></section>
  <section><h2>Breaker and database changes</h2><ul class="changes" id="changes"></ul></section>
  <section><h2>Gateway</h2><dl><dt>semaphore</dt><dd id="semaphore">-</dd><dt>client connections</dt><dd id="connections">-</dd>
    <dt>connections refused</dt><dd id="refused">-</dd></dl></section>
</div>`;

/** Sends the status page (see the top of this file), polling `status.json` every 2 s. */
export function sendStatusPage(res: ServerResponse): void {
  const nonce = randomBytes(16).toString('base64');
  const html =
    `<!doctype html><html lang="en"><head><meta charset="utf-8">` +
    `<meta name="viewport" content="width=device-width, initial-scale=1"><title>Sluice gateway status</title>` +
    `<style nonce="${nonce}">${STYLE}</style></head><body>${BODY}` +
    `<script nonce="${nonce}">${SCRIPT}</script></body></html>`;
  res.writeHead(200, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'content-security-policy': `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; img-src data:; base-uri 'none'; frame-ancestors 'none'`,
  });
  res.end(html);
}
