// Small DOM helpers shared by the pages: an element builder, tables, ARIA tabs, alerts, formats.

/** `h('button', {type: 'button', onclick}, 'Save')`: attributes starting with `on` are listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) { el.replaceChildren(); append(el, children); return el; }

/** A labelled control: `field('Username', h('input', {...}))`. */
export function field(label, control) { return h('label', {}, label, control); }

/** A table: `columns` are `[heading, (row) => cell content, className?]`. */
export function table(columns, rows, { caption, empty = 'Nothing yet.' } = {}) {
  const body = rows.length
    ? rows.map((r) => h('tr', {}, columns.map(([, cell, cls]) => h('td', { class: cls }, cell(r)))))
    : [h('tr', {}, h('td', { colspan: columns.length, class: 'muted' }, empty))];
  return h('table', {},
    caption ? h('caption', { class: 'sr-only' }, caption) : null,
    h('thead', {}, h('tr', {}, columns.map(([head, , cls]) => h('th', { scope: 'col', class: cls }, head)))),
    h('tbody', {}, body));
}

/** A message box; `alert.set('...')` / `alert.error(e)` / `alert.clear()`. */
export function alertBox() {
  const el = h('div', { role: 'status', class: 'alert' });
  el.ok = (text) => { el.className = 'alert ok'; el.setAttribute('role', 'status'); el.textContent = text; };
  el.error = (e) => { el.className = 'alert error'; el.setAttribute('role', 'alert'); el.textContent = e.message || String(e); };
  el.clear = () => { el.textContent = ''; };
  return el;
}

/** Runs `fn`, showing its failure in `box`; disables `button` meanwhile. */
export async function guarded(box, button, fn) {
  if (button) button.disabled = true;
  try { box?.clear(); return await fn(); } catch (e) { box ? box.error(e) : console.error(e); return undefined; } finally { if (button) button.disabled = false; }
}

let tabSeq = 0;
/** ARIA tabs: `tabs([[name, panelElement], ...])`; arrow keys move between tabs. */
export function tabs(defs, { label = 'Sections' } = {}) {
  const id = `t${++tabSeq}`;
  const list = h('div', { role: 'tablist', 'aria-label': label });
  const panels = [];
  const buttons = defs.map(([name, panel], i) => {
    panel.setAttribute('role', 'tabpanel');
    panel.id = `${id}-p${i}`;
    panel.setAttribute('aria-labelledby', `${id}-t${i}`);
    panel.tabIndex = 0;
    panels.push(panel);
    return h('button', {
      role: 'tab', type: 'button', id: `${id}-t${i}`, 'aria-controls': panel.id,
      onclick: () => select(i),
      onkeydown: (ev) => {
        const d = { ArrowRight: 1, ArrowLeft: -1 }[ev.key];
        if (d) { const j = (i + d + defs.length) % defs.length; select(j); buttons[j].focus(); }
      },
    }, name);
  });
  function select(i) {
    buttons.forEach((b, j) => { b.setAttribute('aria-selected', String(i === j)); b.tabIndex = i === j ? 0 : -1; });
    panels.forEach((p, j) => { p.hidden = i !== j; });
  }
  list.append(...buttons);
  select(0);
  return h('div', {}, list, panels);
}

export const fmtTime = (ts) => (ts ? new Date(Number(ts)).toLocaleString() : '');

/** A value shown compactly: objects as JSON. */
export const fmtValue = (v) => (typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v));

/** Text parsed as JSON when it is JSON, else kept as text. */
export function parseLoose(text) {
  try { return JSON.parse(text); } catch { return text; }
}

export const pretty = (v) => JSON.stringify(v, null, 2);
