// Ops web UI: fills the server-rendered pages from the JSON API.
// No dependencies and no build step: the server embeds this file with its
// brotli and gzip forms (go generate ./web).
'use strict';

const $ = (s, el = document) => el.querySelector(s);
const $$ = (s, el = document) => [...el.querySelectorAll(s)];
const body = document.body;
const can = p => (' ' + (body.dataset.can || '') + ' ').includes(' ' + p + ' ');
const SVG = 'http://www.w3.org/2000/svg';

// h builds an element: h('td', {class: 'n', text: '3'}, child...).
function h(tag, attrs, ...kids) {
  const svg = ['svg', 'g', 'path', 'line', 'rect', 'text', 'circle', 'title', 'polyline'].includes(tag);
  const el = svg ? document.createElementNS(SVG, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) if (k != null) el.append(k);
  return el;
}

// api fetches JSON from Ops; errors carry the field the server named.
async function api(path, opts = {}) {
  const init = {credentials: 'same-origin', ...opts, headers: {Accept: 'application/json', ...(opts.headers || {})}};
  if (init.method && init.method !== 'GET') {
    init.headers['X-CSRF-Token'] = body.dataset.csrf;
    if (init.body && typeof init.body !== 'string') {
      init.body = JSON.stringify(init.body);
      init.headers['Content-Type'] = 'application/json';
    }
  }
  const res = await fetch(path, init);
  if (res.status === 401) {
    location.href = '/login?next=' + encodeURIComponent(location.pathname + location.search);
    throw new Error('signed out');
  }
  if (res.status === 204) return null;
  const ct = res.headers.get('Content-Type') || '';
  const data = ct.includes('json') ? await res.json() : await res.text();
  if (!res.ok) {
    const e = new Error(data && data.error ? (data.field ? data.field + ': ' : '') + data.error : res.status + ' ' + res.statusText);
    e.status = res.status;
    throw e;
  }
  return data;
}

function showError(e) {
  const el = $('#error');
  if (!el) return;
  el.textContent = e ? String(e.message || e) : '';
  el.hidden = !e;
}
const guard = f => (...a) => Promise.resolve(f(...a)).catch(showError);

// Numbers.
const num = x => x == null ? '–' : Number(x).toLocaleString('en-US', {maximumFractionDigits: 2});
function short(x) {
  if (x == null) return '–';
  const a = Math.abs(x);
  if (a >= 1e9) return (x / 1e9).toFixed(1).replace(/\.0$/, '') + 'B';
  if (a >= 1e6) return (x / 1e6).toFixed(1).replace(/\.0$/, '') + 'M';
  if (a >= 1e4) return (x / 1e3).toFixed(1).replace(/\.0$/, '') + 'k';
  return num(Math.round(x * 100) / 100);
}
const pct = x => x == null ? '–' : num(Math.round(x * 10) / 10) + '%';
function dur(s) {
  if (s == null) return '–';
  s = Math.round(s);
  if (s < 60) return s + 's';
  const m = Math.floor(s / 60), r = s % 60;
  if (m < 60) return m + 'm ' + String(r).padStart(2, '0') + 's';
  return Math.floor(m / 60) + 'h ' + String(m % 60).padStart(2, '0') + 'm';
}
const when = t => t && !String(t).startsWith('0001') ? new Date(t).toLocaleString() : '';

