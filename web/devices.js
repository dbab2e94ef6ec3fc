// The devices page: the tenant's devices with search and paging; add, credentials, assign to a
// customer, delete.

import { del, get, post, qs } from './api.js';
import { alertBox, field, fill, fmtTime, guarded, h, table } from './ui.js';

const PAGE_SIZE = 20;

export async function render(main, _params, user) {
  const admin = user.authority === 'TENANT_ADMIN';
  const box = alertBox();
  const search = h('input', { type: 'search', placeholder: 'Name contains…' });
  const list = h('div');
  const pager = h('div', { class: 'pager' });
  const extra = h('div');
  let page = 0;
  let timer = null;
  let customers = null;

  const loadCustomers = async () => {
    customers ||= (await get(`/api/customers?${qs({ pageSize: 100, page: 0, sortProperty: 'title', sortOrder: 'ASC' })}`)).data;
    return customers;
  };

  async function load() {
    await guarded(box, null, async () => {
      const path = admin ? `/api/tenant/deviceInfos` : `/api/customer/${user.customerId.id}/deviceInfos`;
      const res = await get(`${path}?${qs({ pageSize: PAGE_SIZE, page, textSearch: search.value.trim(), sortProperty: 'createdTime', sortOrder: 'DESC' })}`);
      fill(list, table([
        ['Name', (d) => h('a', { href: `#/device/${d.id.id}` }, d.name)],
        ['Profile', (d) => d.deviceProfileName || d.type],
        ['Customer', (d) => d.customerTitle || h('span', { class: 'muted' }, '—')],
        ['State', (d) => h('span', { class: d.active ? 'badge good' : 'badge' }, d.active ? 'active' : 'inactive')],
        ['Created', (d) => fmtTime(d.createdTime)],
        ['', (d) => actions(d), 'actions'],
      ], res.data, { caption: 'Devices', empty: search.value ? 'No device matches.' : 'No devices yet: add one.' }));
      const pages = Math.max(1, res.totalPages);
      fill(pager,
        h('button', { type: 'button', class: 'secondary', disabled: page === 0, onclick: () => { page -= 1; load(); } }, 'Previous'),
        h('span', { class: 'muted' }, `Page ${page + 1} of ${pages} · ${res.totalElements} devices`),
        h('button', { type: 'button', class: 'secondary', disabled: !res.hasNext, onclick: () => { page += 1; load(); } }, 'Next'));
    });
  }

  function actions(d) {
    if (!admin) return h('button', { type: 'button', class: 'secondary', onclick: () => showCredentials(d) }, 'Credentials');
    return [
      h('button', { type: 'button', class: 'secondary', 'aria-label': `Credentials of ${d.name}`, onclick: () => showCredentials(d) }, 'Credentials'),
      h('button', { type: 'button', class: 'secondary', 'aria-label': `Assign ${d.name}`, onclick: () => assign(d) }, 'Assign'),
      h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${d.name}`, onclick: () => remove(d) }, 'Delete'),
    ];
  }

  async function showCredentials(d) {
    await guarded(box, null, async () => {
      const c = await get(`/api/device/${d.id.id}/credentials`);
      fill(extra, h('section', { class: 'card', 'aria-label': 'Credentials' },
        h('h2', {}, `Credentials of ${d.name}`),
        h('dl', { class: 'kv' }, h('dt', {}, 'Type'), h('dd', {}, c.credentialsType),
          h('dt', {}, 'Access token'), h('dd', {}, h('code', { 'aria-label': 'Access token' }, c.credentialsId || c.credentialsValue || ''))),
        h('p', { class: 'muted' }, 'MQTT: user name = access token, topic v1/devices/me/telemetry.')));
    });
  }

  async function assign(d) {
    await guarded(box, null, async () => {
      const all = await loadCustomers();
      const select = h('select', { 'aria-label': 'Customer' }, h('option', { value: '' }, '(no customer)'),
        all.map((c) => h('option', { value: c.id.id, selected: d.customerId?.id === c.id.id }, c.title)));
      const save = h('button', {
        type: 'button',
        onclick: () => guarded(box, save, async () => {
          if (select.value) await post(`/api/customer/${select.value}/device/${d.id.id}`);
          else await del(`/api/customer/device/${d.id.id}`);
          fill(extra);
          box.ok(select.value ? `${d.name} assigned.` : `${d.name} unassigned.`);
          await load();
        }),
      }, 'Save assignment');
      fill(extra, h('section', { class: 'card', 'aria-label': 'Assign to customer' }, h('h2', {}, `Assign ${d.name}`),
        h('div', { class: 'row' }, field('Customer', select), save)));
    });
  }

  async function remove(d) {
    if (!window.confirm(`Delete device ${d.name}?`)) return;
    await guarded(box, null, async () => { await del(`/api/device/${d.id.id}`); box.ok(`${d.name} deleted.`); await load(); });
  }

  function addForm() {
    const name = h('input', { type: 'text', required: true });
    const label = h('input', { type: 'text' });
    const create = h('button', { type: 'submit' }, 'Create');
    const form = h('form', {
      class: 'card', 'aria-label': 'New device',
      onsubmit: (ev) => {
        ev.preventDefault();
        guarded(box, create, async () => {
          const d = await post('/api/device', { name: name.value.trim(), label: label.value.trim() || undefined });
          const c = await get(`/api/device/${d.id.id}/credentials`);
          fill(extra, h('section', { class: 'card', 'aria-label': 'New device created' },
            h('h2', {}, `Device ${d.name} created`),
            h('dl', { class: 'kv' }, h('dt', {}, 'Access token'), h('dd', {}, h('code', { 'aria-label': 'Access token' }, c.credentialsId))),
            h('p', {}, h('a', { href: `#/device/${d.id.id}` }, `Open ${d.name}`))));
          page = 0;
          await load();
        });
      },
    }, h('h2', {}, 'Add device'), h('div', { class: 'row' }, field('Device name', name), field('Label', label), create));
    fill(extra, form);
    name.focus();
  }

  search.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(() => { page = 0; load(); }, 250); });
  fill(main,
    h('div', { class: 'spread' }, h('h1', {}, 'Devices'),
      h('div', { class: 'row' }, field('Search devices', search),
        admin ? h('button', { type: 'button', onclick: addForm }, 'Add device') : null)),
    box, extra, list, pager);
  await load();
  return () => clearTimeout(timer);
}
