// The rule chains: the list with the reload status, and a chain's page with its graph, the script
// editor (test, dry run on a device's recorded messages, save) and the save's errors.

import { get, post, qs } from './api.js';
import { alertBox, field, fill, fmtTime, fmtValue, guarded, h, pretty, table } from './ui.js';
import { graph } from './svg.js';

function statusCard(status) {
  return h('section', { class: 'card', 'aria-label': 'Reload status' },
    h('h2', {}, 'Running chains'),
    h('dl', { class: 'kv' },
      h('dt', {}, 'Activated'), h('dd', {}, `${fmtTime(status.activatedAt)} (${status.activatedBy})`),
      h('dt', {}, 'Last save over REST'), h('dd', {}, status.lastSavedAt ? fmtTime(status.lastSavedAt) : 'never'),
      h('dt', {}, 'Reloads and saves'), h('dd', {}, String(status.generation)),
      h('dt', {}, 'Chains'), h('dd', {}, status.summary)),
    status.lastError
      ? h('div', { class: 'alert error', role: 'alert' },
        `The rules directory changed at ${fmtTime(status.lastError.at)} but is invalid; the chains above still run:\n${status.lastError.errors.join('\n')}`)
      : h('p', { class: 'muted' }, 'The running chains are the rules directory as last loaded.'));
}

export async function renderList(main) {
  const box = alertBox();
  fill(main, h('h1', {}, 'Rule chains'), box);
  await guarded(box, null, async () => {
    const [status, page] = await Promise.all([
      get('/api/ruleChains/status'),
      get(`/api/ruleChains?${qs({ pageSize: 100, page: 0, sortProperty: 'name', sortOrder: 'ASC' })}`),
    ]);
    main.append(statusCard(status), table([
      ['Name', (c) => h('a', { href: `#/rule/${c.id.id}` }, c.name)],
      ['Root', (c) => (c.root ? h('span', { class: 'badge good' }, 'root') : '')],
      ['File', (c) => h('code', {}, c.additionalInfo?.file || '')],
    ], page.data, { caption: 'Rule chains', empty: 'No chains.' }));
  });
}

const scriptType = (node) => (/Filter/.test(node.type) ? 'filter' : /Switch/.test(node.type) ? 'switch' : 'update');

