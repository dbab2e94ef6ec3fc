// The device page: live latest telemetry (table with sparklines and the chart), attributes in the
// three scopes (shared and server editable), the RPC terminal, firmware, and the recent messages.
// One WebSocket carries every live value of the page.

import { get, post, qs, subscribe } from './api.js';
import { alertBox, field, fill, fmtTime, fmtValue, guarded, h, parseLoose, pretty, table, tabs } from './ui.js';
import { chart, COLOURS, sparkline } from './svg.js';

/** Points kept per key for the chart and sparklines. */
const MAX_POINTS = 300;
/** The chart's window: the last hour. */
const WINDOW_MS = 3600_000;
const SCOPES = [['CLIENT_SCOPE', 'Client', false], ['SHARED_SCOPE', 'Shared', true], ['SERVER_SCOPE', 'Server', true]];
const FW = /^(target_)?fw_/;

export async function render(main, [id], user) {
  const device = await get(`/api/device/${id}`);
  const series = {}; // key -> [[ts, value]] ascending
  const attrs = { CLIENT_SCOPE: {}, SHARED_SCOPE: {}, SERVER_SCOPE: {} }; // key -> {ts, value}
  const live = h('span', { class: 'badge', 'aria-live': 'polite' }, 'connecting');
  const panels = {
    telemetry: h('section'), attributes: h('section'), rpc: h('section'), firmware: h('section'),
  };
  const telemetry = telemetryPanel(panels.telemetry, series);
  const attributes = attributesPanel(panels.attributes, device, attrs);
  rpcPanel(panels.rpc, device, user);
  const firmware = await firmwarePanel(panels.firmware, device, series, attrs);
  const recent = h('section', { class: 'card', 'aria-label': 'Recent messages' });
  const recentBody = h('div');
  const recentBox = alertBox();
  const loadRecent = () => guarded(recentBox, null, async () => {
    if (user.authority !== 'TENANT_ADMIN') { fill(recentBody, h('p', { class: 'muted' }, 'Recorded messages are shown to tenant administrators.')); return; }
    const msgs = await get(`/api/ruleChain/dryRun/messages?${qs({ deviceId: id })}`);
    fill(recentBody, table([
      ['Time', (m) => new Date(m.ts).toLocaleTimeString()], ['Type', (m) => m.type],
      ['Data', (m) => h('code', {}, fmtValue(m.data))],
    ], msgs.slice().reverse(), { empty: 'No message recorded on this node yet.' }));
  });
  fill(recent, h('div', { class: 'spread' }, h('h2', {}, 'Recent messages'),
    h('button', { type: 'button', class: 'secondary', onclick: loadRecent }, 'Refresh messages')), recentBox, recentBody);

  fill(main,
    h('p', {}, h('a', { href: '#/devices' }, '← Devices')),
    h('div', { class: 'spread' }, h('h1', {}, device.name), h('span', {}, 'Live updates: ', live)),
    h('p', { class: 'muted' }, `${device.type} · id ${device.id.id}`),
    tabs([['Latest telemetry', panels.telemetry], ['Attributes', panels.attributes], ['RPC', panels.rpc], ['Firmware', panels.firmware]],
      { label: 'Device' }),
    recent);
  loadRecent();

  // Messages of every kind (events, attributes, RPC) are recorded: the list refreshes itself too.
  const recentPoll = setInterval(loadRecent, 5000);
  let recentTimer = null;
  const refreshRecentSoon = () => { clearTimeout(recentTimer); recentTimer = setTimeout(loadRecent, 700); };
  const entity = { entityType: 'DEVICE', entityId: id };
  const cmds = [
    { type: 'TIMESERIES', cmdId: 1, ...entity, keys: '', timeWindow: WINDOW_MS, limit: MAX_POINTS },
    // The latest value of every key, also of keys not written within the chart's window.
    { type: 'TIMESERIES', cmdId: 5, ...entity, keys: '' },
    ...SCOPES.map(([scope], i) => ({ type: 'ATTRIBUTES', cmdId: 2 + i, ...entity, scope })),
  ];
  const handlers = {
    1: (msg) => {
      if (msg.errorCode) { live.textContent = msg.errorMsg; return; }
      for (const [key, points] of Object.entries(msg.data || {})) {
        const list = (series[key] ||= []);
        for (const [ts, value] of points) if (!list.some((p) => p[0] === ts)) list.push([ts, value]);
        list.sort((a, b) => a[0] - b[0]);
        if (list.length > MAX_POINTS) list.splice(0, list.length - MAX_POINTS);
      }
      telemetry.update(); firmware.update(); refreshRecentSoon();
    },
  };
  handlers[5] = handlers[1];
  SCOPES.forEach(([scope], i) => {
    handlers[2 + i] = (msg) => {
      if (msg.errorCode) return;
      for (const [key, points] of Object.entries(msg.data || {})) {
        const [ts, value] = points[points.length - 1];
        attrs[scope][key] = { ts, value };
      }
      attributes.update(); firmware.update();
    };
  });
  const close = subscribe(cmds, handlers, (state) => {
    live.textContent = state;
    live.className = state === 'live' ? 'badge good' : 'badge bad';
  });
  return () => { close(); clearTimeout(recentTimer); clearInterval(recentPoll); };
}

