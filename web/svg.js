// Hand-drawn SVG: sparklines, the time-series chart and the rule chain graph.

const NS = 'http://www.w3.org/2000/svg';
export const COLOURS = ['#1f6feb', '#d1495b', '#2a9d8f', '#e9a03b', '#7b5ea7', '#3d405b', '#8ab17d', '#c8553d'];

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const numeric = (points) => points.map(([t, v]) => [Number(t), Number(v)]).filter(([, v]) => Number.isFinite(v));

function extent(values) {
  let lo = Math.min(...values); let hi = Math.max(...values);
  if (lo === hi) { lo -= 1; hi += 1; }
  return [lo, hi];
}

/** A small line of the points' values (ascending time); empty when none is a number. */
export function sparkline(points, { width = 120, height = 28, label = 'trend' } = {}) {
  const pts = numeric(points);
  const svg = s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label, class: 'sparkline' });
  if (pts.length < 2) return svg;
  const [t0, t1] = extent(pts.map((p) => p[0]));
  const [v0, v1] = extent(pts.map((p) => p[1]));
  const x = (t) => 2 + ((t - t0) / (t1 - t0)) * (width - 4);
  const y = (v) => height - 3 - ((v - v0) / (v1 - v0)) * (height - 6);
  const d = pts.map(([t, v], i) => `${i ? 'L' : 'M'}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join('');
  const [lt, lv] = pts[pts.length - 1];
  svg.append(s('path', { d, fill: 'none', stroke: COLOURS[0], 'stroke-width': 1.5 }),
    s('circle', { cx: x(lt), cy: y(lv), r: 2.2, fill: COLOURS[0] }));
  return svg;
}

function ticks(lo, hi, n) {
  const step = 10 ** Math.floor(Math.log10((hi - lo) / n));
  const nice = [1, 2, 5, 10].map((m) => m * step).find((st) => (hi - lo) / st <= n) || step * 10;
  const out = [];
  for (let v = Math.ceil(lo / nice) * nice; v <= hi + 1e-9; v += nice) out.push(Number(v.toFixed(10)));
  return out;
}

/** The time-series chart: one line per key of `series` ({key: [[ts, value], ...]}), numbers only. */
export function chart(series, { width = 900, height = 260, label = 'Time-series chart' } = {}) {
  const keys = Object.keys(series).filter((k) => numeric(series[k]).length);
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label });
  const m = { l: 52, r: 12, t: 10, b: 26 };
  const all = keys.flatMap((k) => numeric(series[k]));
  if (!all.length) {
    svg.append(s('text', { x: width / 2, y: height / 2, 'text-anchor': 'middle', fill: '#5c6577' }, 'No numeric telemetry yet'));
    return svg;
  }
  const [t0, t1] = extent(all.map((p) => p[0]));
  const [v0, v1] = extent(all.map((p) => p[1]));
  const pad = (v1 - v0) * 0.08;
  const [lo, hi] = [v0 - pad, v1 + pad];
  const x = (t) => m.l + ((t - t0) / (t1 - t0)) * (width - m.l - m.r);
  const y = (v) => height - m.b - ((v - lo) / (hi - lo)) * (height - m.t - m.b);
  const axis = s('g', { 'font-size': 11, fill: '#5c6577' });
  for (const v of ticks(lo, hi, 5)) {
    axis.append(s('line', { x1: m.l, x2: width - m.r, y1: y(v), y2: y(v), stroke: '#eceef2' }),
      s('text', { x: m.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, Number(v.toPrecision(6))));
  }
  const span = t1 - t0;
  for (let i = 0; i <= 4; i++) {
    const t = t0 + (span * i) / 4;
    const d = new Date(t);
    const text = span > 864e5 ? d.toLocaleDateString() : d.toLocaleTimeString();
    axis.append(s('text', { x: x(t), y: height - 8, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, text));
  }
  axis.append(s('line', { x1: m.l, x2: m.l, y1: m.t, y2: height - m.b, stroke: '#c5cad3' }),
    s('line', { x1: m.l, x2: width - m.r, y1: height - m.b, y2: height - m.b, stroke: '#c5cad3' }));
  svg.append(axis);
  keys.forEach((k, i) => {
    const pts = numeric(series[k]);
    const colour = COLOURS[i % COLOURS.length];
    const d = pts.map(([t, v], j) => `${j ? 'L' : 'M'}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join('');
    const g = s('g', { 'data-series': k }, s('title', {}, k), s('path', { d, fill: 'none', stroke: colour, 'stroke-width': 1.8 }));
    for (const [t, v] of pts.slice(-60)) g.append(s('circle', { cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2.2, fill: colour }));
    svg.append(g);
  });
  return svg;
}

