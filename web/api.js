// The REST API and the WebSocket of ferroboard as the console uses them: the JWT kept in
// sessionStorage, refreshed once on 401 (then back to the login page), ThingsBoard's error JSON
// turned into exceptions with its message.

const TOKEN = 'fb.token';
const REFRESH = 'fb.refreshToken';

export const session = {
  get token() { return sessionStorage.getItem(TOKEN); },
  save({ token, refreshToken }) {
    sessionStorage.setItem(TOKEN, token);
    if (refreshToken) sessionStorage.setItem(REFRESH, refreshToken);
  },
  clear() { sessionStorage.removeItem(TOKEN); sessionStorage.removeItem(REFRESH); },
};

export class ApiError extends Error {
  constructor(status, message, body) { super(message); this.status = status; this.body = body; }
}

async function errorOf(resp) {
  const text = await resp.text();
  try {
    const body = JSON.parse(text);
    return new ApiError(resp.status, body.message || text || resp.statusText, body);
  } catch {
    return new ApiError(resp.status, text || `${resp.status} ${resp.statusText}`, null);
  }
}

export async function login(username, password) {
  const resp = await fetch('/api/auth/login', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  if (!resp.ok) throw await errorOf(resp);
  session.save(await resp.json());
}

async function refresh() {
  const refreshToken = sessionStorage.getItem(REFRESH);
  if (!refreshToken) return false;
  const resp = await fetch('/api/auth/token', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refreshToken }),
  });
  if (!resp.ok) return false;
  session.save(await resp.json());
  return true;
}

/** Calls the REST API; `body` is sent as JSON unless it is FormData. Answers parsed JSON (or null). */
export async function api(method, path, body) {
  const send = () => {
    const headers = { 'X-Authorization': `Bearer ${session.token}` };
    let payload;
    if (body instanceof FormData) payload = body;
    else if (body !== undefined) { headers['Content-Type'] = 'application/json'; payload = JSON.stringify(body); }
    return fetch(path, { method, headers, body: payload });
  };
  let resp = await send();
  if (resp.status === 401 && await refresh()) resp = await send();
  if (resp.status === 401) {
    session.clear();
    location.hash = '#/login';
    throw await errorOf(resp);
  }
  if (!resp.ok) throw await errorOf(resp);
  const text = await resp.text();
  return text ? JSON.parse(text) : null;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body);
export const del = (path) => api('DELETE', path);

/** A query string of the defined values. */
export function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  return q.toString();
}

/**
 * Opens `/api/ws`, authenticates with the first message and sends `cmds`; every answer goes to
 * `handlers[subscriptionId]`. Reconnects (with the same commands) when the socket drops while open.
 * Answers a function that closes it for good.
 */
export function subscribe(cmds, handlers, onState = () => {}) {
  let socket; let closed = false; let retry = 500; let answered = false;
  const open = () => {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    socket = new WebSocket(`${scheme}://${location.host}/api/ws`);
    socket.onopen = () => {
      retry = 500;
      answered = false;
      socket.send(JSON.stringify({ authCmd: { cmdId: 0, token: session.token }, cmds }));
      onState('connecting');
    };
    socket.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      // Live once the server answered: the subscriptions are in place.
      if (!answered) { answered = true; onState('live'); }
      const handler = handlers[msg.subscriptionId];
      if (handler) handler(msg);
    };
    socket.onclose = (ev) => {
      if (closed) return;
      onState(`disconnected${ev.reason ? `: ${ev.reason}` : ''}; reconnecting`);
      setTimeout(() => { if (!closed) open(); }, retry);
      retry = Math.min(retry * 2, 10000);
    };
  };
  open();
  return () => { closed = true; socket.close(); };
}