function telemetryPanel(panel, series) {
  const chartBox = h('div', { class: 'chart card', 'aria-label': 'Telemetry chart' });
  const legend = h('div', { class: 'legend' });
  const rows = h('div');
  fill(panel, h('h2', {}, 'Last hour'), chartBox, legend, h('h2', {}, 'Latest values'), rows);
  const update = () => {
    const keys = Object.keys(series).sort();
    // Firmware keys (states, versions, timestamps) have their own tab.
    const charted = Object.fromEntries(keys.filter((k) => !FW.test(k)).map((k) => [k, series[k]]));
    fill(chartBox, chart(charted, { label: `Telemetry chart of ${Object.keys(charted).join(', ') || 'no keys'}` }));
    fill(legend, Object.keys(charted).filter((k) => series[k].some(([, v]) => Number.isFinite(Number(v))))
      .map((k, i) => h('span', {}, h('i', { style: `background:${COLOURS[i % COLOURS.length]}` }), k)));
    fill(rows, table([
      ['Key', (k) => k],
      ['Last update', (k) => fmtTime(series[k].at(-1)[0])],
      ['Value', (k) => h('span', { 'data-key': k }, series[k].at(-1)[1]), 'num'],
      ['Trend', (k) => sparkline(series[k], { label: `Trend of ${k}` })],
    ], keys, { caption: 'Latest telemetry', empty: 'No telemetry yet. Devices publish to v1/devices/me/telemetry.' }));
  };
  update();
  return { update };
}

function attributesPanel(panel, device, attrs) {
  const tables = {};
  const sections = SCOPES.map(([scope, name, editable]) => {
    tables[scope] = h('div');
    return h('section', { 'aria-label': `${name} attributes` }, h('h2', {}, `${name} attributes`), tables[scope],
      editable ? editForm(device, scope, name) : h('p', { class: 'muted' }, 'Reported by the device.'));
  });
  fill(panel, sections);
  const update = () => {
    for (const [scope] of SCOPES) {
      const entries = Object.entries(attrs[scope]).sort(([a], [b]) => a.localeCompare(b));
      fill(tables[scope], table([
        ['Key', ([k]) => k], ['Last update', ([, v]) => fmtTime(v.ts)], ['Value', ([, v]) => h('code', {}, v.value)],
      ], entries, { empty: 'None.' }));
    }
  };
  update();
  return { update };
}

function editForm(device, scope, name) {
  const key = h('input', { type: 'text', required: true });
  const value = h('input', { type: 'text' });
  const save = h('button', { type: 'submit' }, `Save ${name.toLowerCase()} attribute`);
  const box = alertBox();
  return h('form', {
    class: 'row',
    onsubmit: (ev) => {
      ev.preventDefault();
      guarded(box, save, async () => {
        await post(`/api/plugins/telemetry/DEVICE/${device.id.id}/attributes/${scope}`, { [key.value.trim()]: parseLoose(value.value) });
        box.ok(`Saved ${key.value.trim()}.`);
      });
    },
  }, field(`${name} key`, key), field(`${name} value`, value), save, box);
}