/**
 * The graph of a rule chain's metadata: nodes in layers by their distance from the first node,
 * relations as labelled curves. `onPick(index)` when a node is clicked; `hit` highlights names.
 */
export function graph(meta, { onPick = () => {}, hit = new Set() } = {}) {
  const n = meta.nodes.length;
  const layer = new Array(n).fill(-1);
  const first = meta.firstNodeIndex ?? 0;
  if (n) layer[first] = 0;
  const queue = n ? [first] : [];
  while (queue.length) {
    const i = queue.shift();
    for (const c of meta.connections) {
      if (c.fromIndex === i && layer[c.toIndex] < 0) { layer[c.toIndex] = layer[i] + 1; queue.push(c.toIndex); }
    }
  }
  const maxLayer = Math.max(0, ...layer);
  layer.forEach((l, i) => { if (l < 0) layer[i] = maxLayer + 1; }); // unreachable nodes last
  const columns = [];
  layer.forEach((l, i) => { (columns[l] ||= []).push(i); });
  const W = 170; const H = 44; const GX = 150; const GY = 26;
  const pos = [];
  const tallest = Math.max(...columns.map((c) => (c ? c.length : 0)), 1);
  columns.forEach((col, l) => (col || []).forEach((i, row) => {
    const offset = ((tallest - col.length) * (H + GY)) / 2;
    pos[i] = { x: 10 + l * (W + GX), y: 10 + offset + row * (H + GY) };
  }));
  const width = 20 + columns.length * (W + GX) - GX;
  const height = 20 + tallest * (H + GY) - GY;
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'Rule chain graph',
    style: `max-width:${width}px` });
  svg.append(s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
    s('path', { d: 'M0,0L10,5L0,10z', fill: '#98a2b3' }))));
  const edges = s('g');
  for (const c of meta.connections) {
    const a = pos[c.fromIndex]; const b = pos[c.toIndex];
    if (!a || !b) continue;
    const x1 = a.x + W; const y1 = a.y + H / 2; const x2 = b.x; const y2 = b.y + H / 2;
    const back = x2 <= x1;
    const d = back
      ? `M${x1},${y1} C${x1 + 60},${y1 - 70} ${x2 - 60},${y2 - 70} ${x2},${y2}`
      : `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}`;
    const lx = back ? (x1 + x2) / 2 : x2 - 6; const ly = back ? Math.min(y1, y2) - 50 : y2 - 5;
    edges.append(s('g', { class: 'edge' }, s('path', { d, 'marker-end': 'url(#arrow)' }),
      s('text', { x: lx, y: ly, 'text-anchor': 'end' }, c.type)));
  }
  svg.append(edges);
  meta.nodes.forEach((node, i) => {
    const p = pos[i];
    const kind = String(node.type).split('.').pop().replace(/^Tb/, '').replace(/Node$/, '');
    const isScript = node.configuration && 'rhaiScript' in node.configuration;
    const cls = ['node', isScript && 'script', i === first && 'first', hit.has(node.additionalInfo?.ferroboardId) && 'hit'].filter(Boolean).join(' ');
    const g = s('g', { class: cls, transform: `translate(${p.x},${p.y})`, 'data-node': node.additionalInfo?.ferroboardId || '' },
      s('title', {}, `${node.name} (${node.type})`),
      s('rect', { width: W, height: H, rx: 7 }),
      s('text', { x: 10, y: 18 }, node.name.length > 24 ? `${node.name.slice(0, 23)}…` : node.name),
      s('text', { x: 10, y: 34, class: 'kind' }, kind));
    g.addEventListener('click', () => onPick(i));
    svg.append(g);
  });
  return svg;
}
