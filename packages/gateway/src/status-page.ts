import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';

/** Where the status page lives; its JSON is at `${STATUS_PATH}.json`. */
export const STATUS_PATH = '/sluice/status';

const STYLE = `
:root { color-scheme: light dark; --ok: #1a7f37; --warn: #b7791f; --bad: #c53030; --muted: #6b7280;
  --card: rgba(127,127,127,.08); --bar: rgba(127,127,127,.2); }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; padding: 24px; }
header { display: flex; align-items: baseline; gap: 16px; flex-wrap: wrap; margin-bottom: 20px; }
h1 { font-size: 20px; margin: 0; }
.muted { color: var(--muted); }
.badge { padding: 2px 10px; border-radius: 999px; font-weight: 600; color: #fff; background: var(--muted); }
.badge.ok { background: var(--ok); } .badge.warn { background: var(--warn); } .badge.bad { background: var(--bad); }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 16px; }
section { background: var(--card); border-radius: 10px; padding: 16px; }
h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .06em; margin: 0 0 10px; color: var(--muted); }
.big { font-size: 32px; font-weight: 650; font-variant-numeric: tabular-nums; }
.bar { height: 8px; border-radius: 4px; background: var(--bar); overflow: hidden; margin: 8px 0; }
.bar > div { height: 100%; width: 0; background: var(--ok); transition: width .4s; }
dl { display: grid; grid-template-columns: 1fr auto; gap: 2px 12px; margin: 8px 0 0; }
dt { color: var(--muted); } dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; }
svg { width: 100%; height: 60px; display: block; margin-top: 8px; }
#error { display: none; color: var(--bad); font-weight: 600; }
`;

const SCRIPT = `
const $ = (id) => document.getElementById(id);
const history = [];
const fmt = (n) => n === null || n === undefined ? '-' : typeof n === 'number' ? n.toLocaleString('en-US') : String(n);
const pct = (x) => x === null || x === undefined ? '-' : (x * 100).toFixed(1) + '%';
function set(id, value) { const el = $(id); if (el) el.textContent = value; }
function bar(id, used, total) {
  const el = $(id); if (!el) return;
  const share = total > 0 ? Math.min(1, used / total) : 0;
  el.style.width = (share * 100).toFixed(1) + '%';
  el.style.background = share >= 0.9 ? 'var(--bad)' : share >= 0.7 ? 'var(--warn)' : 'var(--ok)';
}
function badge(id, text, level) { const el = $(id); el.textContent = text; el.className = 'badge ' + level; }
function spark(series, limit) {
  const w = 300, h = 60, n = series.length; if (n < 2) return '';
  const max = Math.max(1, limit, ...series.map((p) => p.inFlight + p.queued));
  const path = (key) => series.map((p, i) => (i ? 'L' : 'M') + (i * w / (n - 1)).toFixed(1) + ' ' +
    (h - (key(p) / max) * h).toFixed(1)).join(' ');
  return '<path d="' + path((p) => p.inFlight) + '" fill="none" stroke="var(--ok)" stroke-width="2"/>' +
    '<path d="' + path((p) => p.inFlight + p.queued) + '" fill="none" stroke="var(--warn)" stroke-width="1.5" stroke-dasharray="4 3"/>';
}
function render(s) {
  const a = s.admission, c = s.cache, d = s.database, r = s.requests;
  badge('state', s.state, s.state === 'running' ? 'ok' : 'warn');
  badge('breaker', s.breaker, s.breaker === 'closed' ? 'ok' : s.breaker === 'open' ? 'bad' : 'warn');
  set('upstream', s.upstream); set('version', 'v' + s.version);
  set('uptime', Math.round((s.at - s.startedAt) / 1000) + ' s');
  set('in-flight', fmt(a.inFlight)); set('limit', fmt(a.limit)); bar('in-flight-bar', a.inFlight, a.limit);
  set('limit-source', a.limitSource + ', ' + a.semaphore + (s.redis && s.redis.mode === 'cluster' ? ' cluster' : '') + ' semaphore');
  set('queued', fmt(a.queued)); set('queued-interactive', fmt(a.byClass.interactive.queued));
  set('queued-bulk', fmt(a.byClass.bulk.queued)); set('in-flight-interactive', fmt(a.byClass.interactive.inFlight));
  set('in-flight-bulk', fmt(a.byClass.bulk.inFlight)); set('rejected', fmt(a.rejected));
  set('hit-ratio', pct(c.hitRatio)); bar('hit-ratio-bar', c.hitRatio || 0, 1);
  set('l1-hits', fmt(c.l1Hits)); set('l2-hits', fmt(c.l2Hits)); set('misses', fmt(c.misses));
  set('validator-calls', fmt(c.validatorCalls)); set('l2-state', c.l2State); set('validator', c.validator);
  if (d) {
    const usable = d.maxConnections === null ? null : d.maxConnections - (d.reservedConnections || 0);
    set('db-connections', fmt(d.connections)); set('db-max', fmt(usable)); set('db-budget', fmt(a.limit));
    bar('db-bar', d.connections || 0, usable || 0); set('db-level', d.level);
    set('db-states', Object.entries(d.byState).map(([k, v]) => k + ': ' + v).join(', ') || '-');
    set('db-reaped', d.reaped === null ? 'off' : fmt(d.reaped)); set('db-purged', d.purged === null ? 'off' : fmt(d.purged));
  } else {
    set('db-connections', 'n/a'); set('db-max', '-'); set('db-budget', fmt(a.limit)); set('db-level', 'no database URL');
  }
  set('requests', fmt(r.total));
  for (const k of ['2xx', '3xx', '4xx', '5xx']) set('status-' + k, fmt(r.byStatus[k] || 0));
  set('upstream-errors', fmt(r.upstreamErrors));
  history.push({ inFlight: a.inFlight, queued: a.queued }); if (history.length > 60) history.shift();
  $('spark').innerHTML = spark(history, a.limit);
  set('updated', new Date(s.at).toLocaleTimeString());
}
async function tick() {
  try {
    const res = await fetch(location.pathname.replace(/\\/$/, '') + '.json', { cache: 'no-store' });
    if (!res.ok) throw new Error('HTTP ' + res.status);
    render(await res.json());
    $('error').style.display = 'none';
    document.body.dataset.loaded = 'true';
  } catch (e) {
    $('error').textContent = 'status unavailable: ' + e.message; $('error').style.display = 'block';
  } finally { setTimeout(tick, REFRESH_MS); }
}
tick();
`;