function rpcPanel(panel, device, user) {
  const method = h('input', { type: 'text', required: true, placeholder: 'setGpio' });
  const params = h('textarea', { rows: 3, class: 'code' }, '{}');
  const kinds = [['twoway', 'Two-way'], ['oneway', 'One-way'], ['persistent', 'Persistent']];
  const radios = kinds.map(([value, label], i) => h('label', { class: 'inline' },
    h('input', { type: 'radio', name: `rpc-kind-${device.id.id}`, value, checked: i === 0 }), label));
  const timeout = h('input', { type: 'number', min: 1000, step: 1000, value: 10000 });
  const send = h('button', { type: 'submit' }, 'Send');
  const box = alertBox();
  const history = h('ol', { class: 'history', 'aria-label': 'RPC history', reversed: true });
  const persistent = h('div');
  const persistentBox = alertBox();

  const loadPersistent = () => guarded(persistentBox, null, async () => {
    const res = await get(`/api/rpc/persistent/device/${device.id.id}?${qs({ pageSize: 20, page: 0, sortProperty: 'createdTime', sortOrder: 'DESC' })}`);
    fill(persistent, table([
      ['Created', (r) => fmtTime(r.createdTime)], ['Method', (r) => r.request.body.method],
      ['Params', (r) => h('code', {}, fmtValue(r.request.body.params))],
      ['Status', (r) => h('span', { class: `badge ${r.status === 'SUCCESSFUL' ? 'good' : /FAIL|TIMEOUT|EXPIRED/.test(r.status) ? 'bad' : ''}` }, r.status)],
      ['Answer', (r) => (r.response === null || r.response === undefined ? '' : h('code', {}, fmtValue(r.response)))],
    ], res.data, { empty: 'No persistent RPC.' }));
  });

  const form = h('form', {
    class: 'card', 'aria-label': 'RPC terminal',
    onsubmit: (ev) => {
      ev.preventDefault();
      const kind = radios.map((r) => r.querySelector('input')).find((r) => r.checked).value;
      const body = { method: method.value.trim(), params: parseLoose(params.value), timeout: Number(timeout.value) || 10000 };
      if (kind === 'persistent') body.persistent = true;
      const entry = h('li', { class: 'card' });
      const status = h('span', { class: 'badge' }, 'waiting');
      const answer = h('div');
      fill(entry, h('div', { class: 'spread' }, h('strong', {}, `${body.method}`),
        h('span', {}, h('span', { class: 'muted' }, `${kinds.find((k) => k[0] === kind)[1]} · ${new Date().toLocaleTimeString()} `), status)),
      h('pre', {}, `params: ${JSON.stringify(body.params)}`), answer);
      history.prepend(entry);
      guarded(box, send, async () => {
        try {
          const path = kind === 'oneway' ? 'oneway' : 'twoway';
          const res = await post(`/api/rpc/${path}/${device.id.id}`, body);
          status.textContent = kind === 'persistent' ? 'stored' : kind === 'oneway' ? 'delivered' : 'answered';
          status.className = 'badge good';
          if (kind === 'persistent') { fill(answer, h('pre', {}, `rpcId: ${res.rpcId}`)); loadPersistent(); }
          else if (res !== null) fill(answer, h('pre', { 'aria-label': `Answer to ${body.method}` }, pretty(res)));
        } catch (e) {
          status.textContent = e.status === 504 || e.status === 408 ? 'timeout' : `error ${e.status || ''}`;
          status.className = 'badge bad';
          fill(answer, h('pre', {}, e.message));
        }
      });
    },
  }, h('h2', {}, 'RPC terminal'),
  h('div', { class: 'grid2' }, h('div', {}, field('Method', method), field('Timeout (ms)', timeout)), field('Params', params)),
  h('div', { class: 'row', style: 'margin-top:.6rem' }, h('fieldset', { class: 'row', style: 'border:none;padding:0;margin:0' },
    h('legend', { class: 'sr-only' }, 'Call type'), radios), send), box);
  fill(panel, form, h('h2', {}, 'Calls'), history,
    h('div', { class: 'spread' }, h('h2', {}, 'Persistent RPCs'), h('button', { type: 'button', class: 'secondary', onclick: loadPersistent }, 'Refresh RPCs')),
    persistentBox, persistent);
  if (user.authority !== 'SYS_ADMIN') loadPersistent();
}

