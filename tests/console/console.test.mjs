// The web console in a real browser: Debian's Chromium driven by playwright-core against a real
// ferroboard (FERROBOARD_BIN, its own SQLite database, free ports, a copy of rules/), with a real MQTT
// client (MQTT.js, one connection with the device's token) as the device. One scenario:
// log in → add a device → telemetry published over MQTT shows in the table and the chart without a
// reload → a two-way RPC from the terminal, answered by the device → upload firmware and assign it,
// fw_state shown → edit a script, test it, dry-run it on the recorded messages, save it, and the next
// message takes the new path. Screenshots of each page go to $CONSOLE_ARTIFACTS (or a temp dir), printed.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import mqtt from 'mqtt';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const HOST = '127.0.0.1';
const TENANT = 'tenant@thingsboard.org';
const PASSWORD = 'console-Tenant-5e1a';
/** Every wait of the scenario polls until this deadline (ms). */
const WAIT = 20_000;
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'fb-console.'));
const shots = process.env.CONSOLE_ARTIFACTS || path.join(work, 'screenshots');
fs.mkdirSync(shots, { recursive: true });
const children = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, HOST, () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
  });
}

/** Polls `fn` until it answers something truthy, or fails naming `what`. */
async function until(what, fn, deadline = WAIT) {
  const end = Date.now() + deadline;
  let last;
  for (;;) {
    try { const v = await fn(); if (v) return v; } catch (e) { last = e; }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => { setTimeout(r, 100); });
  }
}

async function startServer() {
  const bin = process.env.FERROBOARD_BIN;
  assert.ok(bin && fs.existsSync(bin), `FERROBOARD_BIN must name a built ferroboard binary (got ${bin})`);
  const rules = path.join(work, 'rules');
  fs.cpSync(path.join(ROOT, 'rules'), rules, { recursive: true });
  const [http, mqtt] = [await freePort(), await freePort()];
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FERROBOARD_')));
  Object.assign(env, {
    FERROBOARD_HTTP_ADDR: `${HOST}:${http}`,
    FERROBOARD_MQTT_ADDR: `${HOST}:${mqtt}`,
    FERROBOARD_DATABASE_URL: `sqlite://${path.join(work, 'ferroboard.db')}`,
    FERROBOARD_RULES_DIR: rules,
    FERROBOARD_SYSADMIN_PASSWORD: 'console-Sysadmin-90c2',
    FERROBOARD_ADMIN_PASSWORD: PASSWORD,
    RUST_LOG: env.RUST_LOG || 'info',
  });
  const log = fs.openSync(path.join(work, 'ferroboard.log'), 'w');
  const proc = spawn(bin, ['serve'], { cwd: work, env, stdio: ['ignore', log, log] });
  children.push(proc);
  const url = `http://${HOST}:${http}`;
  await until('GET /api/health to answer 200', async () => {
    if (proc.exitCode !== null) throw new Error(`ferroboard exited with ${proc.exitCode}`);
    return (await fetch(`${url}/api/health`)).ok;
  }, 60_000);
  return { url, mqtt, rules, proc };
}

/**
 * The device: one MQTT.js connection with the device's access token, subscribed to server-side RPC
 * (each call answered with its method and params) and to the answers of its own RPC.
 */
async function mqttDevice(port, token) {
  const client = mqtt.connect({ host: HOST, port, username: token, clientId: `console-dev-${process.pid}`,
    protocolVersion: 4, reconnectPeriod: 0, connectTimeout: WAIT });
  await new Promise((resolve, reject) => { client.once('connect', resolve); client.once('error', reject); });
  await client.subscribeAsync(['v1/devices/me/rpc/request/+', 'v1/devices/me/rpc/response/+'], { qos: 1 });
  const calls = [];
  const answers = new Map();
  client.on('message', (topic, payload) => {
    const request = topic.match(/^v1\/devices\/me\/rpc\/request\/(\d+)$/);
    if (request) {
      const call = JSON.parse(payload.toString());
      calls.push(call);
      client.publish(`v1/devices/me/rpc/response/${request[1]}`,
        JSON.stringify({ answeredBy: 'console-test-device', method: call.method, params: call.params }), { qos: 1 });
      return;
    }
    const response = topic.match(/^v1\/devices\/me\/rpc\/response\/(\d+)$/);
    if (response) answers.set(response[1], JSON.parse(payload.toString()));
  });
  return {
    calls,
    answers,
    publish: (topic, payload) => client.publishAsync(topic, JSON.stringify(payload), { qos: 1 }),
    end: () => client.endAsync(),
  };
}

