// The console's entry: the hash router (#/login, #/devices, #/device/{id}, #/rules, #/rule/{id},
// #/customers, #/customer/{id}), the header and the login page.

import { get, login, session } from './api.js';
import { alertBox, field, fill, guarded, h } from './ui.js';
import * as devices from './devices.js';
import * as device from './device.js';
import * as rules from './rules.js';
import * as people from './people.js';

const main = document.getElementById('main');
let cleanup = null;
let me = null;

const routes = [
  [/^#\/devices$/, devices.render, '#/devices'],
  [/^#\/device\/([0-9a-f-]{36})$/, device.render, '#/devices'],
  [/^#\/rules$/, rules.renderList, '#/rules'],
  [/^#\/rule\/([0-9a-f-]{36})$/, rules.renderChain, '#/rules'],
  [/^#\/customers$/, people.renderCustomers, '#/customers'],
  [/^#\/customer\/([0-9a-f-]{36})$/, people.renderCustomer, '#/customers'],
];

async function currentUser() {
  if (!me) me = await get('/api/auth/user');
  return me;
}

function header(user, section) {
  const nav = document.getElementById('nav');
  nav.hidden = !user;
  document.getElementById('logout').hidden = !user;
  document.getElementById('who').textContent = user ? `${user.email} · ${user.authority.replace('_', ' ').toLowerCase()}` : '';
  for (const a of nav.querySelectorAll('a')) {
    if (a.dataset.role) a.hidden = !user || user.authority !== a.dataset.role;
    if (a.getAttribute('href') === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

async function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  const hash = location.hash || '#/devices';
  if (hash === '#/login' || !session.token) { header(null); renderLogin(); return; }
  const found = routes.map(([re, render, section]) => [hash.match(re), render, section]).find(([m]) => m);
  if (!found) { location.hash = '#/devices'; return; }
  const [match, render, section] = found;
  try {
    const user = await currentUser();
    header(user, section);
    fill(main);
    cleanup = (await render(main, match.slice(1), user)) || null;
  } catch (e) {
    if (e.status === 401) return; // back at the login page
    fill(main, h('div', { class: 'alert error', role: 'alert' }, e.message));
  }
}

function renderLogin() {
  const box = alertBox();
  const username = h('input', { name: 'username', type: 'text', autocomplete: 'username', required: true });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const button = h('button', { type: 'submit' }, 'Log in');
  const form = h('form', {
    onsubmit: (ev) => {
      ev.preventDefault();
      guarded(box, button, async () => {
        await login(username.value, password.value);
        me = null;
        const target = location.hash && location.hash !== '#/login' ? location.hash : '#/devices';
        if (location.hash === target) route(); else location.hash = target;
      });
    },
  }, field('Username', username), field('Password', password), button, box);
  fill(main, h('div', { class: 'login card' }, h('h1', {}, 'Log in to ferroboard'), form));
  username.focus();
}

document.getElementById('logout').addEventListener('click', async () => {
  try { await fetch('/api/auth/logout', { method: 'POST', headers: { 'X-Authorization': `Bearer ${session.token}` } }); } catch { /* logged out anyway */ }
  session.clear();
  me = null;
  location.hash = '#/login';
});

window.addEventListener('hashchange', route);
route();
