// Customers and their users, for tenant administrators: list, create, delete.

import { del, get, post, qs } from './api.js';
import { alertBox, field, fill, fmtTime, guarded, h, table } from './ui.js';

const page100 = (sortProperty) => qs({ pageSize: 100, page: 0, sortProperty, sortOrder: 'ASC' });

export async function renderCustomers(main) {
  const box = alertBox();
  const list = h('div');
  const title = h('input', { type: 'text', required: true });
  const create = h('button', { type: 'submit' }, 'Add customer');
  const load = () => guarded(box, null, async () => {
    const res = await get(`/api/customers?${page100('title')}`);
    fill(list, table([
      ['Title', (c) => h('a', { href: `#/customer/${c.id.id}` }, c.title)],
      ['Created', (c) => fmtTime(c.createdTime)],
      ['', (c) => h('button', {
        type: 'button', class: 'danger', 'aria-label': `Delete ${c.title}`,
        onclick: () => window.confirm(`Delete customer ${c.title}?`) &&
          guarded(box, null, async () => { await del(`/api/customer/${c.id.id}`); box.ok(`${c.title} deleted.`); await load(); }),
      }, 'Delete'), 'actions'],
    ], res.data, { caption: 'Customers', empty: 'No customers yet.' }));
  });
  const form = h('form', {
    class: 'card row', 'aria-label': 'New customer',
    onsubmit: (ev) => {
      ev.preventDefault();
      guarded(box, create, async () => { await post('/api/customer', { title: title.value.trim() }); title.value = ''; box.ok('Customer added.'); await load(); });
    },
  }, field('Customer title', title), create);
  fill(main, h('h1', {}, 'Customers'), form, box, list);
  await load();
}

export async function renderCustomer(main, [id]) {
  const customer = await get(`/api/customer/${id}`);
  const box = alertBox();
  const users = h('div');
  const devices = h('div');
  const email = h('input', { type: 'email', required: true });
  const first = h('input', { type: 'text' });
  const last = h('input', { type: 'text' });
  const create = h('button', { type: 'submit' }, 'Add user');
  const load = () => guarded(box, null, async () => {
    const [u, d] = await Promise.all([
      get(`/api/customer/${id}/users?${page100('email')}`),
      get(`/api/customer/${id}/deviceInfos?${page100('name')}`),
    ]);
    fill(users, table([
      ['Email', (x) => x.email], ['Name', (x) => [x.firstName, x.lastName].filter(Boolean).join(' ')],
      ['Created', (x) => fmtTime(x.createdTime)],
      ['', (x) => [
        h('button', {
          type: 'button', class: 'secondary', 'aria-label': `Activation link of ${x.email}`,
          onclick: () => guarded(box, null, async () => {
            const resp = await fetch(`/api/user/${x.id.id}/activationLink`, { headers: { 'X-Authorization': `Bearer ${sessionStorage.getItem('fb.token')}` } });
            const text = await resp.text();
            if (!resp.ok) throw new Error(text);
            box.ok(`Activation link of ${x.email}: ${text}`);
          }),
        }, 'Activation link'),
        h('button', {
          type: 'button', class: 'danger', 'aria-label': `Delete ${x.email}`,
          onclick: () => window.confirm(`Delete user ${x.email}?`) &&
            guarded(box, null, async () => { await del(`/api/user/${x.id.id}`); box.ok(`${x.email} deleted.`); await load(); }),
        }, 'Delete')], 'actions'],
    ], u.data, { caption: 'Users', empty: 'No users.' }));
    fill(devices, table([['Name', (x) => h('a', { href: `#/device/${x.id.id}` }, x.name)], ['Profile', (x) => x.deviceProfileName || x.type]],
      d.data, { caption: 'Devices', empty: 'No devices assigned (assign them on the devices page).' }));
  });
  const form = h('form', {
    class: 'card', 'aria-label': 'New user',
    onsubmit: (ev) => {
      ev.preventDefault();
      guarded(box, create, async () => {
        await post('/api/user?sendActivationMail=false', {
          email: email.value.trim(), firstName: first.value.trim() || undefined, lastName: last.value.trim() || undefined,
          authority: 'CUSTOMER_USER', customerId: { entityType: 'CUSTOMER', id },
        });
        email.value = ''; first.value = ''; last.value = '';
        box.ok('User added: give them the activation link.');
        await load();
      });
    },
  }, h('h2', {}, 'Add a user'), h('div', { class: 'row' }, field('Email', email), field('First name', first), field('Last name', last), create));
  fill(main, h('p', {}, h('a', { href: '#/customers' }, '← Customers')), h('h1', {}, customer.title), box,
    h('h2', {}, 'Users'), users, form, h('h2', {}, 'Devices'), devices);
  await load();
}