let step = 0;
async function shot(page, name) {
  step += 1;
  const file = path.join(shots, `${String(step).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`  screenshot ${file}`);
}

/** Playwright's locator waits, bounded by WAIT. */
const visible = (locator) => locator.waitFor({ state: 'visible', timeout: WAIT });
async function textOf(locator, pattern, what) {
  await until(what, async () => pattern.test((await locator.textContent({ timeout: 1000 })) || ''));
}

async function scenario(server, page) {
  const weight = { bytes: 0, requests: 0, files: [] };
  const counting = async (resp) => {
    const sizes = await resp.request().sizes().catch(() => null);
    if (!sizes) return;
    weight.requests += 1;
    weight.bytes += sizes.responseBodySize + sizes.responseHeadersSize;
    weight.files.push(`${new URL(resp.url()).pathname} ${sizes.responseBodySize}`);
  };
  page.on('response', counting);

  console.log('log in');
  await page.goto(server.url, { waitUntil: 'networkidle' });
  page.off('response', counting);
  await visible(page.getByLabel('Username'));
  await shot(page, 'login');
  await page.getByLabel('Username').fill(TENANT);
  await page.getByLabel('Password').fill('wrong password');
  await page.getByRole('button', { name: 'Log in' }).click();
  await textOf(page.getByRole('alert'), /Invalid username or password/, 'the login error');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await visible(page.getByRole('heading', { name: 'Devices' }));

  console.log('add a device');
  const name = `console-thermo-${process.pid}`;
  await page.getByRole('button', { name: 'Add device' }).click();
  await page.getByLabel('Device name').fill(name);
  await page.getByRole('button', { name: 'Create' }).click();
  const tokenCell = page.getByLabel('Access token');
  await visible(tokenCell);
  const token = (await tokenCell.textContent()).trim();
  assert.match(token, /^\S{10,}$/, 'the new device shows its access token');
  await visible(page.getByRole('link', { name, exact: true }));
  await page.getByLabel('Search devices').fill('thermo');
  await visible(page.getByRole('row').filter({ hasText: name }));
  await shot(page, 'devices');

  console.log('telemetry over MQTT, shown live');
  await page.getByRole('link', { name, exact: true }).click();
  await visible(page.getByRole('heading', { name }));
  const tab = page.getByRole('tab', { name: 'Latest telemetry' });
  assert.equal(await tab.getAttribute('aria-selected'), 'true');
  await textOf(page.locator('.badge', { hasText: /^live$/ }), /live/, 'the WebSocket to be live');
  const device = await mqttDevice(server.mqtt, token);
  const publish = (_port, _token, topic, payload) => device.publish(topic, payload);
  const now = Date.now();
  await publish(server.mqtt, token, 'v1/devices/me/telemetry', [
    { ts: now - 3000, values: { temperature: 20.5, humidity: 41 } },
    { ts: now - 2000, values: { temperature: 22.0, humidity: 43 } },
    { ts: now - 1000, values: { temperature: 21.25, humidity: 42 } },
  ]);
  await publish(server.mqtt, token, 'v1/devices/me/telemetry', { temperature: 23.5, humidity: 44 });
  const panel = page.getByRole('tabpanel', { name: 'Latest telemetry' });
  await textOf(panel.locator('[data-key="temperature"]'), /^23\.5$/, 'the latest temperature in the table');
  await textOf(panel.locator('[data-key="humidity"]'), /^44(\.0)?$/, 'the latest humidity in the table');
  await until('a chart line per key with every point', async () =>
    (await panel.locator('.chart g[data-series="temperature"] circle').count()) === 4 &&
    (await panel.locator('.chart g[data-series="humidity"] circle').count()) === 4);
  await until('a sparkline per key', async () => (await panel.getByRole('img', { name: /^Trend of / }).count()) === 2);
  await shot(page, 'device-telemetry');

  console.log('attributes');
  await page.getByRole('tab', { name: 'Attributes' }).click();
  await page.getByLabel('Shared key').fill('targetTemperature');
  await page.getByLabel('Shared value').fill('22.5');
  await page.getByRole('button', { name: 'Save shared attribute' }).click();
  await publish(server.mqtt, token, 'v1/devices/me/attributes', { firmwareBuild: 'b-17' });
  const attrs = page.getByRole('tabpanel', { name: 'Attributes' });
  await visible(attrs.getByRole('region', { name: 'Shared attributes' }).getByRole('cell', { name: 'targetTemperature', exact: true }));
  await visible(attrs.getByRole('region', { name: 'Client attributes' }).getByRole('cell', { name: 'b-17', exact: true }));
  await shot(page, 'device-attributes');

  console.log('two-way RPC answered by the device');
  const { calls } = device;
  await page.getByRole('tab', { name: 'RPC' }).click();
  await page.getByLabel('Method').fill('setLed');
  await page.getByLabel('Params').fill('{"on": true, "brightness": 80}');
  await page.getByRole('radio', { name: 'Two-way' }).check();
  await page.getByRole('button', { name: 'Send' }).click();
  const answer = page.getByLabel('Answer to setLed');
  await textOf(answer, /console-test-device/, 'the device\'s answer in the terminal');
  assert.match(await answer.textContent(), /"brightness": 80/);
  assert.equal(calls.length, 1);
  assert.deepEqual(calls[0], { method: 'setLed', params: { on: true, brightness: 80 } });
  await shot(page, 'device-rpc');

  console.log('firmware: upload, assign, fw_state');
  await page.getByRole('tab', { name: 'Firmware' }).click();
  await page.getByLabel('Title').fill('thermo-fw');
  await page.getByLabel('Version').fill('2.1.0');
  await page.getByLabel('Package file').setInputFiles({ name: 'thermo-fw-2.1.0.bin', mimeType: 'application/octet-stream',
    buffer: Buffer.from('ferroboard console test firmware '.repeat(64)) });
  await page.getByRole('button', { name: 'Upload' }).click();
  await textOf(page.getByRole('status').filter({ hasText: 'Uploaded' }), /Uploaded thermo-fw 2\.1\.0/, 'the upload');
  await page.getByLabel('Firmware package').selectOption({ label: 'thermo-fw 2.1.0' });
  await page.getByRole('button', { name: 'Assign firmware' }).click();
  const fw = page.getByRole('tabpanel', { name: 'Firmware' });
  await textOf(fw.locator('[data-key="fw_state"]'), /^(QUEUED|INITIATED)$/, 'fw_state');
  await textOf(fw.locator('[data-key="fw_title"]'), /^thermo-fw$/, 'fw_title (shared attribute)');
  await textOf(fw.locator('[data-key="fw_version"]'), /^2\.1\.0$/, 'fw_version');
  await publish(server.mqtt, token, 'v1/devices/me/telemetry', { fw_state: 'DOWNLOADING' });
  await textOf(fw.locator('[data-key="fw_state"]'), /^DOWNLOADING$/, 'fw_state reported by the device');
  await shot(page, 'device-firmware');

  console.log('a device RPC the chain does not answer yet, recorded');
  await publish(server.mqtt, token, 'v1/devices/me/rpc/request/1', { method: 'whatTime', params: {} });
  const recent = page.getByRole('region', { name: 'Recent messages' });
  await until('the RPC among the recent messages', async () => {
    await recent.getByRole('button', { name: 'Refresh messages' }).click();
    return (await recent.getByRole('cell', { name: 'TO_SERVER_RPC_REQUEST', exact: true }).count()) > 0;
  });
  await shot(page, 'device-recent-messages');

  console.log('rule chains: edit, test, dry-run, save');
  await page.getByRole('link', { name: 'Rule chains' }).click();
  await visible(page.getByRole('region', { name: 'Reload status' }));
  await shot(page, 'rule-chains');
  await page.getByRole('link', { name: 'Root Rule Chain' }).click();
  await visible(page.getByRole('img', { name: 'Rule chain graph' }));
  const script = page.getByLabel('Script of Is getCurrentTime');
  await visible(script);
  await script.fill('// Device RPC (TO_SERVER_RPC_REQUEST): true for getCurrentTime and whatTime.\n'
    + 'msgType == "TO_SERVER_RPC_REQUEST" && type_of(msg) == "map"\n'
    + '    && (msg.method == "getCurrentTime" || msg.method == "whatTime")\n');
  await page.getByLabel('Test message (JSON)').fill('{"method": "whatTime", "params": {}}');
  await page.getByLabel('Message type').fill('TO_SERVER_RPC_REQUEST');
  await page.getByRole('button', { name: 'Test script' }).click();
  await textOf(page.getByLabel('Test output'), /^output: true$/, 'the script test');
  await page.getByLabel('Dry-run device').selectOption({ label: name });
  await page.getByRole('button', { name: 'Dry run' }).click();
  const results = page.getByRole('region', { name: 'Dry run results' });
  const rpcResult = results.getByRole('article').filter({ hasText: 'TO_SERVER_RPC_REQUEST' });
  await textOf(rpcResult.locator('.path'), /is_get_current_time →\[True\] current_time →\[Success\] rpc_call_reply/, 'the new path in the dry run');
  await visible(rpcResult.getByRole('cell', { name: 'RPC reply', exact: true }));
  await until('the graph to mark the dry run\'s nodes', async () => (await page.locator('.graph .node.hit').count()) >= 3);
  await shot(page, 'rule-chain-dry-run');

  // A save with an error is refused with the list of errors; the running chain stays.
  await script.fill('this is not rhai (');
  await page.getByRole('button', { name: 'Save chain' }).click();
  await textOf(page.getByRole('alert'), /Not saved \(400\)/, 'the refused save');
  await shot(page, 'rule-chain-save-refused');
  await script.fill('msgType == "TO_SERVER_RPC_REQUEST" && type_of(msg) == "map"\n'
    + '    && (msg.method == "getCurrentTime" || msg.method == "whatTime")\n');
  await page.getByRole('button', { name: 'Save chain' }).click();
  await textOf(page.getByRole('status').filter({ hasText: 'Saved' }), /the next message takes the new chain/, 'the save');
  const status = page.getByRole('region', { name: 'Reload status' });
  await textOf(status, /Last save over REST(?!never)\d/, 'the reload status after the save');
  await shot(page, 'rule-chain-saved');
  const saved = fs.readFileSync(path.join(server.rules, 'scripts/is_get_current_time.rhai'), 'utf8');
  assert.match(saved, /whatTime/, 'the save wrote the script file of the server\'s rules directory');

  console.log('the next message takes the new path');
  await publish(server.mqtt, token, 'v1/devices/me/rpc/request/2', { method: 'whatTime', params: {} });
  const reply = await until('the chain\'s answer to whatTime', () => device.answers.get('2'));
  assert.ok(Math.abs(reply.time - Date.now()) < 60_000, `the chain answered whatTime: ${JSON.stringify(reply)}`);
  assert.ok(!device.answers.has('1'), 'the first whatTime, before the save, was not answered');
  await device.end();

  console.log('customers and users');
  await page.getByRole('link', { name: 'Customers' }).click();
  await page.getByLabel('Customer title').fill('Console Customer');
  await page.getByRole('button', { name: 'Add customer' }).click();
  await page.getByRole('link', { name: 'Console Customer' }).click();
  await page.getByLabel('Email').fill('operator@console.example');
  await page.getByLabel('First name').fill('Olga');
  await page.getByRole('button', { name: 'Add user' }).click();
  await visible(page.getByRole('cell', { name: 'operator@console.example', exact: true }));
  await shot(page, 'customer');
  await page.getByRole('link', { name: 'Devices' }).click();
  await page.getByRole('button', { name: `Assign ${name}` }).click();
  await page.getByLabel('Customer', { exact: true }).selectOption({ label: 'Console Customer' });
  await page.getByRole('button', { name: 'Save assignment' }).click();
  await visible(page.getByRole('row').filter({ hasText: name }).getByRole('cell', { name: 'Console Customer', exact: true }));
  await shot(page, 'devices-assigned');
  return weight;
}

async function main() {
  const started = Date.now();
  console.log(`console test: work dir ${work}`);
  const server = await startServer();
  const profile = path.join(work, 'chromium-profile');
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CONSOLE_CHROMIUM || '/usr/bin/chromium',
    headless: true, args: CHROMIUM_ARGS, viewport: { width: 1280, height: 800 },
  });
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(WAIT);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 40[01]/.test(m.text())) problems.push(`console error: ${m.text()}`); });
  try {
    const weight = await scenario(server, page);
    assert.deepEqual(problems, [], 'no script error in the page');
    const report = `console first load: ${weight.bytes} bytes transferred in ${weight.requests} responses (uncompressed)\n${weight.files.join('\n')}\n`;
    fs.writeFileSync(path.join(shots, 'page-weight.txt'), report);
    console.log(report.trim());
    console.log(`console test passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } catch (e) {
    await shot(page, 'failure').catch(() => {});
    const log = fs.readFileSync(path.join(work, 'ferroboard.log'), 'utf8').split('\n').slice(-40).join('\n');
    console.error(`console test FAILED: ${e.stack || e}\n${problems.join('\n')}\n---- ferroboard log (last 40 lines) ----\n${log}`);
    process.exitCode = 1;
  } finally {
    await context.close().catch(() => {});
    for (const c of children) c.kill();
    console.log(`console screenshots: ${shots}`);
    fs.rmSync(path.join(work, 'chromium-profile'), { recursive: true, force: true });
    fs.rmSync(path.join(work, 'ferroboard.db'), { force: true });
  }
}

await main();