export async function renderChain(main, [id]) {
  const box = alertBox();
  const chain = await get(`/api/ruleChain/${id}`);
  let meta = await get(`/api/ruleChain/${id}/metadata`);
  const graphBox = h('div', { class: 'graph card' });
  const editor = h('section', { class: 'card', 'aria-label': 'Script editor' });
  const results = h('section', { 'aria-label': 'Dry run results' });
  const statusBox = h('div');
  let picked = null;
  let hit = new Set();

  const drawGraph = () => fill(graphBox, graph(meta, { onPick: pick, hit }));
  const scriptNodes = () => meta.nodes.map((n, i) => [n, i]).filter(([n]) => n.configuration && 'rhaiScript' in n.configuration);
  const statusErrors = alertBox();
  const loadStatus = () => guarded(statusErrors, null, async () => fill(statusBox, statusCard(await get('/api/ruleChains/status'))));

  const devices = (await get(`/api/tenant/deviceInfos?${qs({ pageSize: 100, page: 0, sortProperty: 'createdTime', sortOrder: 'DESC' })}`)).data;

  function pick(i) {
    const node = meta.nodes[i];
    if (!('rhaiScript' in (node.configuration || {}))) {
      fill(editor, h('h2', {}, node.name), h('p', { class: 'muted' }, node.type), h('pre', {}, pretty(node.configuration)));
      return;
    }
    picked = i;
    const script = h('textarea', { rows: 8, class: 'code', spellcheck: 'false' }, node.configuration.rhaiScript);
    script.addEventListener('input', () => { meta.nodes[i].configuration.rhaiScript = script.value; });
    const testMsg = h('textarea', { rows: 3, class: 'code' }, '{}');
    const msgType = h('input', { type: 'text', value: 'POST_TELEMETRY_REQUEST' });
    const testMeta = h('textarea', { rows: 2, class: 'code' }, '{}');
    const output = h('pre', { 'aria-label': 'Test output', 'aria-live': 'polite' }, '');
    const testBox = alertBox();
    const test = h('button', {
      type: 'button', class: 'secondary',
      onclick: () => guarded(testBox, test, async () => {
        const res = await post('/api/ruleChain/testScript', {
          script: script.value, scriptType: scriptType(node), msg: testMsg.value, msgType: msgType.value, metadata: JSON.parse(testMeta.value || '{}'),
        });
        output.textContent = res.error ? `error: ${res.error}` : `output: ${res.output}`;
        output.className = res.error ? 'alert error' : '';
      }),
    }, 'Test script');
    const lastIn = h('button', {
      type: 'button', class: 'link',
      onclick: () => guarded(testBox, null, async () => {
        const d = await get(`/api/ruleNode/${node.id.id}/debugIn`);
        if (!d.msg) { testBox.ok('No captured input (switch debug on for this node).'); return; }
        testMsg.value = JSON.stringify(d.msg); msgType.value = d.msgType; testMeta.value = JSON.stringify(d.metadata);
      }),
    }, 'Use the last captured input');
    fill(editor, h('h2', {}, `Script of ${node.name}`),
      h('p', { class: 'muted' }, `${scriptType(node)} script · file `, h('code', {}, node.configuration.scriptFile || '(new)')),
      field(`Script of ${node.name}`, script),
      h('h3', {}, 'Test'),
      h('div', { class: 'grid2' }, field('Test message (JSON)', testMsg), h('div', {}, field('Message type', msgType), field('Test metadata (JSON)', testMeta))),
      h('div', { class: 'row', style: 'margin-top:.5rem' }, test, lastIn), testBox, output);
  }

  const device = h('select', {}, devices.map((d) => h('option', { value: d.id.id }, d.name)));
  const dryRun = h('button', {
    type: 'button', class: 'secondary',
    onclick: () => guarded(box, dryRun, async () => {
      if (!device.value) throw new Error('Add a device first: dry runs replay a device\'s recorded messages.');
      const res = await post('/api/ruleChain/dryRun', { ruleChainId: id, metadata: meta, deviceId: device.value });
      hit = new Set(res.results.flatMap((r) => r.path.map((p) => p.node)));
      drawGraph();
      showResults(res.results);
    }),
  }, 'Dry run');
  const save = h('button', {
    type: 'button',
    onclick: () => guarded(box, save, async () => {
      try {
        meta = await post('/api/ruleChain/metadata', meta);
      } catch (e) {
        const list = e.message.replace(/^Invalid rule chain: /, '').split('; ');
        box.error({ message: `Not saved (${e.status}); the running chain is unchanged:\n• ${list.join('\n• ')}` });
        return;
      }
      box.ok(`Saved ${fmtTime(Date.now())}: the next message takes the new chain.`);
      drawGraph();
      if (picked !== null) pick(picked);
      await loadStatus();
    }),
  }, 'Save chain');

  function showResults(list) {
    fill(results, h('h2', {}, `Dry run: ${list.length} recorded message${list.length === 1 ? '' : 's'}`),
      list.length ? null : h('p', { class: 'muted' }, 'No recorded message for this device yet.'),
      list.map((r, i) => h('article', { class: 'card', 'aria-label': `Dry run result ${i + 1}` },
        h('div', { class: 'spread' }, h('strong', {}, r.input.type), h('span', { class: 'muted' }, fmtTime(r.input.ts))),
        h('pre', {}, fmtValue(r.input.data)),
        h('p', { class: 'path' }, 'Path: ', r.path.map((p) => `${p.node} →[${p.relations.join(', ') || 'end'}]`).join(' ')),
        effects(r))));
  }

  function effects(r) {
    const rows = [];
    for (const t of r.timeseries || []) rows.push(['time series', `${t.key} = ${fmtValue(t.value)}`]);
    for (const a of r.attributes || []) rows.push(['attribute', fmtValue(a)]);
    for (const q of r.rpcRequests || []) rows.push(['RPC to device', fmtValue(q)]);
    for (const q of r.rpcReplies || []) rows.push(['RPC reply', fmtValue(q)]);
    for (const l of r.logs || []) rows.push(['log', fmtValue(l)]);
    if (r.error) rows.push(['error', r.error]);
    return table([['Effect', ([k]) => k], ['Would do', ([, v]) => h('code', {}, v)]], rows, { empty: 'No side effect.' });
  }

  fill(main,
    h('p', {}, h('a', { href: '#/rules' }, '← Rule chains')),
    h('div', { class: 'spread' }, h('h1', {}, chain.name),
      h('div', { class: 'row' }, field('Dry-run device', device), dryRun, save)),
    box, graphBox,
    h('p', { class: 'muted' }, 'Click a node: script nodes (blue) open in the editor. The green node is the entry.'),
    h('div', { class: 'grid2' }, editor, results), statusErrors, statusBox);
  drawGraph();
  const firstScript = scriptNodes()[0];
  if (firstScript) pick(firstScript[1]);
  else fill(editor, h('p', { class: 'muted' }, 'This chain has no script node.'));
  await loadStatus();
}