async function firmwarePanel(panel, device, series, attrs) {
  const box = alertBox();
  const current = h('p');
  const select = h('select');
  const state = h('div');
  let current_id = device.firmwareId?.id || null;

  async function loadPackages() {
    const res = await get(`/api/otaPackages?${qs({ pageSize: 100, page: 0, sortProperty: 'createdTime', sortOrder: 'DESC' })}`);
    const fw = res.data.filter((p) => p.type === 'FIRMWARE');
    fill(select, h('option', { value: '' }, '(none)'),
      fw.map((p) => h('option', { value: p.id.id, selected: p.id.id === current_id }, `${p.title} ${p.version}${p.hasData ? '' : ' (no file)'}`)));
    const mine = fw.find((p) => p.id.id === current_id);
    fill(current, 'Assigned: ', h('strong', {}, mine ? `${mine.title} ${mine.version}` : current_id ? current_id : 'none (the profile\'s, if any)'));
  }

  const title = h('input', { type: 'text', required: true });
  const version = h('input', { type: 'text', required: true });
  const file = h('input', { type: 'file', required: true });
  const algorithm = h('select', {}, ['SHA256', 'SHA384', 'SHA512', 'MD5', 'CRC32', 'MURMUR3_32', 'MURMUR3_128'].map((a) => h('option', {}, a)));
  const upload = h('button', { type: 'submit' }, 'Upload');
  const uploadForm = h('form', {
    class: 'card', 'aria-label': 'Upload firmware',
    onsubmit: (ev) => {
      ev.preventDefault();
      guarded(box, upload, async () => {
        const info = await post('/api/otaPackage', {
          title: title.value.trim(), version: version.value.trim(), type: 'FIRMWARE', deviceProfileId: device.deviceProfileId,
        });
        const form = new FormData();
        form.append('file', file.files[0]);
        await post(`/api/otaPackage/${info.id.id}?${qs({ checksumAlgorithm: algorithm.value })}`, form);
        box.ok(`Uploaded ${info.title} ${info.version}.`);
        current_id = current_id || null;
        await loadPackages();
        select.value = info.id.id;
      });
    },
  }, h('h2', {}, 'Upload a package'), h('div', { class: 'row' }, field('Title', title), field('Version', version),
    field('Package file', file), field('Checksum algorithm', algorithm), upload));
  const assign = h('button', {
    type: 'button',
    onclick: () => guarded(box, assign, async () => {
      const fresh = await get(`/api/device/${device.id.id}`);
      fresh.firmwareId = select.value ? { entityType: 'OTA_PACKAGE', id: select.value } : null;
      const saved = await post('/api/device', fresh);
      current_id = saved.firmwareId?.id || null;
      box.ok(current_id ? 'Firmware assigned.' : 'Firmware unassigned.');
      await loadPackages();
    }),
  }, 'Assign firmware');

  fill(panel, h('section', { class: 'card', 'aria-label': 'Firmware assignment' }, h('h2', {}, 'Device firmware'), current,
    h('div', { class: 'row' }, field('Firmware package', select), assign), box),
  uploadForm, h('h2', {}, 'Firmware state'), state);
  await guarded(box, null, loadPackages);

  const update = () => {
    const rows = [
      ...Object.entries(series).filter(([k]) => FW.test(k)).map(([k, pts]) => [k, 'telemetry', pts.at(-1)]),
      ...Object.entries(attrs.SHARED_SCOPE).filter(([k]) => FW.test(k)).map(([k, v]) => [k, 'shared attribute', [v.ts, v.value]]),
      ...Object.entries(attrs.CLIENT_SCOPE).filter(([k]) => FW.test(k)).map(([k, v]) => [k, 'client attribute', [v.ts, v.value]]),
    ].sort(([a], [b]) => a.localeCompare(b));
    fill(state, table([
      ['Key', ([k]) => k], ['Source', ([, s]) => s], ['Last update', ([, , p]) => fmtTime(p[0])],
      ['Value', ([k, , p]) => h('code', { 'data-key': k }, p[1])],
    ], rows, { empty: 'No fw_* values yet: assign a package.' }));
  };
  update();
  return { update };
}