const BODY = `
<header>
  <h1>Sluice gateway</h1><span id="state" class="badge">…</span>
  <span class="muted">upstream <b id="upstream">…</b> · up <span id="uptime">…</span> · <span id="version"></span>
  · updated <span id="updated">never</span></span>
  <span id="error"></span>
</header>
<main>
  <section><h2>In flight / budget</h2>
    <div class="big"><span id="in-flight">-</span> / <span id="limit">-</span></div>
    <div class="bar"><div id="in-flight-bar"></div></div>
    <dl><dt>interactive</dt><dd id="in-flight-interactive">-</dd><dt>bulk</dt><dd id="in-flight-bulk">-</dd>
    <dt>limit from</dt><dd id="limit-source">-</dd></dl>
    <svg id="spark" viewBox="0 0 300 60" preserveAspectRatio="none" aria-label="in flight and queued, last 60 samples"></svg>
  </section>
  <section><h2>Queue</h2>
    <div class="big" id="queued">-</div>
    <dl><dt>interactive</dt><dd id="queued-interactive">-</dd><dt>bulk</dt><dd id="queued-bulk">-</dd>
    <dt>rejected (503)</dt><dd id="rejected">-</dd></dl>
  </section>
  <section><h2>Circuit breaker</h2>
    <div class="big"><span id="breaker" class="badge">…</span></div>
  </section>
  <section><h2>Session cache hit ratio</h2>
    <div class="big" id="hit-ratio">-</div>
    <div class="bar"><div id="hit-ratio-bar"></div></div>
    <dl><dt>L1 hits</dt><dd id="l1-hits">-</dd><dt>L2 hits</dt><dd id="l2-hits">-</dd><dt>misses</dt><dd id="misses">-</dd>
    <dt>validator calls</dt><dd id="validator-calls">-</dd><dt>validator</dt><dd id="validator">-</dd>
    <dt>Redis (L2)</dt><dd id="l2-state">-</dd></dl>
  </section>
  <section><h2>Database connections</h2>
    <div class="big"><span id="db-connections">-</span> / <span id="db-max">-</span></div>
    <div class="bar"><div id="db-bar"></div></div>
    <dl><dt>budget (admitted at once)</dt><dd id="db-budget">-</dd><dt>level</dt><dd id="db-level">-</dd>
    <dt>by state</dt><dd id="db-states">-</dd><dt>reaped</dt><dd id="db-reaped">-</dd><dt>sessions purged</dt><dd id="db-purged">-</dd></dl>
  </section>
  <section><h2>Requests</h2>
    <div class="big" id="requests">-</div>
    <dl><dt>2xx</dt><dd id="status-2xx">-</dd><dt>3xx</dt><dd id="status-3xx">-</dd><dt>4xx</dt><dd id="status-4xx">-</dd>
    <dt>5xx</dt><dd id="status-5xx">-</dd><dt>upstream errors</dt><dd id="upstream-errors">-</dd></dl>
  </section>
</main>`;

/**
 * Sends the self-refreshing status page: one HTML document with inline style and script (no
 * external assets; a nonce-based Content-Security-Policy), polling `status.json` every
 * `refreshMs`.
 */
export function sendStatusPage(res: ServerResponse, refreshMs = 2_000): void {
  const nonce = randomBytes(16).toString('base64');
  const html =
    `<!doctype html><html lang="en"><head><meta charset="utf-8">` +
    `<meta name="viewport" content="width=device-width, initial-scale=1"><title>Sluice gateway status</title>` +
    `<style nonce="${nonce}">${STYLE}</style></head><body>${BODY}` +
    `<script nonce="${nonce}">const REFRESH_MS = ${Math.max(250, Math.floor(refreshMs))};${SCRIPT}</script></body></html>`;
  res.writeHead(200, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'content-security-policy': `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; img-src data:; base-uri 'none'; frame-ancestors 'none'`,
  });
  res.end(html);
}
