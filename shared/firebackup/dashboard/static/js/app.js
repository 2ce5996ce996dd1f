// The dashboard's shell: sign-in, the organization switcher, and a hash router over pages.js.

import { ApiError, can, chooseOrg, finishGoogleSignIn, loadConfig, loadOrgs, signInWithPassword, signOut,
         startGoogleSignIn, state } from "./api.js";
import * as pages from "./pages.js";
import { field, form, h, notify } from "./ui.js";

const main = document.getElementById("main");

const ROUTES = [
  [/^\/?$/, () => pages.overview()],
  [/^\/projects$/, () => pages.projects()],
  [/^\/backups$/, (m, q) => pages.backups(q)],
  [/^\/backups\/([\w-]+)$/, m => pages.backupDetail(m[1])],
  [/^\/restore$/, (m, q) => pages.restoreWizard(q)],
  [/^\/restores\/([\w-]+)$/, m => pages.restoreDetail(m[1])],
  [/^\/schedules$/, () => pages.schedules()],
  [/^\/destinations$/, () => pages.destinations()],
  [/^\/team$/, () => pages.team()],
  [/^\/webhooks$/, () => pages.webhooks()],
  [/^\/webhooks\/([\w-]+)$/, m => pages.webhookDeliveries(m[1])],
  [/^\/audit$/, (m, q) => pages.audit(q)],
  [/^\/tokens$/, () => pages.tokens()],
  [/^\/new-org$/, () => pages.newOrg(refreshOrgs)],
];

function show(title, content) {
  main.replaceChildren(...[content].flat(Infinity).filter(c => c !== null && c !== undefined && c !== false && c !== ""));
  document.title = title ? `${title} · FireBackup` : "FireBackup";
  main.dataset.route = location.hash || "#/";  // which page is drawn (tests wait for it)
  main.setAttribute("aria-busy", "false");
}

function signInPage() {
  document.getElementById("session").hidden = true;
  document.getElementById("nav").hidden = true;
  const parts = [h("h1", {}, "Sign in to FireBackup")];
  if (state.config.emulator) parts.push(h("p", { class: "hint" }, "Local platform: accounts live in the Firebase Auth emulator."));
  parts.push(form("Sign in with e-mail", [
    field("E-mail address", h("input", { name: "email", type: "email", autocomplete: "username", required: true })),
    field("Password", h("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
  ], "Sign in", async d => {
    await signInWithPassword(d.get("email"), d.get("password"));
    await start();
  }));
  if (state.config.googleSignIn) {
    parts.push(h("button", { type: "button", class: "secondary", onclick: () => startGoogleSignIn().catch(e => notify(e.message, true)) },
      "Sign in with Google"));
  }
  show("Sign in", h("div", { class: "signin" }, parts));
}

async function refreshOrgs() {
  await loadOrgs();
  const sw = document.getElementById("org-switch");
  sw.replaceChildren(...state.orgs.map(o => h("option", { value: o.id, selected: o.id === state.org?.id }, `${o.name} (${o.role})`)));
  sw.disabled = state.orgs.length < 2;
  for (const a of document.querySelectorAll("nav a[data-needs]")) a.parentElement.hidden = !can(...a.dataset.needs.split(" "));
}

async function route() {
  pages.stopPolling();
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query || "");
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("href") === `#${path || "/"}`) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  main.setAttribute("aria-busy", "true");
  try {
    await refreshOrgs();  // roles can change at any time: every page is drawn for the current one
    if (location.pathname === "/oauth/callback") return show("Connect a project", await pages.oauthCallback(new URLSearchParams(location.search)));
    if (!state.org && path !== "/new-org") { location.hash = "#/new-org"; return; }
    for (const [re, page] of ROUTES) {
      const m = (path || "/").match(re);
      if (m) {
        const content = await page(m, params);
        show(content[0]?.textContent, content);
        return;
      }
    }
    show("Not found", [h("h1", {}, "Page not found"), h("p", {}, h("a", { href: "#/" }, "Back to the overview"))]);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) { signOut(); return signInPage(); }
    if (e.message === "not signed in" || e.message.startsWith("your session ended")) return signInPage();
    show("Error", [h("h1", {}, "Something went wrong"), h("p", { class: "bad", role: "alert" }, e.message)]);
  }
}

async function start() {
  if (!state.session) return signInPage();
  document.getElementById("session").hidden = false;
  document.getElementById("nav").hidden = false;
  document.getElementById("who").textContent = state.session.email || "";
  await route();
}

async function boot() {
  await loadConfig();
  try { await finishGoogleSignIn(); } catch (e) { notify(e.message, true); }
  document.getElementById("sign-out").addEventListener("click", () => { signOut(); signInPage(); });
  document.getElementById("org-switch").addEventListener("change", ev => { chooseOrg(ev.target.value); route(); });
  window.addEventListener("hashchange", () => { if (state.session) route(); });
  await start();
}

boot();
