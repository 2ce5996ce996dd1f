// The /v1 API as the dashboard calls it: the Firebase ID token in the Authorization header, nothing else.
// No cookie is ever set, so a cross-site request carries no credential (no CSRF surface).

const SESSION_KEY = "firebackup.session";
const RANK = { viewer: 1, member: 2, admin: 3, owner: 4 };
export const state = { config: null, session: null, orgs: [], org: null };

export async function loadConfig() {
  const r = await fetch("/dashboard/config.json");
  state.config = await r.json();
  state.session = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
}

function keep(session) {
  state.session = session;
  if (session) sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  else sessionStorage.removeItem(SESSION_KEY);
}

async function identity(path, body) {
  const { auth, apiKey } = state.config;
  const r = await fetch(`${auth.identitytoolkit}/${path}?key=${encodeURIComponent(apiKey)}`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(signInMessage(data?.error?.message));
  return data;
}

function signInMessage(code) {
  const known = { EMAIL_NOT_FOUND: "no account with that e-mail address", INVALID_PASSWORD: "wrong password",
                  INVALID_LOGIN_CREDENTIALS: "wrong e-mail address or password",
                  USER_DISABLED: "this account is disabled" };
  return `Sign-in failed: ${known[(code || "").split(" ")[0]] || code || "the sign-in service did not answer"}`;
}

function fromIdentity(data) {
  return { idToken: data.idToken, refreshToken: data.refreshToken, email: data.email,
           expiresAt: Date.now() + 1000 * Number(data.expiresIn || 3600) };
}

export async function signInWithPassword(email, password) {
  keep(fromIdentity(await identity("accounts:signInWithPassword", { email, password, returnSecureToken: true })));
}

// Google sign-in by redirect through Identity Toolkit (what the Firebase SDK does, without the SDK).
export async function startGoogleSignIn() {
  const data = await identity("accounts:createAuthUri", { providerId: "google.com", continueUri: location.origin + "/" });
  sessionStorage.setItem("firebackup.google", data.sessionId);
  location.assign(data.authUri);
}

export async function finishGoogleSignIn() {
  const sessionId = sessionStorage.getItem("firebackup.google");
  if (!sessionId || !(location.search.includes("code=") || location.search.includes("state="))) return false;
  sessionStorage.removeItem("firebackup.google");
  keep(fromIdentity(await identity("accounts:signInWithIdp",
    { requestUri: location.href, sessionId, returnSecureToken: true, returnIdpCredential: true })));
  history.replaceState(null, "", "/");
  return true;
}

export function signOut() { keep(null); localStorage.removeItem("firebackup.org"); }

async function freshToken() {
  const s = state.session;
  if (!s) throw new Error("not signed in");
  if (s.expiresAt - Date.now() > 60_000) return s.idToken;
  const { auth, apiKey } = state.config;
  const r = await fetch(`${auth.securetoken}/token?key=${encodeURIComponent(apiKey)}`, {
    method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: s.refreshToken }) });
  if (!r.ok) { keep(null); throw new Error("your session ended; sign in again"); }
  const d = await r.json();
  keep({ ...s, idToken: d.id_token, refreshToken: d.refresh_token, expiresAt: Date.now() + 1000 * Number(d.expires_in) });
  return state.session.idToken;
}

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${await freshToken()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(`/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (r.status === 204) return null;
  const data = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, data?.error?.message || `the API answered ${r.status}`);
  return data;
}

export const orgPath = (rest = "") => `/orgs/${state.org.id}${rest}`;

// Whether the current role may call a route: the minimum roles come from the API's own route table.
export function can(method, template) {
  const need = state.config.roles[`${method} ${template}`];
  if (need === undefined) return false;
  if (need === null) return true;
  return !!state.org && RANK[state.org.role] >= RANK[need];
}

export function atLeast(role) { return !!state.org && RANK[state.org.role] >= RANK[role]; }

export async function loadOrgs() {
  const page = await api("GET", "/orgs?limit=200");
  state.orgs = page.items;
  const wanted = localStorage.getItem("firebackup.org");
  state.org = state.orgs.find(o => o.id === wanted) || state.orgs[0] || null;
}

export function chooseOrg(id) {
  state.org = state.orgs.find(o => o.id === id) || null;
  if (state.org) localStorage.setItem("firebackup.org", state.org.id);
}
