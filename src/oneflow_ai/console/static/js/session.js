// Who is signed in, and the credential every API call carries.
//
// Email and password: the access token lives in memory only; the refresh token in this tab's
// sessionStorage, so that a reload keeps the session (it is exchanged for a new pair at once)
// while closing the tab, or signing out, ends it. A refresh token rotates on every use and
// signing out revokes its whole family on the server.
// An API key is never stored: it stays in memory while the page is open. An admin key is used
// as it is (the console of its role); any other key is exchanged for a self-service session
// (POST /api/v1/auth/key-session), which the server limits to that key's own data; the key in
// memory renews that session when it expires.

const REFRESH = "oneflow.console.refresh";

const state = { kind: null, access: null, key: null, principal: null, renewing: null };

export const session = {
  get kind() { return state.kind; },
  get principal() { return state.principal; },
  get signedIn() { return state.kind !== null && state.principal !== null; },
  credential() { return state.kind === "key" ? state.key : state.access; },
};

async function post(path, body, credential) {
  const headers = { "Content-Type": "application/json" };
  if (credential) headers.Authorization = `Bearer ${credential}`;
  const response = await fetch(path, { method: "POST", headers, body: body ? JSON.stringify(body) : undefined });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error(data?.error?.message || `HTTP ${response.status}`);
    error.status = response.status;
    error.code = data?.error?.code;
    throw error;
  }
  return data;
}

async function whoami(credential) {
  const response = await fetch("/api/v1/whoami", { headers: { Authorization: `Bearer ${credential}` } });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error(data?.error?.message || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function adopt(pair) {
  state.kind = "password";
  state.access = pair.access_token;
  sessionStorage.setItem(REFRESH, pair.refresh_token);
}

export async function signInWithPassword(email, password, projectId) {
  const body = { email, password };
  if (projectId) body.project_id = projectId;
  adopt(await post("/api/v1/auth/token", body));
  state.principal = await whoami(state.access);
}

export async function signInWithKey(key) {
  const principal = await whoami(key);
  state.key = key;
  if (principal.role === "admin") {
    state.kind = "key";
    state.principal = principal;
    return;
  }
  await renewSelfSession();
  state.principal = { ...principal, self_only: true };
}

async function renewSelfSession() {
  const made = await post("/api/v1/auth/key-session", null, state.key);
  state.kind = "self";
  state.access = made.access_token;
}

// A fresh credential after a 401 (expired access token): true when there is one.
export async function renew() {
  if (state.renewing) return state.renewing;
  state.renewing = (async () => {
    try {
      if (state.kind === "self" && state.key) {
        await renewSelfSession();
        return true;
      }
      const refresh = sessionStorage.getItem(REFRESH);
      if (state.kind === "password" && refresh) {
        adopt(await post("/api/v1/auth/refresh", { refresh_token: refresh }));
        return true;
      }
    } catch {
      forget();
    }
    return false;
  })();
  try {
    return await state.renewing;
  } finally {
    state.renewing = null;
  }
}

// After a reload: the tab's refresh token, if any, signs in again.
export async function restore() {
  const refresh = sessionStorage.getItem(REFRESH);
  if (!refresh) return false;
  try {
    adopt(await post("/api/v1/auth/refresh", { refresh_token: refresh }));
    state.principal = await whoami(state.access);
    return true;
  } catch {
    forget();
    return false;
  }
}

export async function signOut() {
  const refresh = sessionStorage.getItem(REFRESH);
  if (state.kind === "password" && refresh) {
    await post("/api/v1/auth/logout", { refresh_token: refresh }).catch(() => null);
  }
  forget();
}

function forget() {
  sessionStorage.removeItem(REFRESH);
  state.kind = state.access = state.key = state.principal = null;
}

// What the signed-in credential may do, mirroring the server's role table (the server decides;
// this only hides what would be refused).
const ROLE = { viewer: 0, member: 1, admin: 2 };

export function can(action) {
  const p = state.principal;
  if (!p) return false;
  if (p.self_only) return action === "self";
  const rank = ROLE[p.role] ?? -1;
  switch (action) {
    case "self":
    case "usage":
    case "keys:read":
    case "projects:read":
      return true;
    case "keys:write":
      return rank >= ROLE.member;
    case "key-limits":
    case "members":
    case "budgets:write":
    case "bodies":
      return rank >= ROLE.admin;
    case "system":
      return Boolean(p.system_admin);
    default:
      return false;
  }
}

// Whether the credential may change a key of `role` (a key never outranks who changes it).
export function outranks(role) {
  const p = state.principal;
  return Boolean(p) && !p.self_only && (ROLE[p.role] ?? -1) >= (ROLE[role] ?? Infinity);
}