// CSV: RFC 4180, built from what a table shows.
function csvText(cols, rows) {
  const q = v => {
    const s = v == null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
    return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  };
  return [cols.map(c => q(c.label)), ...rows.map(r => cols.map(c => q(c.value ? c.value(r) : r[c.key])))].map(l => l.join(',')).join('\r\n') + '\r\n';
}
function download(name, text) {
  const a = h('a', {href: URL.createObjectURL(new Blob([text], {type: 'text/csv'})), download: name});
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

// table renders rows with sortable headers and a CSV download of the rows.
// cols: [{key, label, num, fmt(v, row), value(row), bar, link(row)}].
function table(cols, rows, opts = {}) {
  let sortKey = null, desc = true;
  const wrap = h('div', {class: 'tablewrap'});
  const draw = () => {
    const sorted = rows.slice();
    if (sortKey) {
      const c = cols.find(c => c.key === sortKey);
      const v = r => c.value ? c.value(r) : r[c.key];
      sorted.sort((a, b) => {
        const x = v(a), y = v(b);
        const o = typeof x === 'number' && typeof y === 'number' ? x - y : String(x ?? '').localeCompare(String(y ?? ''));
        return desc ? -o : o;
      });
    }
    const max = Math.max(1, ...rows.map(r => Number(r[opts.bar]) || 0));
    const head = h('tr', {}, cols.map(c => h('th', {scope: 'col', class: c.num ? 'n' : null, 'aria-sort': sortKey === c.key ? (desc ? 'descending' : 'ascending') : null},
      h('button', {type: 'button', text: c.label, onclick: () => { desc = sortKey === c.key ? !desc : !!c.num; sortKey = c.key; draw(); }}))));
    const trs = sorted.map(r => h('tr', {}, cols.map((c, i) => {
      const v = c.value ? c.value(r) : r[c.key];
      const txt = c.fmt ? c.fmt(v, r) : v == null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
      const td = h('td', {class: c.num ? 'n' : null});
      if (i === 0 && opts.bar) {
        const bar = h('span', {class: 'bar'});
        bar.style.width = (100 * (Number(r[opts.bar]) || 0) / max).toFixed(1) + '%';
        td.classList.add('barcell');
        td.append(bar);
      }
      if (c.link) td.append(c.link(r, txt));
      else td.append(txt);
      return td;
    })));
    const t = h('table', {}, opts.caption ? h('caption', {text: opts.caption}) : null, h('thead', {}, head),
      h('tbody', {}, trs.length ? trs : h('tr', {}, h('td', {colspan: cols.length, class: 'muted', text: opts.empty || 'Nothing yet.'}))));
    // Tables of the analytics API link to its CSV (every row) instead.
    const tools = opts.csv === false ? '' : h('div', {class: 'tabletools'},
      h('button', {type: 'button', class: 'csv', text: 'Download CSV', onclick: () => download((opts.name || 'table') + '.csv', csvText(cols, sorted))}));
    wrap.replaceChildren(t, tools);
  };
  draw();
  return wrap;
}

// chart draws series as an SVG line or bar chart.
// series: [{name, points: [[x (ms or Date), y]], dashed}]; opts: {kind, fmt, height, marks: [{at (ms), label}]}.
function chart(el, series, opts = {}) {
  const W = Math.max(320, el.clientWidth || 640), H = opts.height || 220, L = 52, R = 12, T = 12, B = 28;
  const pts = series.flatMap(s => s.points);
  const svg = h('svg', {viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': opts.label || 'chart'});
  if (!pts.length) {
    svg.append(h('text', {x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'muted', text: 'No data in this range'}));
    el.replaceChildren(svg);
    return;
  }
  const xs = pts.map(p => +p[0]), ys = pts.map(p => +p[1]).filter(Number.isFinite);
  let x0 = opts.from ?? Math.min(...xs), x1 = opts.to ?? Math.max(...xs);
  if (x1 === x0) x1 = x0 + 1;
  let y1 = Math.max(0, ...ys), y0 = Math.min(0, ...ys);
  if (y1 === y0) y1 = y0 + 1;
  const step = niceStep((y1 - y0) / 4);
  y1 = Math.ceil(y1 / step) * step;
  const X = x => L + (W - L - R) * (x - x0) / (x1 - x0), Y = y => T + (H - T - B) * (1 - (y - y0) / (y1 - y0));
  const f = opts.fmt || short;
  const g = h('g', {class: 'axis'});
  for (let y = y0; y <= y1 + step / 2; y += step) {
    g.append(h('line', {x1: L, x2: W - R, y1: Y(y), y2: Y(y)}), h('text', {x: L - 6, y: Y(y) + 4, 'text-anchor': 'end', text: f(y)}));
  }
  const n = Math.min(6, new Set(xs).size);
  const span = x1 - x0;
  for (let i = 0; i < n; i++) {
    const x = x0 + span * i / Math.max(1, n - 1);
    const d = new Date(x);
    const label = opts.xfmt ? opts.xfmt(x) : span > 2 * 86400e3 ? d.toLocaleDateString(undefined, {month: 'short', day: 'numeric'}) : d.toLocaleTimeString(undefined, {hour: '2-digit', minute: '2-digit'});
    g.append(h('text', {x: X(x), y: H - 8, 'text-anchor': i === 0 ? 'start' : i === n - 1 ? 'end' : 'middle', text: label}));
  }
  svg.append(g);
  series.forEach((s, si) => {
    const cls = 's' + (si % 6) + (s.dashed ? ' dashed' : '');
    if (opts.kind === 'bar') {
      const bw = Math.max(1, (W - L - R) / Math.max(1, s.points.length) * 0.8 / series.length);
      for (const [x, y] of s.points) {
        const r = h('rect', {class: cls, x: X(+x) - bw * series.length / 2 + bw * si, y: Y(Math.max(0, y)), width: bw, height: Math.abs(Y(0) - Y(y))},
          h('title', {text: `${s.name}: ${f(y)} (${new Date(+x).toLocaleString()})`}));
        svg.append(r);
      }
    } else {
      const d = s.points.filter(p => Number.isFinite(+p[1])).map((p, i) => (i ? 'L' : 'M') + X(+p[0]).toFixed(1) + ' ' + Y(+p[1]).toFixed(1)).join('');
      svg.append(h('path', {class: 'line ' + cls, d}));
      if (s.points.length <= 120) for (const [x, y] of s.points) {
        svg.append(h('circle', {class: cls, cx: X(+x), cy: Y(+y), r: 3}, h('title', {text: `${s.name}: ${f(y)} (${new Date(+x).toLocaleString()})`})));
      }
    }
  });
  // Marks (deployments): a dashed vertical line each, named on hover.
  const marks = (opts.marks || []).filter(m => m.at >= x0 && m.at <= x1);
  for (const m of marks) {
    svg.append(h('g', {class: 'mark', 'data-mark': m.label},
      h('line', {x1: X(m.at), x2: X(m.at), y1: T, y2: H - B}),
      h('path', {d: `M${X(m.at) - 5} ${T}L${X(m.at) + 5} ${T}L${X(m.at)} ${T + 7}Z`}),
      h('title', {text: `${m.label} (${new Date(m.at).toLocaleString()})`})));
  }
  const legend = series.length > 1 ? h('ul', {class: 'legend'}, series.map((s, i) => h('li', {class: 's' + (i % 6)}, h('span', {class: 'swatch'}), s.name))) : null;
  el.replaceChildren(svg, legend || '');
}
// deployMarks are the deployments recorded in [from, to) (ms) as chart
// marks; none when the deploy module is off or the user may not read it.
async function deployMarks(from, to) {
  if (!can('deploy:read')) return []; // a shared dashboard has no account to ask with
  try {
    const r = await api('/api/v1/deployments?' + new URLSearchParams({from: new Date(from).toISOString().replace(/\.\d+Z$/, 'Z'), to: new Date(to).toISOString().replace(/\.\d+Z$/, 'Z'), limit: 200}));
    return (r.deployments || []).map(d => ({at: Date.parse(d.at), label: `${d.service}/${d.env} ${d.version} ${d.status.replace('_', ' ')}`}));
  } catch (e) {
    return [];
  }
}
function niceStep(x) {
  if (!(x > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(x))), m = x / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

// Theme: the cookie lets the server render the chosen theme at once.
function initTheme() {
  const b = $('#theme');
  if (!b) return;
  b.addEventListener('click', () => {
    const root = document.documentElement;
    const dark = root.dataset.theme ? root.dataset.theme === 'dark' : matchMedia('(prefers-color-scheme: dark)').matches;
    root.dataset.theme = dark ? 'light' : 'dark';
    document.cookie = 'ops_theme=' + root.dataset.theme + '; path=/; max-age=31536000; SameSite=Lax';
  });
}

// ---------------------------------------------------------------- dashboard

const METRICS = [
  ['visitors', 'Unique visitors', short], ['visits', 'Total visits', short], ['pageviews', 'Total pageviews', short],
  ['views_per_visit', 'Views per visit', num], ['bounce_rate', 'Bounce rate', pct], ['visit_duration', 'Visit duration', dur],
];
const DIMLABEL = {
  source: 'Source', referrer: 'Referrer', utm_source: 'UTM source', utm_medium: 'UTM medium', utm_campaign: 'UTM campaign',
  utm_term: 'UTM term', utm_content: 'UTM content', page: 'Top pages', entry_page: 'Entry pages', exit_page: 'Exit pages',
  country: 'Countries', hostname: 'Hostnames', browser: 'Browser', os: 'OS', device: 'Device', screen: 'Screen size', event: 'Event',
};
const OPS = [['!~', 'does not contain'], ['==', 'is'], ['!=', 'is not'], ['~', 'contains']];
// A value in a filter is written with \ before ; | * and \ (docs/analytics.md).
const escapeValue = v => v.replace(/[\\;|*]/g, c => '\\' + c);
const unescapeValue = v => v.replace(/\\(.)/g, '$1');
// splitEscaped splits s at seps not escaped by a backslash.
function splitEscaped(s, sep) {
  const out = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && i + 1 < s.length) { cur += s[i] + s[++i]; continue; }
    if (s[i] === sep) { out.push(cur); cur = ''; continue; }
    cur += s[i];
  }
  out.push(cur);
  return out;
}

function dashboard() {
  const url = new URL(location.href);
  const st = {
    period: url.searchParams.get('period') || '30d', from: url.searchParams.get('from') || '', to: url.searchParams.get('to') || '',
    site: url.searchParams.get('site') || '', compare: url.searchParams.get('compare') === '1',
    filters: splitEscaped(url.searchParams.get('filters') || '', ';').filter(Boolean), metric: url.searchParams.get('metric') || 'visitors',
    kind: 'line',
  };
  const save = () => {
    const u = new URL(location.href);
    for (const [k, v] of Object.entries({period: st.period, from: st.period === 'custom' ? st.from : '', to: st.period === 'custom' ? st.to : '',
      site: st.site, compare: st.compare ? '1' : '', filters: st.filters.join(';'), metric: st.metric === 'visitors' ? '' : st.metric})) {
      if (v) u.searchParams.set(k, v); else u.searchParams.delete(k);
    }
    history.replaceState(null, '', u);
  };
  const q = (extra = {}) => {
    const p = new URLSearchParams({period: st.period});
    if (st.period === 'custom') { p.set('from', st.from); p.set('to', st.to); }
    if (st.site) p.set('site', st.site);
    if (st.filters.length) p.set('filters', st.filters.join(';'));
    for (const [k, v] of Object.entries(extra)) if (v !== '' && v != null) p.set(k, v);
    return p.toString();
  };
  // A shared link reads the same reports from its own routes.
  const A = body.dataset.api || '/api/v1/analytics/';
  const shared = body.dataset.shared === '1';

  // Controls.
  const period = $('#period'), compare = $('#compare');
  period.value = st.period;
  compare.checked = st.compare;
  $('#from').value = st.from;
  $('#to').value = st.to;
  $('#custom').hidden = st.period !== 'custom';
  period.addEventListener('change', () => {
    st.period = period.value;
    $('#custom').hidden = st.period !== 'custom';
    if (st.period === 'custom') {
      if (!$('#from').value) {
        const d = new Date();
        $('#to').value = d.toISOString().slice(0, 10);
        d.setUTCDate(d.getUTCDate() - 13);
        $('#from').value = d.toISOString().slice(0, 10);
      }
      $('#from').focus();
      return;
    }
    refresh();
  });
  $('#controls').addEventListener('submit', e => {
    e.preventDefault();
    st.from = $('#from').value;
    st.to = $('#to').value;
    refresh();
  });
  compare.addEventListener('change', () => { st.compare = compare.checked; refresh(); });
  if (!shared) {
    $('#site').addEventListener('change', e => { st.site = e.target.value; refresh(); });
    api(A + 'values?dimension=hostname').then(r => {
      for (const v of r.values || []) $('#site').append(h('option', {value: v, text: v}));
      $('#site').value = st.site;
    }).catch(() => {});
  }

  // Filters.
  const addFilter = f => { if (!st.filters.includes(f)) st.filters.push(f); refresh(); };
  const drawFilters = () => {
    $('#filters').replaceChildren(...st.filters.map((f, i) => {
      const m = f.match(/^([^=!~]+)(==|!=|!~|~)(.*)$/) || [f, f, '', ''];
      const opName = (OPS.find(o => o[0] === m[2]) || ['', m[2]])[1];
      return h('li', {class: 'chip'}, h('span', {text: `${m[1]} ${opName} ${splitEscaped(m[3], '|').map(unescapeValue).join(' or ')}`}),
        h('button', {type: 'button', 'aria-label': 'Remove filter ' + f, text: '×', onclick: () => { st.filters.splice(i, 1); refresh(); }}));
    }));
  };
  let sugg = 0;
  const suggest = () => {
    if (shared) return;
    const my = ++sugg;
    api(A + 'values?' + new URLSearchParams({dimension: $('#fdim').value, q: $('#fval').value})).then(r => {
      if (my === sugg) $('#suggest').replaceChildren(...(r.values || []).map(v => h('option', {value: v})));
    }).catch(() => {});
  };
  $('#fval').addEventListener('input', suggest);
  $('#fdim').addEventListener('change', suggest);
  $('#addfilter').addEventListener('submit', e => {
    e.preventDefault();
    addFilter($('#fdim').value + $('#fop').value + $('#fval').value);
    $('#fval').value = '';
  });

  // Chart controls.
  $$('.kind').forEach(b => b.addEventListener('click', () => {
    st.kind = b.dataset.kind;
    $$('.kind').forEach(x => x.setAttribute('aria-pressed', String(x === b)));
    drawChart();
  }));
  let ts = null;
  const drawChart = () => {
    if (!ts) return;
    const m = METRICS.find(m => m[0] === st.metric) || METRICS[0];
    $('#charttitle').textContent = m[1];
    const series = [{name: m[1], points: ts.results.map(r => [Date.parse(r.date), r[m[0]] ?? 0])}];
    // The period before, bucket for bucket, dashed under the current one.
    const prev = ts.comparison && ts.comparison.results;
    if (prev) series.push({name: 'previous period', dashed: true, points: ts.results.map((r, i) => [Date.parse(r.date), prev[i] ? prev[i][m[0]] ?? 0 : 0])});
    chart($('#chart'), series, {kind: st.kind, fmt: m[2], label: m[1] + ' by ' + ts.interval, marks: ts.marks});
  };

  // Breakdown panels: one tab per dimension.
  const panels = $$('.panel').map(sec => {
    const dims = sec.dataset.dims.split(' ');
    const p = {sec, dims, dim: dims[0], limit: 10};
    const tabs = h('div', {class: 'tabs', role: 'tablist'}, dims.map(d => h('button', {type: 'button', role: 'tab', 'data-dim': d, text: DIMLABEL[d] || d,
      'aria-selected': String(d === p.dim), onclick: () => { p.dim = d; p.limit = 10; $$('[role=tab]', tabs).forEach(t => t.setAttribute('aria-selected', String(t.dataset.dim === d))); loadPanel(p); }})));
    p.body = h('div', {class: 'body'});
    p.csv = h('a', {class: 'csv', download: '', text: 'Download CSV'});
    p.more = h('button', {type: 'button', class: 'more', text: 'Show more', onclick: () => { p.limit = 100; loadPanel(p); }});
    sec.replaceChildren(h('div', {class: 'cardhead'}, h('h2', {text: sec.dataset.title}), dims.length > 1 ? tabs : null), p.body, h('div', {class: 'tabletools'}, p.more, p.csv));
    return p;
  });
  const loadPanel = async p => {
    const r = await api(A + 'breakdown?' + q({property: p.dim, limit: p.limit}));
    p.csv.href = A + 'breakdown?' + q({property: p.dim, limit: 1000, format: 'csv'});
    p.csv.setAttribute('download', 'breakdown-' + p.dim + '.csv');
    p.csv.setAttribute('aria-label', 'Download ' + (DIMLABEL[p.dim] || p.dim) + ' as CSV');
    p.more.hidden = p.limit >= 100 || r.results.length < p.limit;
    const eventDim = ['page', 'event'].includes(p.dim) || p.dim.startsWith('prop:');
    const cols = [
      {key: 'value', label: DIMLABEL[p.dim] || p.dim, link: (row, txt) => h('button', {type: 'button', class: 'linkish', title: 'Filter by this value',
        text: txt || '(none)', onclick: () => addFilter(p.dim + '==' + escapeValue(row.value))})},
      {key: 'visitors', label: 'Visitors', num: true, fmt: short},
    ];
    if (eventDim) cols.push({key: 'pageviews', label: p.dim === 'event' ? 'Events' : 'Pageviews', num: true, fmt: short, value: r => p.dim === 'event' ? (r.events || r.pageviews) : r.pageviews});
    else cols.push({key: 'visits', label: 'Visits', num: true, fmt: short}, {key: 'bounce_rate', label: 'Bounce', num: true, fmt: pct});
    p.body.replaceChildren(table(cols, r.results, {bar: 'visitors', csv: false, empty: 'No data in this range.'}));
  };

  const loadStats = async () => {
    const r = await api(A + 'aggregate?' + q({compare: st.compare ? 'previous_period' : ''}));
    const change = r.comparison && r.comparison.change || {};
    $('#stats').replaceChildren(...METRICS.map(([k, label, f]) => {
      const c = change[k];
      const good = k === 'bounce_rate' ? c < 0 : c > 0;
      return h('button', {type: 'button', class: 'stat', 'aria-pressed': String(st.metric === k), 'data-metric': k,
        onclick: () => { st.metric = k; save(); $$('.stat').forEach(s => s.setAttribute('aria-pressed', String(s.dataset.metric === k))); drawChart(); }},
      h('span', {class: 'label', text: label}), h('span', {class: 'value', text: f(r.results[k])}),
      c != null ? h('span', {class: 'change ' + (c === 0 ? '' : good ? 'up' : 'down'), text: (c > 0 ? '↑ ' : c < 0 ? '↓ ' : '') + pct(Math.abs(c))}) : null);
    }));
  };
  const loadTS = async () => {
    ts = await api(A + 'timeseries?' + q({compare: st.compare ? 'previous_period' : ''}));
    $('#tscsv').href = A + 'timeseries?' + q({format: 'csv'});
    const xs = ts.results.map(r => Date.parse(r.date));
    ts.marks = xs.length ? await deployMarks(xs[0], xs[xs.length - 1] + (xs.length > 1 ? xs[1] - xs[0] : 3600e3)) : [];
    drawChart();
  };
  const loadGoals = async () => {
    const sec = $('#goals');
    const r = await api(A + 'goals?' + q());
    $('.csv', sec).href = A + 'goals?' + q({format: 'csv'});
    $('.body', sec).replaceChildren(table([
      {key: 'goal', label: 'Goal'}, {key: 'visitors', label: 'Uniques', num: true, fmt: short},
      {key: 'events', label: 'Total', num: true, fmt: short}, {key: 'conversion_rate', label: 'CR', num: true, fmt: pct},
    ], r.results || [], {bar: 'visitors', csv: false, empty: 'No goals: set analytics.goals (docs/analytics.md).'}));
  };
  const loadFunnel = async () => {
    const sec = $('#funnel');
    const name = $('#funnelname').value, steps = $('#funnelsteps').value.trim();
    if (!name && !steps) {
      $('.body', sec).replaceChildren(h('p', {class: 'muted', text: 'Pick a funnel or write its steps, like page==/;event==Signup.'}));
      return;
    }
    const p = name ? {funnel: name} : {steps, window: $('#funnelwindow').value};
    const r = await api(A + 'funnel?' + q(p));
    $('.csv', sec).href = A + 'funnel?' + q({...p, format: 'csv'});
    const max = Math.max(1, ...r.steps.map(s => s.visitors));
    const bars = h('ol', {class: 'funnel'}, r.steps.map((s, i) => {
      const bar = h('span', {class: 'fbar'});
      bar.style.width = (100 * s.visitors / max).toFixed(1) + '%';
      return h('li', {}, h('div', {class: 'fhead'}, h('b', {text: (i + 1) + '. ' + s.step}),
        h('span', {text: `${num(s.visitors)} visitors · ${pct(s.conversion_rate)}` + (i ? ` · ${num(s.dropoff)} dropped (${pct(s.dropoff_rate)})` : '')})),
      h('div', {class: 'ftrack'}, bar));
    }));
    $('.body', sec).replaceChildren(bars);
  };
  const loadRetention = async () => {
    const sec = $('#retention');
    const iv = $('#retiv').value;
    const r = await api(A + 'retention?' + q({interval: iv}));
    $('.csv', sec).href = A + 'retention?' + q({interval: iv, format: 'csv'});
    const n = Math.max(0, ...r.cohorts.map(c => c.rates.length));
    const head = h('tr', {}, h('th', {scope: 'col', text: iv === 'week' ? 'Week of' : 'Day'}), h('th', {scope: 'col', class: 'n', text: 'Visitors'}),
      Array.from({length: n}, (_, i) => h('th', {scope: 'col', class: 'n', text: (iv === 'week' ? 'W' : 'D') + i})));
    const rows = r.cohorts.map(c => h('tr', {}, h('th', {scope: 'row', text: c.date.slice(0, 10)}), h('td', {class: 'n', text: num(c.visitors)}),
      Array.from({length: n}, (_, i) => {
        if (i >= c.rates.length) return h('td', {});
        const td = h('td', {class: 'n heat', title: `${num(c.returning[i])} of ${num(c.visitors)}`, text: pct(c.rates[i])});
        td.style.setProperty('--heat', (c.rates[i] / 100).toFixed(3));
        return td;
      })));
    $('.body', sec).replaceChildren(h('div', {class: 'tablewrap'}, h('table', {class: 'retention'}, h('thead', {}, head),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', {colspan: n + 2, class: 'muted', text: 'No visitors in this range.'}))))));
  };
  api(A + 'funnels').then(r => {
    for (const f of r.funnels || []) $('#funnelname').append(h('option', {value: f.name, text: f.name}));
    if ((r.funnels || []).length) { $('#funnelname').value = r.funnels[0].name; guard(loadFunnel)(); }
  }).catch(() => {});
  $('#funnelform').addEventListener('submit', e => { e.preventDefault(); guard(loadFunnel)(); });
  $('#retiv').addEventListener('change', guard(loadRetention));

  const realtime = () => api(A + 'realtime?' + q()).then(r => { $('#realtime').textContent = num(r.visitors); }).catch(() => {});
  setInterval(() => { if (!document.hidden) realtime(); }, 2000);

  let gen = 0;
  async function refresh() {
    save();
    drawFilters();
    const my = ++gen;
    showError(null);
    body.setAttribute('aria-busy', 'true');
    const jobs = [loadStats(), loadTS(), loadGoals(), loadRetention(), realtime(), ...panels.map(loadPanel)];
    if ($('#funnelname').value || $('#funnelsteps').value) jobs.push(loadFunnel());
    const res = await Promise.allSettled(jobs);
    if (my !== gen) return;
    const bad = res.find(r => r.status === 'rejected');
    if (bad) showError(bad.reason);
    body.setAttribute('aria-busy', 'false');
    body.dataset.loaded = String(gen);
  }
  addEventListener('resize', () => drawChart());
  refresh();
}

// ---------------------------------------------------------------- live tail

function live() {
  let es = null, paused = false, rows = [];
  const max = 500;
  const cols = [
    {key: 'seq', label: 'Seq', num: true}, {key: 'stored', label: 'Stored', fmt: when}, {key: 'subject', label: 'Subject'},
    {key: 'source', label: 'Source', value: r => r.event.source}, {key: 'data', label: 'Data', value: r => JSON.stringify(r.event.data)},
  ];
  const draw = () => $('#tail').replaceChildren(table(cols, rows, {name: 'events', empty: 'Waiting for events…'}));
  const start = () => {
    if (es) es.close();
    rows = [];
    draw();
    const needle = $('#tailq').value.toLowerCase();
    const p = new URLSearchParams({subject: $('#subject').value || 'ev.>'});
    const since = new Date(Date.now() - 60e3).toISOString();
    p.set('since', since);
    es = new EventSource('/api/v1/events/stream?' + p);
    $('#tailstate').textContent = 'connecting…';
    es.onopen = () => { $('#tailstate').textContent = 'following ' + p.get('subject'); };
    es.onerror = () => { $('#tailstate').textContent = 'reconnecting…'; };
    let pending = false;
    es.addEventListener('event', m => {
      if (paused) return;
      if (needle && !m.data.toLowerCase().includes(needle)) return;
      rows.unshift(JSON.parse(m.data));
      if (rows.length > max) rows.length = max;
      if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; draw(); }); }
    });
  };
  $('#tailform').addEventListener('submit', e => { e.preventDefault(); start(); });
  $('#pause').addEventListener('click', e => { paused = !paused; e.target.setAttribute('aria-pressed', String(paused)); e.target.textContent = paused ? 'Resume' : 'Pause'; });
  start();
}

// ---------------------------------------------------------------- views

function views() {
  let current = null;
  const list = async () => {
    const r = await api('/api/v1/views');
    const vs = r.views || [];
    $('#viewlist').replaceChildren(table([
      {key: 'name', label: 'View', link: (v, txt) => h('button', {type: 'button', class: 'linkish', text: txt, onclick: () => open(v.name)})},
      {key: 'key', label: 'Key', value: v => (v.key || []).join(', ')}, {key: 'measures', label: 'Measures', value: v => (v.measures || []).join(', ')},
      {key: 'window', label: 'Window'}, {key: 'rows', label: 'Rows', num: true, fmt: num},
      {key: 'in', label: 'Events in', num: true, fmt: num}, {key: 'lag', label: 'Lag', num: true, fmt: num},
      {key: 'errors', label: 'Errors', num: true, fmt: num}, {key: 'last_error', label: 'Last error'}, {key: 'origin', label: 'From'},
    ], vs, {name: 'views', empty: 'No views: add one in ops.yaml or with PUT /api/v1/views/<name> (docs/graph.md).'}));
    infos = vs;
    const want = new URL(location.href).searchParams.get('view');
    if (want && !current) open(want);
  };
  let infos = [];
  const open = guard(async name => {
    current = name;
    // Sort choices: the view's measures (largest first) and key fields.
    const info = infos.find(v => v.name === name) || {};
    $('#viewsort').replaceChildren(h('option', {value: '', text: 'key order'}),
      ...(info.measures || []).map(m => m.split('=')[0]).map(m => h('option', {value: '-' + m, text: m + ', largest first'})),
      ...(info.key || []).map(k => k.split('=')[0]).map(k => h('option', {value: k, text: k})),
      ...(info.window ? [h('option', {value: '-window', text: 'newest window first'})] : []));
    $('#viewrows').hidden = false;
    $('#viewname').textContent = name;
    const u = new URL(location.href);
    u.searchParams.set('view', name);
    history.replaceState(null, '', u);
    await rowsOf();
  });
  const rowsOf = async () => {
    const p = new URLSearchParams({limit: $('#viewlimit').value});
    if ($('#viewsort').value) p.set('sort', $('#viewsort').value);
    const k = $('#viewkey').value.trim();
    if (k) { const [f, v] = k.split('='); p.set('key.' + f.trim(), (v || '').trim()); }
    const base = '/api/v1/views/' + encodeURIComponent(current);
    const r = await api(base + '?' + p);
    const csv = new URLSearchParams(p);
    csv.delete('limit');
    csv.set('format', 'csv');
    $('#viewcsv').href = base + '?' + csv;
    const rows = r.rows || [];
    const keys = [...new Set(rows.flatMap(x => Object.keys(x.key || {})))];
    const ms = [...new Set(rows.flatMap(x => Object.keys(x.values || {})))];
    const cols = [...keys.map(k => ({key: 'k.' + k, label: k, value: x => (x.key || {})[k]})),
      ...(rows.some(x => x.window) ? [{key: 'window', label: 'Window', value: x => x.window}] : []),
      ...ms.map(m => ({key: 'm.' + m, label: m, num: true, fmt: num, value: x => (x.values || {})[m]})),
      {key: 'updated', label: 'Updated', fmt: when}];
    $('#rows').replaceChildren(table(cols, rows, {name: current, empty: 'No rows.'}));
  };
  $('#viewq').addEventListener('submit', e => { e.preventDefault(); guard(rowsOf)(); });
  guard(list)();
}

// ---------------------------------------------------------------- graph

function graph() {
  guard(async () => {
    const g = await api('/api/v1/graph');
    const nodes = g.nodes || [], edges = g.edges || [], sources = g.sources || [];
    // Columns: the sources, then each node one column after the furthest
    // node that feeds it (edges from the API; cycles are cut).
    const col = new Map();
    const depth = (name, seen = new Set()) => {
      if (col.has(name)) return col.get(name);
      if (seen.has(name)) return 1;
      seen.add(name);
      let d = 1;
      for (const e of edges) if (e.to === name && e.from !== name) d = Math.max(d, depth(e.from, seen) + 1);
      col.set(name, d);
      return d;
    };
    nodes.forEach(n => depth(n.name));
    const columns = [sources.map(s => ({id: 's:' + s, label: s, kind: 'source'}))];
    for (const n of nodes) (columns[col.get(n.name)] = columns[col.get(n.name)] || []).push({id: n.name, label: n.name, kind: n.kind});
    const cw = 230, rh = 52, bw = 180;
    const W = columns.length * cw + 20, H = Math.max(1, ...columns.map(c => (c || []).length)) * rh + 20;
    const pos = new Map();
    columns.forEach((c, i) => (c || []).forEach((b, j) => pos.set(b.id, {x: 10 + i * cw, y: 10 + j * rh, b})));
    const svg = h('svg', {viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': `Event graph: ${sources.length} sources, ${nodes.length} nodes`});
    const link = (from, to, label) => {
      const a = pos.get(from), b = pos.get(to);
      if (!a || !b) return;
      svg.append(h('path', {class: 'edge', d: `M${a.x + bw} ${a.y + 18} C${a.x + bw + 30} ${a.y + 18} ${b.x - 30} ${b.y + 18} ${b.x} ${b.y + 18}`}, h('title', {text: label})));
    };
    for (const n of nodes) for (const f of n.from || []) if (sources.includes(f)) link('s:' + f, n.name, f);
    for (const e of edges) link(e.from, e.to, e.subject);
    for (const {x, y, b} of pos.values()) {
      svg.append(h('g', {class: 'node ' + b.kind}, h('rect', {x, y, width: bw, height: 36, rx: 6}),
        h('text', {x: x + 8, y: y + 15, text: b.label.length > 26 ? b.label.slice(0, 25) + '…' : b.label}),
        h('text', {x: x + 8, y: y + 29, class: 'kind', text: b.kind}), h('title', {text: b.label})));
    }
    $('#graph').replaceChildren(svg);
    $('#nodes').replaceChildren(table([
      {key: 'name', label: 'Node'}, {key: 'kind', label: 'Kind'}, {key: 'from', label: 'Consumes', value: n => (n.from || []).join(' ')},
      {key: 'emits', label: 'Emits', value: n => (n.emits || []).join(' ')},
    ], nodes, {name: 'graph', empty: 'The graph is empty: add processors and views (docs/graph.md).'}));
  })();
}

// ---------------------------------------------------------------- editor

const EXAMPLES = {
  processor: 'from: [ev.track.page]\nwhere: this.data.context.page.path.has_prefix("/blog")\nmap: |\n  root.path = this.data.context.page.path\n  root.visitor = this.data.anonymousId\nto: ev.blog.view\n',
  view: 'from: [ev.track.page]\nkey:\n  path: this.data.context.page.path\nmeasures:\n  views: count\n  visitors: uniq(this.data.anonymousId)\nwindow: 1h\n',
};

function editor() {
  const kind = $('#ekind'), spec = $('#espec'), state = $('#estate');
  const u = new URL(location.href);
  kind.value = u.searchParams.get('kind') === 'view' ? 'view' : 'processor';
  spec.value = EXAMPLES[kind.value];
  let timer = 0, gen = 0;
  const json = v => v === undefined ? '' : JSON.stringify(v);
  const run = async () => {
    const my = ++gen;
    state.textContent = 'running the preview…';
    try {
      const r = await api(`/api/v1/${kind.value}s/preview?limit=${$('#elimit').value}`, {method: 'POST', body: spec.value, headers: {Accept: 'application/json', 'Content-Type': 'application/yaml'}});
      if (my !== gen) return;
      state.textContent = '';
      $('#ecount').textContent = `${r.sample} recent events of ${(r.from || []).join(' ')}`;
      const cols = [{key: 'seq', label: 'Seq', num: true}, {key: 'input', label: 'Event data', value: x => json(x.input)},
        {key: 'result', label: kind.value === 'view' ? 'Key and measure inputs' : 'Output', value: x => x.error ? `${x.stage}: ${x.error}` : x.skipped ? 'skipped' :
          kind.value === 'view' ? json(x.key) + (x.window ? ' @ ' + x.window : '') + ' ' + json(x.values) : x.to + ' ' + json(x.output)}];
      $('#epreview').replaceChildren(table(cols, r.items || [], {name: 'preview', empty: 'No recent events on these subjects.'}));
      if (kind.value === 'view') {
        const rows = r.rows || [];
        const ks = [...new Set(rows.flatMap(x => Object.keys(x.key || {})))], ms = [...new Set(rows.flatMap(x => Object.keys(x.values || {})))];
        $('#erows').replaceChildren(h('h3', {text: 'Rows the sample makes'}), table([...ks.map(k => ({key: 'k.' + k, label: k, value: x => x.key[k]})),
          ...(rows.some(x => x.window) ? [{key: 'window', label: 'Window', value: x => x.window}] : []),
          ...ms.map(m => ({key: 'm.' + m, label: m, num: true, fmt: num, value: x => x.values[m]}))], rows, {name: 'preview-rows'}));
      } else $('#erows').replaceChildren();
    } catch (e) {
      if (my !== gen) return;
      state.textContent = e.message;
      state.className = 'err';
      return;
    }
    state.className = '';
  };
  const soon = () => { clearTimeout(timer); timer = setTimeout(run, 400); };
  spec.addEventListener('input', soon);
  $('#elimit').addEventListener('change', run);
  kind.addEventListener('change', () => { spec.value = EXAMPLES[kind.value]; run(); });
  $('#editor').addEventListener('submit', async e => {
    e.preventDefault();
    const name = $('#ename').value.trim();
    try {
      const r = await api(`/api/v1/${kind.value}s/${encodeURIComponent(name)}`, {method: 'PUT', body: spec.value, headers: {Accept: 'application/json', 'Content-Type': 'application/yaml'}});
      state.className = '';
      state.replaceChildren(`${kind.value} ${name} ${r.created ? 'created' : 'replaced'}: `, h('a', {href: kind.value === 'view' ? '/ui/views?view=' + encodeURIComponent(name) : '/ui/graph', text: kind.value === 'view' ? 'see its rows' : 'see the graph'}));
    } catch (err) {
      state.className = 'err';
      state.textContent = err.message;
    }
  });
  run();
}

// ---------------------------------------------------------------- series

async function queryRange(expr, seconds, points = 240) {
  const end = Date.now() / 1000, start = end - seconds;
  queryRange.span = {from: start * 1000, to: end * 1000};
  const step = Math.max(1, Math.ceil(seconds / points));
  const r = await api('/prometheus/api/v1/query_range?' + new URLSearchParams({query: expr, start, end, step}));
  return r.data.result.map(s => ({
    name: Object.entries(s.metric).filter(([k]) => k !== '__name__').map(([k, v]) => `${k}="${v}"`).join(', ') || s.metric.__name__ || expr,
    metric: s.metric, points: s.values.map(([t, v]) => [t * 1000, parseFloat(v)]),
  }));
}

function series() {
  const run = guard(async () => {
    const expr = $('#expr').value.trim();
    const u = new URL(location.href);
    u.searchParams.set('q', expr);
    history.replaceState(null, '', u);
    const ss = await queryRange(expr, +$('#srange').value);
    const marks = await deployMarks(queryRange.span.from, queryRange.span.to);
    chart($('#schart'), ss.slice(0, 12), {label: expr, height: 280, ...queryRange.span, marks});
    const rows = ss.map(s => ({series: s.name, last: s.points.length ? s.points[s.points.length - 1][1] : null, points: s.points.length}));
    $('#stable').replaceChildren(table([{key: 'series', label: 'Series'}, {key: 'last', label: 'Last value', num: true, fmt: num}, {key: 'points', label: 'Points', num: true}],
      rows, {name: 'series', empty: 'No series matched.'}));
  });
  const q = new URL(location.href).searchParams.get('q');
  if (q) $('#expr').value = q;
  $('#promql').addEventListener('submit', e => { e.preventDefault(); run(); });
  $('#expr').addEventListener('keydown', e => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); } });
  run();
}

// ---------------------------------------------------------------- proxy

function proxy() {
  const panels = [
    ['Requests per second by status', 'sum by (code) (rate(ops_proxy_requests_total[5m]))', short],
    ['Latency p50 / p95 / p99 (seconds)', ['0.5', '0.95', '0.99'].map(q => `label_replace(histogram_quantile(${q}, sum by (le) (rate(ops_proxy_request_seconds_bucket[5m]))), "quantile", "${q}", "", "")`).join(' or '), x => num(x)],
    ['Requests per second by route', 'sum by (route) (rate(ops_proxy_requests_total[5m]))', short],
    ['Cache hit ratio (cached routes)', 'sum(rate(ops_proxy_cache_lookups_total{result=~"hit|stale|stale-if-error|revalidated"}[5m])) / sum(rate(ops_proxy_cache_lookups_total{result!="bypass"}[5m]))', x => pct(100 * x)],
    ['Blocked: ACL denials per second', 'sum by (route, rule) (rate(ops_proxy_acl_hits_total{action="deny"}[5m]))', short],
    ['Blocked: rate limited per second', 'sum by (route, by) (rate(ops_proxy_rate_limited_total[5m]))', short],
  ];
  const els = panels.map(([title, expr]) => {
    const c = h('div', {class: 'chart'}), t = h('div', {});
    const link = h('a', {href: '/ui/series?q=' + encodeURIComponent(expr), text: 'PromQL'});
    $('#ppanels').append(h('section', {class: 'card'}, h('div', {class: 'cardhead'}, h('h2', {text: title}), link), c, t));
    return {c, t};
  });
  // Top paths: what the proxy answered most (this node, up to a day back).
  const top = h('div', {});
  $('#ppanels').append(h('section', {class: 'card wide', id: 'toppaths'}, h('div', {class: 'cardhead'}, h('h2', {text: 'Top paths'})), top));
  const loadTop = async secs => {
    const r = await api('/api/v1/proxy/paths?' + new URLSearchParams({since: Math.min(secs, 86400) + 's', limit: 20}));
    top.replaceChildren(table([{key: 'path', label: 'Path'}, {key: 'route', label: 'Route'}, {key: 'requests', label: 'Requests', num: true, fmt: num},
      {key: 'status_4xx', label: '4xx', num: true, fmt: num}, {key: 'status_5xx', label: '5xx', num: true, fmt: num},
      {key: 'mean_ms', label: 'Mean ms', num: true, fmt: num}, {key: 'bytes_out', label: 'Bytes out', num: true, fmt: short}],
      r.paths || [], {name: 'paths', bar: 'requests', empty: 'No requests in this range.'}));
  };
  const load = guard(async () => {
    const secs = +$('#prange').value;
    await Promise.all([loadTop(secs), ...panels.map(async ([title, expr, f], i) => {
      const ss = await queryRange(expr, secs, 120);
      chart(els[i].c, ss.slice(0, 8), {label: title, fmt: f, height: 180, from: (Date.now() - secs * 1000), to: Date.now()});
      els[i].t.replaceChildren(table([{key: 'series', label: 'Series'}, {key: 'last', label: 'Now', num: true, fmt: f}],
        ss.map(s => ({series: s.name, last: s.points.length ? s.points[s.points.length - 1][1] : null})), {name: 'proxy', empty: 'No traffic in this range.'}));
    })]);
  });
  $('#prange').addEventListener('change', load);
  load();
}

// ---------------------------------------------------------------- policy

function policy() {
  const load = guard(async () => {
    const r = await api('/api/v1/policy');
    const cols = [{key: 'kind', label: 'Kind'}, {key: 'subject', label: 'Subject'}, {key: 'action', label: 'Action'},
      {key: 'reason', label: 'Reason'}, {key: 'by', label: 'Set by'}, {key: 'set', label: 'Since', fmt: when},
      {key: 'until', label: 'Until', fmt: v => when(v) || 'cleared by hand'}, {key: 'active', label: 'Active', fmt: v => v ? 'yes' : 'expired'}];
    if (can('policy:write')) cols.push({key: 'clear', label: '', value: () => '', link: e => h('button', {type: 'button', class: 'danger', text: 'Clear',
      'aria-label': `Clear ${e.kind} ${e.subject}`, onclick: guard(async () => {
        if (!confirm(`Clear the ${e.action} on ${e.kind} ${e.subject}?`)) return;
        await api(`/api/v1/policy/${encodeURIComponent(e.kind)}/${e.subject.replace(/^\/+/, '').split('/').map(encodeURIComponent).join('/')}`, {method: 'DELETE'});
        load();
      })})});
    $('#policy').replaceChildren(table(cols, r.entries || [], {name: 'policy', empty: 'Nothing is blocked or locked.'}));
  });
  load();
}

// ---------------------------------------------------------------- deploys

function deploys() {
  const secs = s => s == null ? '–' : dur(s);
  const load = guard(async () => {
    const since = $('#drange').value;
    const [d, sv, dr, ls] = await Promise.all([api('/api/v1/deployments/dora?since=' + since), api('/api/v1/deployments/services'),
      api('/api/v1/deployments/drift'), api('/api/v1/deployments?limit=100')]);
    const cards = [['Deployments per day', num(d.deployment_frequency_per_day), 'frequency'], ['Lead time (median)', secs(d.lead_time_seconds), 'lead'],
      ['Change failure rate', d.change_failure_rate == null ? '–' : num(d.change_failure_rate) + ' %', 'cfr'], ['Time to restore (median)', secs(d.time_to_restore_seconds), 'restore']];
    $('#dora').replaceChildren(...cards.map(([k, v, m]) => h('div', {class: 'stat', 'data-metric': m}, h('span', {class: 'label', text: k}), h('span', {class: 'value', text: v}))));
    const ver = x => x ? x.version : '';
    $('#services').replaceChildren(table([{key: 'service', label: 'Service'}, {key: 'env', label: 'Environment'},
      {key: 'current', label: 'Running', value: r => ver(r.current)}, {key: 'desired', label: 'Rolling out', value: r => r.desired && r.current && r.desired.id !== r.current.id ? ver(r.desired) : ''},
      {key: 'hosts', label: 'Hosts', num: true, value: r => r.hosts.length}, {key: 'drifted', label: 'Drifting', num: true},
      {key: 'at', label: 'Since', value: r => r.current ? r.current.updated : '', fmt: when}], sv.services || [], {name: 'services', empty: 'No deployments recorded yet (ops deploy record).'}));
    const rows = (dr.drift || []).flatMap(s => s.hosts.map(x => ({service: s.service, env: s.env, want: ver(s.desired), ...x})));
    $('#drift').replaceChildren(table([{key: 'service', label: 'Service'}, {key: 'env', label: 'Environment'}, {key: 'host', label: 'Host'},
      {key: 'want', label: 'Should run'}, {key: 'version', label: 'Runs'}, {key: 'drift', label: 'Drift', fmt: v => v.join(', ')},
      {key: 'last_seen', label: 'Last seen', fmt: v => when(v) || 'never'}], rows, {name: 'drift', empty: 'Every host runs what it should.'}));
    // Each deployment's config against the one before it of the same service and environment.
    const list = ls.deployments || [];
    const prev = d => list.find(x => x.service === d.service && x.env === d.env && Date.parse(x.at) < Date.parse(d.at) && x.config_hash);
    $('#deploys').replaceChildren(table([{key: 'at', label: 'When', fmt: when}, {key: 'service', label: 'Service'}, {key: 'env', label: 'Environment'},
      {key: 'version', label: 'Version'}, {key: 'status', label: 'Status', fmt: v => v.replace('_', ' ')}, {key: 'who', label: 'Who'}, {key: 'commit', label: 'Commit'},
      {key: 'diff', label: 'Config', value: () => '', link: d => {
        const p = d.config_hash && prev(d);
        if (!p) return d.config_hash ? h('span', {class: 'muted', text: d.config_hash.slice(0, 12)}) : '';
        const ref = x => `${x.service}/${x.env}/${x.id}`;
        return h('button', {type: 'button', class: 'linkish', text: p.config_hash === d.config_hash ? 'same as before' : 'diff', onclick: guard(async () => {
          const r = await api('/api/v1/deployments/diff?' + new URLSearchParams({from: ref(p), to: ref(d), format: 'json'}));
          $('#difftitle').textContent = `Config: ${p.version} → ${d.version}`;
          $('#diff').replaceChildren(...(r.diff || 'No change.\n').split('\n').map(l => h('span', {class: l.startsWith('+') ? 'add' : l.startsWith('-') ? 'del' : null, text: l + '\n'})));
          $('#diffcard').hidden = false;
        })});
      }}], list, {name: 'deployments', empty: 'No deployments recorded yet.'}));
  });
  $('#drange').addEventListener('change', load);
  load();
  setInterval(() => { if (!document.hidden) load(); }, 30000);
}

// ---------------------------------------------------------------- alerts

function alerts() {
  const form = $('#addsilence');
  const load = guard(async () => {
    const [a, r] = await Promise.all([api('/api/v1/alerts'), api('/api/v1/alerts/rules')]);
    $('#active').replaceChildren(table([{key: 'alert', label: 'Alert'}, {key: 'state', label: 'State'},
      {key: 'labels', label: 'Labels', fmt: v => Object.entries(v || {}).filter(([k]) => k !== 'alertname').map(([k, x]) => `${k}=${x}`).join(', ')},
      {key: 'summary', label: 'Summary', value: x => (x.annotations || {}).summary || ''}, {key: 'value', label: 'Value', num: true},
      {key: 'active_at', label: 'Since', fmt: when}], a.alerts || [], {name: 'alerts', empty: 'Nothing is pending or firing.'}));
    const rows = (r.groups || []).flatMap(g => g.rules.map(x => ({group: g.name, from: g.file, ...x})));
    $('#rules').replaceChildren(table([{key: 'group', label: 'Group'}, {key: 'name', label: 'Rule'}, {key: 'type', label: 'Type'},
      {key: 'health', label: 'Health'}, {key: 'state', label: 'State'}, {key: 'active', label: 'Active', num: true},
      {key: 'last_error', label: 'Error'}, {key: 'from', label: 'From'}], rows, {name: 'rules', empty: 'No rules yet (alert.rule_files, or ops alerts put).'}));
    let sil;
    try {
      sil = await api('/api/v1/alerts/silences');
    } catch (e) {
      if (e.status !== 409) throw e;
      $('#silences').replaceChildren(h('p', {class: 'muted', text: 'Silences need routing: set alert.alertmanager_config to an alertmanager.yml.'}));
      if (form) form.hidden = true;
      return;
    }
    const cols = [{key: 'matchers', label: 'Matchers'}, {key: 'state', label: 'State'}, {key: 'ends_at', label: 'Until', fmt: when},
      {key: 'created_by', label: 'By'}, {key: 'comment', label: 'Comment'}];
    if (can('alert:write')) cols.push({key: 'expire', label: '', value: () => '', link: s => s.state === 'expired' ? '' : h('button', {type: 'button', class: 'danger',
      text: 'Expire', 'aria-label': `Expire the silence ${s.matchers}`, onclick: guard(async () => {
        await api('/api/v1/alerts/silences/' + encodeURIComponent(s.id), {method: 'DELETE'});
        load();
      })})});
    $('#silences').replaceChildren(table(cols, sil.silences || [], {name: 'silences', empty: 'No silences.'}));
  });
  if (form) form.addEventListener('submit', guard(async ev => {
    ev.preventDefault();
    const d = new FormData(form);
    await api('/api/v1/alerts/silences', {method: 'POST', body: {matchers: d.get('matchers'), for: d.get('for'), comment: d.get('comment')}});
    form.reset();
    load();
  }));
  load();
  setInterval(() => { if (!document.hidden) load(); }, 15000);
}

// ---------------------------------------------------------------- dns

function dns() {
  const load = guard(async () => {
    const st = await api('/api/v1/dns/stats?limit=20&since=' + $('#dnsrange').value);
    $('#dnstotals').replaceChildren(table([{key: 'queries', label: 'Queries', num: true}, {key: 'blocked', label: 'Blocked', num: true},
      {key: 'cached', label: 'From the cache', num: true}], [st], {name: 'totals'}));
    $('#topdomains').replaceChildren(table([{key: 'key', label: 'Domain'}, {key: 'count', label: 'Queries', num: true}],
      st.top_domains || [], {name: 'domains', empty: 'No queries in this range.'}));
    $('#topblocked').replaceChildren(table([{key: 'key', label: 'Domain'}, {key: 'count', label: 'Queries', num: true}, {key: 'rule', label: 'Rule'}],
      st.top_blocked || [], {name: 'blocked', empty: 'Nothing blocked in this range.'}));
    $('#topclients').replaceChildren(table([{key: 'key', label: 'Client'}, {key: 'count', label: 'Queries', num: true}],
      st.top_clients || [], {name: 'clients', empty: 'No clients in this range.'}));
    if (!$('#querylog')) return;
    const since = new Date(Date.now() - 5 * 60000).toISOString();
    const ev = await api('/api/v1/events?subject=ev.dns.query&limit=1000&since=' + encodeURIComponent(since));
    const rows = (ev.events || []).map(x => ({time: x.event.time, ...x.event.data})).reverse().slice(0, 200);
    $('#querylog').replaceChildren(table([{key: 'time', label: 'Time', fmt: when}, {key: 'client_name', label: 'Client', value: x => x.client_name || x.client || ''},
      {key: 'name', label: 'Name'}, {key: 'type', label: 'Type'}, {key: 'rcode', label: 'Answer', value: x => x.blocked ? 'blocked' : x.rcode},
      {key: 'rule', label: 'Rule'}, {key: 'transport', label: 'Via'}, {key: 'cached', label: 'Cache'}, {key: 'duration_ms', label: 'ms', num: true}],
      rows, {name: 'queries', empty: 'No queries in the last 5 minutes.'}));
  });
  $('#dnsrange').addEventListener('change', load);
  load();
  setInterval(() => { if (!document.hidden) load(); }, 15000);
}

// ---------------------------------------------------------------- browsing

// browsing counts the forward proxy's recent decisions (the newest 5,000
// events of the range) by action, blocked host, category and person.
function browsing() {
  const count = (rows, key) => {
    const m = new Map();
    for (const r of rows) {
      const k = key(r);
      if (k == null) continue;
      const e = m.get(k.id) || {...k.row, count: 0};
      e.count++;
      m.set(k.id, e);
    }
    return [...m.values()].sort((a, b) => b.count - a.count).slice(0, 50);
  };
  const load = guard(async () => {
    const since = new Date(Date.now() - Number($('#brange').value) * 60000).toISOString();
    const ev = await api('/api/v1/events?subject=ev.proxy.browse&limit=5000&since=' + encodeURIComponent(since));
    const rows = (ev.events || []).map(x => ({time: x.event.time, ...x.event.data}));
    $('#bactions').replaceChildren(table([{key: 'action', label: 'Action'}, {key: 'count', label: 'Requests', num: true}],
      count(rows, r => ({id: r.action, row: {action: r.action}})), {name: 'actions', bar: 'count', empty: 'No requests through the proxy in this range.'}));
    $('#bblocked').replaceChildren(table([{key: 'host', label: 'Host'}, {key: 'action', label: 'Action'}, {key: 'category', label: 'Category'},
      {key: 'rule', label: 'Rule'}, {key: 'count', label: 'Requests', num: true}],
      count(rows.filter(r => r.action === 'block' || r.action === 'warn'), r => ({id: [r.host, r.action, r.category, r.rule].join('|'),
        row: {host: r.host, action: r.action, category: r.category || '', rule: r.rule || ''}})), {name: 'blocked', empty: 'Nothing blocked or warned in this range.'}));
    $('#bcats').replaceChildren(table([{key: 'category', label: 'Category'}, {key: 'count', label: 'Requests', num: true}],
      count(rows.filter(r => r.category), r => ({id: r.category, row: {category: r.category}})), {name: 'categories', bar: 'count', empty: 'Nothing classified in this range.'}));
    $('#busers').replaceChildren(table([{key: 'who', label: 'User or client'}, {key: 'count', label: 'Requests', num: true}, {key: 'blocked', label: 'Blocked', num: true}],
      count(rows, r => ({id: r.user || r.client, row: {who: r.user || r.client}})).map(u => ({...u,
        blocked: rows.filter(r => (r.user || r.client) === u.who && r.action === 'block').length})), {name: 'people', empty: 'Nobody in this range.'}));
    const rv = await api('/api/v1/events?subject=ev.proxy.review&limit=500&since=' + encodeURIComponent(since));
    $('#breviews').replaceChildren(table([{key: 'time', label: 'Time', fmt: when}, {key: 'user', label: 'User'}, {key: 'host', label: 'Host'},
      {key: 'category', label: 'Category'}, {key: 'comment', label: 'Comment'}, {key: 'request_id', label: 'Request'}],
      (rv.events || []).map(x => ({time: x.event.time, ...x.event.data})).reverse(), {name: 'reviews', empty: 'No review requests in this range.'}));
  });
  $('#brange').addEventListener('change', load);
  load();
  setInterval(() => { if (!document.hidden) load(); }, 15000);
}

// ---------------------------------------------------------------- access

function access() {
  const users = guard(async () => {
    const r = await api('/api/v1/users');
    const cols = [{key: 'name', label: 'User'}, {key: 'email', label: 'Email'}, {key: 'roles', label: 'Roles', value: u => (u.roles || []).join(' ')},
      {key: 'source', label: 'Defined in', value: u => u.source || (u.config ? 'ops.yaml' : 'stored')}, {key: 'created', label: 'Created', fmt: when}];
    if (can('users:write')) cols.push({key: 'x', label: '', value: () => '', link: u => u.config ? '' : h('button', {type: 'button', class: 'danger', text: 'Remove',
      'aria-label': 'Remove user ' + u.name, onclick: guard(async () => { if (confirm('Remove user ' + u.name + '?')) { await api('/api/v1/users/' + encodeURIComponent(u.name), {method: 'DELETE'}); users(); } })})});
    $('#users').replaceChildren(table(cols, r.users || [], {name: 'users'}));
  });
  const tokens = guard(async () => {
    if (!$('#tokens')) return;
    const r = await api('/api/v1/tokens');
    const cols = [{key: 'id', label: 'ID'}, {key: 'name', label: 'Name'}, {key: 'role', label: 'Role'}, {key: 'created_by', label: 'Created by'},
      {key: 'created', label: 'Created', fmt: when}, {key: 'expires', label: 'Expires', fmt: v => when(v) || 'never'}];
    if (can('tokens:write')) cols.push({key: 'x', label: '', value: () => '', link: t => h('button', {type: 'button', class: 'danger', text: 'Revoke',
      'aria-label': 'Revoke token ' + t.name, onclick: guard(async () => { if (confirm('Revoke token ' + t.name + '?')) { await api('/api/v1/tokens/' + encodeURIComponent(t.id), {method: 'DELETE'}); tokens(); } })})});
    $('#tokens').replaceChildren(table(cols, r.tokens || [], {name: 'tokens'}));
  });
  const keys = guard(async () => {
    if (!$('#keys')) return;
    const r = await api('/api/v1/keys');
    const cols = [{key: 'id', label: 'ID'}, {key: 'name', label: 'Name'}, {key: 'prefix', label: 'Starts with'}, {key: 'created', label: 'Created', fmt: when}];
    if (can('keys:write')) cols.push({key: 'x', label: '', value: () => '', link: k => h('button', {type: 'button', class: 'danger', text: 'Revoke',
      'aria-label': 'Revoke write key ' + k.name, onclick: guard(async () => { if (confirm('Revoke write key ' + k.name + '?')) { await api('/api/v1/keys/' + encodeURIComponent(k.id), {method: 'DELETE'}); keys(); } })})});
    $('#keys').replaceChildren(table(cols, r.keys || [], {name: 'write-keys', empty: 'No write keys.'}));
  });
  const shares = guard(async () => {
    if (!$('#shares')) return;
    const r = await api('/api/v1/analytics/shares');
    $('#shares').replaceChildren(table([{key: 'name', label: 'Name'}, {key: 'site', label: 'Site', fmt: v => v || 'every site'},
      {key: 'created_by', label: 'Created by'}, {key: 'created', label: 'Created', fmt: when},
      {key: 'x', label: '', value: () => '', link: sh => h('button', {type: 'button', class: 'danger', text: 'Revoke', 'aria-label': 'Revoke shared link ' + sh.name,
        onclick: guard(async () => { if (confirm('Revoke the shared link ' + sh.name + '? Whoever has it loses access at once.')) { await api('/api/v1/analytics/shares/' + sh.id, {method: 'DELETE'}); shares(); } })})}],
    r.shares || [], {name: 'shares', empty: 'No shared links.'}));
  });
  const form = (id, f) => { const el = $(id); if (el) el.addEventListener('submit', e => { e.preventDefault(); guard(f)(new FormData(el), el); }); };
  const secret = (id, text) => { const p = $(id); p.hidden = false; p.replaceChildren(h('span', {text: 'Shown once, copy it now: '}), h('code', {text})); };
  form('#adduser', async (d, el) => { await api('/api/v1/users', {method: 'POST', body: {name: d.get('name'), password: d.get('password'), roles: [d.get('role')]}}); el.reset(); users(); });
  form('#addtoken', async (d, el) => {
    const r = await api('/api/v1/tokens', {method: 'POST', body: {name: d.get('name'), role: d.get('role'), expires: d.get('expires')}});
    secret('#newtoken', r.token); el.reset(); tokens();
  });
  form('#addkey', async (d, el) => { const r = await api('/api/v1/keys', {method: 'POST', body: {name: d.get('name')}}); secret('#newkey', r.key); el.reset(); keys(); });
  form('#addcampaign', async (d, el) => {
    const c = await api('/api/v1/campaigns', {method: 'POST', body: {name: d.get('name')}});
    const r = await api('/api/v1/campaigns/' + encodeURIComponent(c.id) + '/links', {method: 'POST', body: {links: [{url: d.get('url')}]}});
    secret('#newcampaign', r.links[0].click_url); el.reset();
  });
  form('#addshare', async (d, el) => {
    const r = await api('/api/v1/analytics/shares', {method: 'POST', body: {name: d.get('name'), site: d.get('site')}});
    const p = $('#newshare');
    p.hidden = false;
    const link = location.origin + r.link;
    p.replaceChildren(h('span', {text: 'Shown once, copy it now: '}), h('a', {href: link, text: link}));
    el.reset(); shares();
  });
  users(); tokens(); keys(); shares();
}

// ---------------------------------------------------------------- status

function status() {
  guard(async () => {
    const [s, st] = await Promise.all([api('/api/v1/status'), can('events:read') ? api('/api/v1/streams') : {streams: []}]);
    const p = s.process || {};
    const cards = [['Version', s.version], ['Up for', dur(s.uptime_seconds)], ['Bus', s.bus && s.bus.embedded ? 'embedded' : 'external'],
      ['Memory (RSS)', p.rss_bytes ? short(p.rss_bytes / 1048576) + ' MiB' : '–'], ['Go heap', p.heap_bytes ? short(p.heap_bytes / 1048576) + ' MiB' : '–'],
      ['Disk free', s.disk && s.disk.total_bytes ? short(s.disk.free_bytes / 1073741824) + ' GiB of ' + short(s.disk.total_bytes / 1073741824) : '–']];
    $('#overview').replaceChildren(...cards.map(([k, v]) => h('div', {class: 'stat'}, h('span', {class: 'label', text: k}), h('span', {class: 'value', text: v ?? '–'}))));
    $('#modules').replaceChildren(table([{key: 'name', label: 'Module'}, {key: 'state', label: 'State'}, {key: 'error', label: 'Error'}], s.modules || [], {name: 'modules'}));
    $('#streams').replaceChildren(table([{key: 'name', label: 'Stream'}, {key: 'subjects', label: 'Subjects', value: x => (x.subjects || []).join(' ')},
      {key: 'messages', label: 'Messages', num: true, fmt: num}, {key: 'bytes', label: 'Bytes', num: true, fmt: short},
      {key: 'consumers', label: 'Consumers', num: true}, {key: 'last_time', label: 'Last write', fmt: when}], st.streams || [], {name: 'streams'}));
  })();
}

const PAGES = {dashboard, live, views, graph, editor, series, proxy, policy, deploys, alerts, dns, browsing, access, status};
initTheme();
(PAGES[body.dataset.page] || (() => {}))();
