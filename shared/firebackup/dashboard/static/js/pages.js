// One function per page: each fetches what it shows from /v1 and returns its content. Buttons appear only
// when the caller's role may use them (can(...)); the API authorizes every call again anyway.

import { ApiError, api, atLeast, can, chooseOrg, orgPath, state } from "./api.js";
import { action, bytes, duration, facts, field, form, h, instant, localInput, notify, seconds, select, sizeDurationChart,
         stateBadge, table, toMs, when } from "./ui.js";

const O = "/orgs/{org_id}";
const timers = new Set();
export function stopPolling() { for (const t of timers) clearInterval(t); timers.clear(); }

// Poll `get` every second until `done(value)`; `show(value)` updates the page in place (no reload).
function watch(get, show, done) {
  let busy = false;
  const t = setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      const v = await get();
      show(v);
      if (done(v)) { clearInterval(t); timers.delete(t); }
    } catch (e) { clearInterval(t); timers.delete(t); notify(e.message, true); } finally { busy = false; }
  }, 1000);
  timers.add(t);
}

const all = async path => (await api("GET", `${orgPath(path)}${path.includes("?") ? "&" : "?"}limit=200`)).items;
const byId = items => Object.fromEntries(items.map(i => [i.id, i]));
const go = hash => { location.hash = hash; };
const ACTIVE = ["pending", "running"];

function progressView(job) {
  const pct = Math.round(100 * job.progress);
  return h("div", { class: "progress" },
    h("progress", { max: 100, value: pct, "aria-label": "Progress" }),
    h("p", { "aria-live": "polite", "data-testid": "progress-text" },
      `${pct}% · ${job.chunks_done} of ${job.chunks_total || "?"} chunks · `, stateBadge(job.state)));
}

// --- overview -----------------------------------------------------------------------------------------
export async function overview() {
  const [projects, backups] = await Promise.all([all("/projects"), all("/backups")]);
  const weekAgo = Date.now() - 7 * 86400_000;
  const failures = backups.filter(b => b.state === "failed" && new Date(b.created_at) > weekAgo);
  const stored = backups.filter(b => b.state === "completed").reduce((n, b) => n + b.bytes_stored, 0);
  const last = p => backups.find(b => b.project_id === p.id);
  return [
    h("h1", {}, `Overview · ${state.org.name}`),
    h("div", { class: "cards" },
      h("div", { class: "card" }, h("span", { class: "n" }, projects.length), "protected projects"),
      h("div", { class: "card" }, h("span", { class: "n" }, backups.filter(b => b.state === "completed").length), "completed backups"),
      h("div", { class: "card" }, h("span", { class: failures.length ? "n bad" : "n" }, failures.length), "failures in the last 7 days"),
      h("div", { class: "card" }, h("span", { class: "n" }, bytes(stored)), "storage used")),
    h("h2", {}, "Projects"),
    table("Last backup per project", [
      { label: "Project", cell: p => p.name },
      { label: "Firestore", cell: p => `${p.gcp_project_id}/${p.database_id}`, class: "hide-phone" },
      { label: "Last backup", cell: p => last(p) ? h("a", { href: `#/backups/${last(p).id}` }, when(last(p).created_at)) : "never" },
      { label: "State", cell: p => last(p) ? stateBadge(last(p).state) : "–" },
    ], projects, "no project connected yet"),
    h("h2", {}, "Size and duration over time"),
    sizeDurationChart(backups),
    failures.length ? [h("h2", {}, "Failures in the last 7 days"), backupTable(failures, byId(projects))] : [],
  ];
}

function backupTable(backups, projects) {
  return table("Backups", [
    { label: "Backup", cell: b => h("a", { href: `#/backups/${b.id}` }, b.id) },
    { label: "Project", cell: b => projects[b.project_id]?.name || "(deleted)", class: "hide-phone" },
    { label: "State", cell: b => stateBadge(b.state) },
    { label: "Started", cell: b => when(b.created_at) },
    { label: "Docs", cell: b => b.documents.toLocaleString(), class: "num" },
    { label: "Stored", cell: b => bytes(b.bytes_stored), class: "num hide-phone" },
    { label: "Took", cell: b => duration(seconds(b.started_at, b.finished_at)), class: "num hide-phone" },
  ], backups, "no backups yet");
}

// --- projects -----------------------------------------------------------------------------------------
export async function projects() {
  const [items, dests] = await Promise.all([all("/projects"), all("/destinations")]);
  const windows = await pitrWindows(items);
  const out = [h("h1", {}, "Projects"), table("Connected projects", [
    { label: "Name", cell: p => p.name },
    { label: "Firestore", cell: p => `${p.gcp_project_id}/${p.database_id}` },
    { label: "Credentials", cell: p => p.auth_kind === "oauth" ? "Google OAuth" : "service-account key", class: "hide-phone" },
    { label: "Actions", cell: p => [
      can("POST", `${O}/projects/{project_id}/test`) && action("Test connection", async () => {
        const r = await api("POST", orgPath(`/projects/${p.id}/test`));
        notify(r.ok ? `${p.name}: connection works` : `${p.name}: ${r.message}`, !r.ok);
      }, { aria: `Test connection to ${p.name}` }),
      can("POST", `${O}/backups`) && action("Back up now", () => go(`#/backups?new=${p.id}`), { class: "secondary", aria: `Back up now: ${p.name}` }),
      can("DELETE", `${O}/projects/{project_id}`) && action("Delete", async () => {
        await api("DELETE", orgPath(`/projects/${p.id}?backups=detach`)); notify("project deleted; its backups are kept"); go("#/projects?r=" + Date.now());
      }, { class: "danger", aria: `Delete ${p.name}`, confirm: `Delete project ${p.name}? Its backups are kept, detached.` }),
    ] },
  ], items, "no project connected yet")];
  out.push(...items.map((p, i) => pitrPanel(p, windows[i], dests)));
  if (can("POST", `${O}/projects`)) {
    const key = h("textarea", { name: "key", required: true, spellcheck: false });
    const file = h("input", { type: "file", accept: "application/json,.json" });
    file.addEventListener("change", async () => { if (file.files[0]) key.value = await file.files[0].text(); });
    out.push(form("Connect a project with a service-account key", [
      field("Name", h("input", { name: "name", required: true, maxlength: 200 })),
      field("Google Cloud project ID", h("input", { name: "gcp", required: true })),
      field("Database ID", h("input", { name: "db", value: "(default)", required: true })),
      field("Key file (JSON)", file, "Read in your browser and sent once to the API, which stores it encrypted."),
      field("…or paste the key", key),
    ], "Connect project", async (d, f) => {
      let parsed;
      try { parsed = JSON.parse(d.get("key")); } catch { throw new Error("the key is not valid JSON; paste the whole key file"); }
      const p = await api("POST", orgPath("/projects"), { name: d.get("name"), gcp_project_id: d.get("gcp"),
        database_id: d.get("db"), service_account_key: parsed });
      key.value = ""; f.reset();
      notify(`connected ${p.name}`); go("#/projects?r=" + Date.now());
    }));
    out.push(h("section", { class: "panel" }, h("h2", {}, "Connect with Google"),
      h("p", { class: "hint" }, "Grant FireBackup read access to a project with your Google account instead of a key."),
      action("Connect with Google", async () => {
        const r = await api("POST", orgPath("/projects/oauth/start"));
        sessionStorage.setItem("firebackup.oauth.org", state.org.id);
        location.assign(r.authorization_url);
      })));
  }
  return out;
}

// --- point-in-time recovery ----------------------------------------------------------------------------
const PITR = `${O}/projects/{project_id}/pitr`;
const pitrWindows = projectList => Promise.all(projectList.map(p => api("GET", orgPath(`/projects/${p.id}/pitr`))));

function pitrWindowView(w) {
  return facts([
    ["Earliest restorable", w.earliest_restorable ? instant(w.earliest_restorable) : "none yet: the first backup taken after PITR was turned on starts the window"],
    ["Latest captured change", w.latest_captured ? instant(w.latest_captured) : "none captured yet"],
    ["Gaps", w.gaps.length ? h("ul", { "aria-label": "Gaps in capture" }, w.gaps.map(g =>
      h("li", {}, `${instant(g.start)} to ${instant(g.end)}: ${g.reason}`))) : "none"],
  ]);
}

// A project's PITR settings and covered window; the settings form only for a role that may change them.
function pitrPanel(p, w, dests) {
  const title = `Point-in-time recovery of ${p.name}`;
  const dest = dests.find(d => d.id === w.destination_id);
  const view = [h("p", { "data-testid": "pitr-status" }, w.enabled
    ? `On: changes are kept ${w.retention_days} days in ${dest?.name || w.destination_id}.` : "Off."), pitrWindowView(w)];
  if (!can("PUT", PITR) || !dests.length) return h("section", { class: "panel", "aria-label": title }, h("h2", {}, title), ...view);
  return form(title, [...view,
    h("div", { class: "field" }, h("label", {}, h("input", { type: "checkbox", name: "enabled", checked: w.enabled }), " Capture changes for point-in-time restores")),
    field("Retention (days)", h("input", { name: "retention_days", type: "number", min: 1, required: true, value: w.retention_days })),
    field("Segment destination", select("destination", dests.map(d => [d.id, d.name]), w.destination_id || undefined)),
  ], "Save PITR settings", async d => {
    await api("PUT", orgPath(`/projects/${p.id}/pitr`), { enabled: d.get("enabled") === "on",
      retention_days: Number(d.get("retention_days")), destination_id: d.get("destination") });
    notify(`${p.name}: PITR settings saved`); go(`#/projects?r=${Date.now()}`);
  });
}

export async function oauthCallback(params) {
  const org = sessionStorage.getItem("firebackup.oauth.org");  // the organization the flow was started in
  if (org) chooseOrg(org);
  return [h("h1", {}, "Finish connecting the project"), form("Name the project Google granted", [
    field("Name", h("input", { name: "name", required: true })),
    field("Google Cloud project ID", h("input", { name: "gcp", required: true })),
    field("Database ID", h("input", { name: "db", value: "(default)", required: true })),
  ], "Connect project", async d => {
    await api("POST", orgPath("/projects/oauth/complete"), { state: params.get("state"), code: params.get("code"),
      name: d.get("name"), gcp_project_id: d.get("gcp"), database_id: d.get("db") });
    history.replaceState(null, "", "/#/projects"); go("#/projects");
  })];
}

// --- backups ------------------------------------------------------------------------------------------
export async function backups(params) {
  const [items, projectList, dests] = await Promise.all([all("/backups"), all("/projects"), all("/destinations")]);
  const projectsById = byId(projectList);
  const st = params.get("state") || "", pr = params.get("project") || "";
  const shown = items.filter(b => (!st || b.state === st) && (!pr || b.project_id === pr));
  const filters = h("form", { class: "panel", "aria-label": "Filter backups" }, h("h2", {}, "Filter"),
    field("State", select("state", [["", "any"], ...["completed", "running", "pending", "failed", "cancelled"].map(x => [x, x])], st)),
    field("Project", select("project", [["", "any"], ...projectList.map(p => [p.id, p.name])], pr)),
    h("button", { type: "submit", class: "secondary" }, "Apply filters"));
  filters.addEventListener("submit", ev => {
    ev.preventDefault();
    const d = new FormData(filters);
    go(`#/backups?${new URLSearchParams({ state: d.get("state"), project: d.get("project") })}`);
  });
  const out = [h("h1", {}, "Backups")];
  if (can("POST", `${O}/backups`) && projectList.length && dests.length) {
    out.push(form("Start a backup", [
      field("Project", select("project", projectList.map(p => [p.id, p.name]), params.get("new") || undefined)),
      field("Destination", select("destination", dests.map(d => [d.id, d.name]))),
      field("Collections", h("input", { name: "collections", placeholder: "all" }), "Comma-separated; empty for all."),
      h("div", { class: "field" }, h("label", {}, h("input", { type: "checkbox", name: "auth" }), " Include Firebase Auth users")),
    ], "Start backup", async d => {
      const cols = String(d.get("collections") || "").split(",").map(x => x.trim()).filter(Boolean);
      const b = await api("POST", orgPath("/backups"), { project_id: d.get("project"), destination_id: d.get("destination"),
        collections: cols.length ? cols : null, include_auth: d.get("auth") === "on" });
      go(`#/backups/${b.id}`);
    }));
  }
  out.push(filters, backupTable(shown, projectsById));
  return out;
}

export async function backupDetail(id) {
  const b = await api("GET", orgPath(`/backups/${id}`));
  const live = h("div", {}, progressView(b));
  const details = h("div", {});
  const render = async (job) => {
    details.replaceChildren(facts([
      ["State", stateBadge(job.state)], ["Project", job.project_id || "(deleted)"],
      ["Read time", when(job.read_time)], ["Documents", job.documents.toLocaleString()],
      ["Chunks", `${job.chunks_done} of ${job.chunks_total}`], ["Bytes raw", bytes(job.bytes_raw)],
      ["Bytes stored", bytes(job.bytes_stored)], ["Took", duration(seconds(job.started_at, job.finished_at))],
      ["Verified", job.verify_state || "not yet"], ["Collections", job.collections?.join(", ") || "all"],
      ["Auth users", job.include_auth ? "included" : "not included"],
      ...(job.error ? [["Error", h("span", { class: "bad" }, job.error)]] : []),
    ]));
    if (job.state === "completed") {
      const m = await api("GET", orgPath(`/backups/${id}/manifest`));
      details.append(h("h2", {}, "Stored manifest"), facts([
        ["Chunks", String(m.chunks)], ["Encrypted", m.stored?.encrypted ? `yes (key ${m.stored.kek_id || "platform"})` : (m.stored ? "no" : "unknown")],
        ["Format", m.stored ? `version ${m.stored.format_version}` : (m.stored_error || "–")], ["Manifest", h("code", {}, m.manifest_key || "–")],
      ]));
    }
  };
  await render(b);
  // What may be done depends on the state: redrawn with every update of the live view.
  const buttons = h("p", {});
  const drawButtons = job => buttons.replaceChildren(...[
    can("POST", `${O}/backups/{backup_id}/verify`) && job.state === "completed" && action("Verify", async () => {
      await api("POST", orgPath(`/backups/${id}/verify`)); notify("verification started");
      watch(() => api("GET", orgPath(`/backups/${id}`)), render, j => j.verify_state && j.verify_state !== "running" && j.verify_state !== "pending");
    }),
    can("POST", `${O}/restores`) && job.state === "completed" && action("Restore…", () => go(`#/restore?backup=${id}`), { class: "secondary" }),
    can("POST", `${O}/backups/{backup_id}/cancel`) && ACTIVE.includes(job.state) && action("Cancel", async () => {
      await api("POST", orgPath(`/backups/${id}/cancel`)); notify("cancelled");
    }, { class: "danger" }),
    can("DELETE", `${O}/backups/{backup_id}`) && !ACTIVE.includes(job.state) && action("Delete", async () => {
      await api("DELETE", orgPath(`/backups/${id}`)); go("#/backups");
    }, { class: "danger", confirm: "Delete this backup and its stored objects?" })].filter(Boolean));
  drawButtons(b);
  if (ACTIVE.includes(b.state)) {
    watch(() => api("GET", orgPath(`/backups/${id}`)), async j => {
      live.replaceChildren(progressView(j));
      if (!ACTIVE.includes(j.state)) { drawButtons(j); await render(j); }
    }, j => !ACTIVE.includes(j.state));
  }
  return [h("h1", {}, `Backup ${id}`), live, buttons, details];
}

// --- restores -----------------------------------------------------------------------------------------
const MODES = [["skip", "skip: only create what is missing"], ["merge", "merge: update fields, keep others"],
               ["overwrite", "overwrite: replace documents"]];
const MEMBER_MODES = "As a member you may preview any mode; a real restore in merge or overwrite mode needs an admin.";
const modeField = () => field("Mode", select("mode", MODES, atLeast("admin") ? "overwrite" : "skip"),
  atLeast("admin") ? undefined : MEMBER_MODES);
const targetFields = projectList => [
  field("Target project", select("target", projectList.map(p => [p.id, `${p.name} (${p.gcp_project_id})`]))),
  field("Target database", h("input", { name: "database", placeholder: "the project's own" }), "A database ID such as restored; empty for the project's."),
];

// What a restore did or would do. A restore job (it has a state) shows its live progress; a point-in-time
// restore that ran inside the request answers with its finished result, shown as it is.
function restoreOutcome(r, dry) {
  const finished = r.state === undefined || r.state === "completed";
  const verb = dry ? "would write" : "wrote";
  const extra = r.changes_applied !== undefined
    ? `, from backup ${r.backup_id} and ${r.changes_applied.toLocaleString()} captured changes` : "";
  return [
    r.state !== undefined ? progressView(r) : "",
    finished ? h("p", { "data-testid": dry ? "dry-run-result" : "restore-result" },
      `The restore ${verb} ${r.documents_written.toLocaleString()} documents${extra}.`) : "",
    r.error ? h("p", { class: "bad" }, r.error) : "",
    ...(r.warnings || []).map(w => h("p", { class: "hint" }, `Warning: ${w}`)),
    ...(r.errors || []).map(e => h("p", { class: "bad" }, e)),
  ];
}

// The wizard's form: a dry run first, then the real run it previewed. `post(body)` starts a restore; its answer
// is either a restore job (followed on /restores/{id}) or a finished result. A refusal is shown in the form.
function restoreForm(title, fields, toBody, post, onRefused = () => {}) {
  const result = h("div", { "aria-live": "polite" });
  const realButton = h("button", { type: "button", disabled: true }, "Restore now");
  let body = null;
  const refused = e => {
    result.replaceChildren(h("p", { class: "bad", role: "alert", "data-testid": "restore-refused" }, e.message));
    onRefused(e);
  };
  const f = form(title, fields, "Preview (dry run)", async d => {
    body = toBody(d);
    realButton.disabled = true;
    let r;
    try { r = await post({ ...body, dry_run: true }); } catch (e) { if (e instanceof ApiError) return refused(e); throw e; }
    const draw = j => {
      result.replaceChildren(h("h2", {}, "Dry run"), ...restoreOutcome(j, true));
      realButton.disabled = !((j.state === undefined || j.state === "completed") && (atLeast("admin") || body.mode === "skip"));
    };
    draw(r);
    if (r.id && ACTIVE.includes(r.state)) watch(() => api("GET", orgPath(`/restores/${r.id}`)), draw, j => !ACTIVE.includes(j.state));
  });
  realButton.addEventListener("click", async () => {
    realButton.disabled = true;
    try {
      const r = await post({ ...body, dry_run: false });
      if (r.id) go(`#/restores/${r.id}`);  // a restore job: its own page follows it live
      else result.replaceChildren(h("h2", {}, "Restored"), ...restoreOutcome(r, false));
    } catch (e) { if (e instanceof ApiError) refused(e); else notify(e.message, true); realButton.disabled = false; }
  });
  f.append(h("p", { class: "hint" }, "Preview first: the real restore is offered once the dry run has completed."), realButton, result);
  return f;
}

function backupRestoreForm(done, projectList, params) {
  return restoreForm("Restore a backup", [
    field("Backup", select("backup", done.map(b => [b.id, `${when(b.created_at)} · ${b.documents} docs · ${b.id}`]), params.get("backup") || undefined)),
    ...targetFields(projectList),
    field("Collections", h("input", { name: "collections", placeholder: "all" }), "Comma-separated; empty for all."),
    modeField(),
  ], d => {
    const cols = String(d.get("collections") || "").split(",").map(x => x.trim()).filter(Boolean);
    return { backup_id: d.get("backup"), target_project_id: d.get("target"), mode: d.get("mode"),
             target_database: d.get("database") || null, collections: cols.length ? cols : null };
  }, body => api("POST", orgPath("/restores"), body));
}

function chosenInstant(value) {
  if (!value) throw new Error("choose an instant: the project needs a backup taken since PITR was turned on");
  return new Date(String(value)).toISOString();  // a datetime-local value reads as the browser's local time
}

// Restore to an instant: bounded by the source project's covered window (from its earliest restorable instant
// up to now; changes are captured up to the latest one shown), with its gaps listed.
function instantRestoreForm(sources, windows, projectList) {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  const at = h("input", { name: "at", type: "datetime-local", step: "any", required: true });
  const source = select("source", sources.map(p => [p.id, `${p.name} (${p.gcp_project_id})`]));
  const covered = h("div", { "aria-live": "polite" });
  const bound = () => {
    const w = windows[source.value];
    covered.replaceChildren(h("h3", {}, "Covered window"), pitrWindowView(w));
    at.disabled = !w.earliest_restorable;
    if (w.earliest_restorable) at.min = localInput(toMs(w.earliest_restorable, true));
    at.max = localInput(Math.max(Date.now(), w.latest_captured ? toMs(w.latest_captured) : 0));
  };
  source.addEventListener("change", bound);
  at.addEventListener("focus", bound);  // "now" moves on while the page is open
  bound();
  const override = h("div", { class: "field", hidden: true }, h("label", {},
    h("input", { type: "checkbox", name: "allow_gaps" }), " Restore anyway: accept that writes in the gap may be missing"));
  return restoreForm("Restore to an instant", [
    field("Project", source, "Whose database, as it was at the instant."), covered,
    field(`Instant (${zone})`, at, "Down to the millisecond; within the covered window."),
    ...targetFields(projectList),
    field("Scope", h("input", { name: "scope", placeholder: "the whole database" }),
      "Empty for the whole database, a collection such as users, or a document path such as users/alice."),
    modeField(), override,
  ], d => ({ at: chosenInstant(d.get("at")), target_project_id: d.get("target"),
             target_database: d.get("database") || null, scope: d.get("scope") || null, mode: d.get("mode"),
             allow_gaps: d.get("allow_gaps") === "on" }),
  body => api("POST", orgPath(`/projects/${source.value}/pitr/restore`), body),
  // A 409 over a gap may be overridden, explicitly, by whoever may start the restore at all.
  e => { override.hidden = !(e.status === 409 && e.message.includes("allow_gaps")); });
}

export async function restoreWizard(params) {
  const [backupList, projectList, restores] = await Promise.all([all("/backups"), all("/projects"), all("/restores")]);
  const done = backupList.filter(b => b.state === "completed");
  const out = [h("h1", {}, "Restore")];
  if (can("POST", `${O}/restores`)) {
    if (!done.length || !projectList.length) out.push(h("p", {}, "A restore needs a completed backup and a connected project."));
    else {
      const byBackup = backupRestoreForm(done, projectList, params);
      const windows = can("POST", `${PITR}/restore`) ? await pitrWindows(projectList) : [];
      const sources = projectList.filter((p, i) => windows[i]?.enabled);
      out.push(byBackup);
      if (sources.length) {
        const byInstant = instantRestoreForm(sources, Object.fromEntries(projectList.map((p, i) => [p.id, windows[i]])), projectList);
        const fromInstant = params.get("from") === "instant";
        byInstant.hidden = !fromInstant; byBackup.hidden = fromInstant;
        const choice = (value, label) => h("label", {}, h("input", { type: "radio", name: "restore-from", value, checked: (value === "instant") === fromInstant,
          onchange: () => { byInstant.hidden = value !== "instant"; byBackup.hidden = value === "instant"; } }), ` ${label} `);
        out.splice(1, 0, h("fieldset", {}, h("legend", {}, "Restore from"), choice("backup", "a backup"), choice("instant", "an instant")), byInstant);
      }
    }
  }
  out.push(h("h2", {}, "Recent restores"), table("Restores", [
    { label: "Restore", cell: r => h("a", { href: `#/restores/${r.id}` }, r.id) },
    { label: "Kind", cell: r => r.dry_run ? "dry run" : r.mode },
    { label: "State", cell: r => stateBadge(r.state) },
    { label: "Documents", cell: r => r.documents_written.toLocaleString(), class: "num" },
    { label: "Started", cell: r => when(r.created_at), class: "hide-phone" },
  ], restores, "no restores yet"));
  return out;
}

export async function restoreDetail(id) {
  const r = await api("GET", orgPath(`/restores/${id}`));
  const live = h("div", {}, progressView(r));
  const info = h("div", {});
  const render = j => info.replaceChildren(facts([
    ["Backup", h("a", { href: `#/backups/${j.backup_id}` }, j.backup_id)], ["Target", `${j.target_project_id} / ${j.target_database || "(its own database)"}`],
    ["Mode", j.dry_run ? `dry run (${j.mode})` : j.mode], ["Documents written", j.documents_written.toLocaleString()],
    ["Took", duration(seconds(j.started_at, j.finished_at))], ...(j.error ? [["Error", h("span", { class: "bad" }, j.error)]] : []),
  ]));
  render(r);
  if (ACTIVE.includes(r.state)) watch(() => api("GET", orgPath(`/restores/${id}`)), j => { live.replaceChildren(progressView(j)); render(j); }, j => !ACTIVE.includes(j.state));
  return [h("h1", {}, `Restore ${id}`), live,
    can("POST", `${O}/restores/{restore_id}/cancel`) && ACTIVE.includes(r.state) && action("Cancel", async () => {
      await api("POST", orgPath(`/restores/${id}/cancel`)); notify("cancelled");
    }, { class: "danger" }), info];
}

// --- schedules ----------------------------------------------------------------------------------------
function nextRunsView(s, runs) {
  const fmt = new Intl.DateTimeFormat(undefined, { weekday: "short", dateStyle: undefined, year: "numeric", month: "short",
    day: "numeric", hour: "2-digit", minute: "2-digit", timeZone: runs.timezone, timeZoneName: "short" });
  return h("ul", { "aria-label": `Next runs of ${s.name}` }, runs.runs.slice(0, 3).map(r => h("li", {}, fmt.format(new Date(r.at)))));
}

export async function schedules() {
  const [items, projectList, dests] = await Promise.all([all("/schedules"), all("/projects"), all("/destinations")]);
  const projectsById = byId(projectList), destsById = byId(dests);
  const runs = await Promise.all(items.map(s => api("GET", orgPath(`/schedules/${s.id}/next-runs?count=3`))));
  const out = [h("h1", {}, "Schedules"), table("Schedules", [
    { label: "Name", cell: s => s.name },
    { label: "When", cell: s => [h("code", {}, s.cron), ` (${s.timezone})`, s.enabled ? "" : " · disabled"] },
    { label: "Next runs", cell: (s) => nextRunsView(s, runs[items.indexOf(s)]) },
    { label: "What", cell: s => `${projectsById[s.project_id]?.name || s.project_id} → ${destsById[s.destination_id]?.name || s.destination_id}`, class: "hide-phone" },
    { label: "Retention", cell: s => Object.entries(s.retention).filter(([, v]) => v !== null).map(([k, v]) => `${k} ${v}`).join(", ") || "keep all", class: "hide-phone" },
    { label: "Actions", cell: s => [
      action("Retention dry run", async () => showRetention(s), { class: "secondary", aria: `Retention dry run of ${s.name}` }),
      can("PATCH", `${O}/schedules/{schedule_id}`) && action(s.enabled ? "Disable" : "Enable", async () => {
        await api("PATCH", orgPath(`/schedules/${s.id}`), { enabled: !s.enabled }); go(`#/schedules?r=${Date.now()}`);
      }, { class: "secondary", aria: `${s.enabled ? "Disable" : "Enable"} ${s.name}` }),
      can("DELETE", `${O}/schedules/{schedule_id}`) && action("Delete", async () => {
        await api("DELETE", orgPath(`/schedules/${s.id}`)); go(`#/schedules?r=${Date.now()}`);
      }, { class: "danger", aria: `Delete ${s.name}`, confirm: `Delete schedule ${s.name}?` }),
    ] },
  ], items, "no schedules yet")];
  const retention = h("section", { "aria-live": "polite", id: "retention" });
  async function showRetention(s) {
    const p = await api("GET", orgPath(`/schedules/${s.id}/retention/preview`));
    retention.replaceChildren(h("h2", {}, `Retention dry run: ${s.name}`),
      table("Would keep", [{ label: "Backup", cell: k => h("a", { href: `#/backups/${k.backup_id}` }, k.backup_id) },
        { label: "Time", cell: k => when(k.time, p.timezone) }, { label: "Why", cell: k => k.reasons.join(", ") }], p.keep, "nothing"),
      table("Would remove", [{ label: "Backup", cell: k => h("a", { href: `#/backups/${k.backup_id}` }, k.backup_id) },
        { label: "Time", cell: k => when(k.time, p.timezone) }], p.remove, "nothing"));
    retention.scrollIntoView();
  }
  out.push(retention);
  if (can("POST", `${O}/schedules`) && projectList.length && dests.length) {
    out.push(form("New schedule", [
      field("Name", h("input", { name: "name", required: true })),
      field("Project", select("project", projectList.map(p => [p.id, p.name]))),
      field("Destination", select("destination", dests.map(d => [d.id, d.name]))),
      field("Cron", h("input", { name: "cron", required: true, value: "0 3 * * *" }), "minute hour day-of-month month day-of-week, or @daily"),
      field("Time zone", h("input", { name: "tz", required: true, value: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC" }), "An IANA name such as Europe/Paris"),
      field("Keep last", h("input", { name: "keep_last", type: "number", min: 1, value: 7 })),
      field("Keep daily", h("input", { name: "keep_daily", type: "number", min: 1 })),
      field("Keep weekly", h("input", { name: "keep_weekly", type: "number", min: 1 })),
      field("Keep monthly", h("input", { name: "keep_monthly", type: "number", min: 1 })),
    ], "Create schedule", async d => {
      const retention = {};
      for (const k of ["keep_last", "keep_daily", "keep_weekly", "keep_monthly"]) if (d.get(k)) retention[k] = Number(d.get(k));
      await api("POST", orgPath("/schedules"), { name: d.get("name"), project_id: d.get("project"), destination_id: d.get("destination"),
        cron: d.get("cron"), timezone: d.get("tz"), retention });
      notify("schedule created"); go(`#/schedules?r=${Date.now()}`);
    }));
  }
  return out;
}

// --- destinations -------------------------------------------------------------------------------------
export async function destinations() {
  const items = await all("/destinations");
  const out = [h("h1", {}, "Storage destinations"), table("Destinations", [
    { label: "Name", cell: d => d.name }, { label: "Kind", cell: d => d.kind },
    { label: "Where", cell: d => h("code", {}, d.url) },
    { label: "Options", cell: d => Object.entries(d.options).map(([k, v]) => `${k}=${v}`).join(", ") || "–", class: "hide-phone" },
    { label: "Actions", cell: d => [
      can("POST", `${O}/destinations/{destination_id}/test`) && action("Test", async () => {
        const r = await api("POST", orgPath(`/destinations/${d.id}/test`));
        notify(r.ok ? `${d.name}: a probe object was written and deleted` : `${d.name}: ${r.message}`, !r.ok);
      }, { class: "secondary", aria: `Test ${d.name}` }),
      can("DELETE", `${O}/destinations/{destination_id}`) && action("Delete", async () => {
        await api("DELETE", orgPath(`/destinations/${d.id}?backups=detach`)); go(`#/destinations?r=${Date.now()}`);
      }, { class: "danger", aria: `Delete ${d.name}`, confirm: `Delete destination ${d.name}? Its backups stay listed, read-only.` }),
    ] },
  ], items, "no destinations yet")];
  if (can("POST", `${O}/destinations`)) {
    out.push(form("Add a destination", [
      field("Name", h("input", { name: "name", required: true })),
      field("Kind", select("kind", [["gcs", "Google Cloud Storage"], ["s3", "Amazon S3 or compatible"], ["local", "local folder (development)"]])),
      field("URL", h("input", { name: "url", required: true, placeholder: "gs://bucket/prefix" }), "gs://bucket/prefix, s3://bucket/prefix or file:///path"),
      field("Region (S3)", h("input", { name: "region" })),
      field("Access key ID (S3)", h("input", { name: "akid", autocomplete: "off" })),
      field("Secret access key (S3)", h("input", { name: "secret", type: "password", autocomplete: "off" }), "Stored encrypted; never shown again."),
    ], "Add destination", async (d, f) => {
      const body = { name: d.get("name"), kind: d.get("kind"), url: d.get("url") };
      if (d.get("region")) body.region = d.get("region");
      if (d.get("akid")) body.credentials = { access_key_id: d.get("akid"), secret_access_key: d.get("secret") };
      await api("POST", orgPath("/destinations"), body);
      f.reset(); notify("destination added"); go(`#/destinations?r=${Date.now()}`);
    }));
  }
  return out;
}

// --- team ---------------------------------------------------------------------------------------------
export async function team() {
  const members = await all("/members");
  const roles = ["viewer", "member", "admin", "owner"].filter(r => r !== "owner" || atLeast("owner"));
  const mayChange = can("PATCH", `${O}/members/{user_id}`);
  const out = [h("h1", {}, "Team and roles"), table("Members", [
    { label: "Member", cell: m => m.email || m.user_id },
    { label: "Role", cell: m => {
      if (!mayChange || (m.role === "owner" && !atLeast("owner"))) return m.role;
      const sel = select("role", roles.map(r => [r, r]), m.role);
      sel.setAttribute("aria-label", `Role of ${m.email}`);
      return [sel, action("Save role", async () => {
        await api("PATCH", orgPath(`/members/${m.user_id}`), { role: sel.value }); notify(`${m.email} is now ${sel.value}`);
        go(`#/team?r=${Date.now()}`);
      }, { class: "secondary", aria: `Save role of ${m.email}` })];
    } },
    { label: "Since", cell: m => when(m.created_at), class: "hide-phone" },
    { label: "Actions", cell: m => can("DELETE", `${O}/members/{user_id}`) && (m.role !== "owner" || atLeast("owner")) ? action("Remove", async () => {
      await api("DELETE", orgPath(`/members/${m.user_id}`)); go(`#/team?r=${Date.now()}`);
    }, { class: "danger", aria: `Remove ${m.email}`, confirm: `Remove ${m.email} from the organization?` }) : "" },
  ], members)];
  if (can("POST", `${O}/members`)) {
    out.push(form("Invite a member", [
      field("E-mail address", h("input", { name: "email", type: "email", required: true })),
      field("Role", select("role", roles.map(r => [r, r]), "viewer")),
    ], "Invite", async (d, f) => {
      await api("POST", orgPath("/members"), { email: d.get("email"), role: d.get("role") });
      f.reset(); notify("invited: they join when they sign in with that address"); go(`#/team?r=${Date.now()}`);
    }));
  }
  return out;
}

// --- webhooks -----------------------------------------------------------------------------------------
export async function webhooks() {
  const items = await all("/webhooks");
  const out = [h("h1", {}, "Webhooks"), table("Webhooks", [
    { label: "URL", cell: w => h("code", {}, w.url) }, { label: "Events", cell: w => w.events.join(", ") },
    { label: "Actions", cell: w => [h("a", { href: `#/webhooks/${w.id}` }, "Delivery log"), " ",
      can("DELETE", `${O}/webhooks/{webhook_id}`) && action("Delete", async () => {
        await api("DELETE", orgPath(`/webhooks/${w.id}`)); go(`#/webhooks?r=${Date.now()}`);
      }, { class: "danger", aria: `Delete webhook ${w.url}`, confirm: `Delete the webhook to ${w.url}?` })] },
  ], items, "no webhooks yet")];
  if (can("POST", `${O}/webhooks`)) {
    const events = ["backup.completed", "backup.failed", "restore.completed", "restore.failed"];
    out.push(form("Add a webhook", [
      field("URL", h("input", { name: "url", type: "url", required: true, placeholder: "https://" })),
      h("fieldset", {}, h("legend", {}, "Events"), events.map(e => h("label", {}, h("input", { type: "checkbox", name: "events", value: e, checked: e.endsWith("failed") }), ` ${e} `))),
      field("Signing secret", h("input", { name: "secret", type: "password", required: true, minlength: 16, autocomplete: "off" }), "At least 16 characters; used to sign each delivery."),
    ], "Add webhook", async (d, f) => {
      await api("POST", orgPath("/webhooks"), { url: d.get("url"), events: d.getAll("events"), secret: d.get("secret") });
      f.reset(); go(`#/webhooks?r=${Date.now()}`);
    }));
  }
  return out;
}

export async function webhookDeliveries(id) {
  const [w, log] = await Promise.all([api("GET", orgPath(`/webhooks/${id}`)), all(`/webhooks/${id}/deliveries`)]);
  return [h("h1", {}, "Webhook delivery log"), h("p", {}, h("code", {}, w.url)), table("Deliveries, newest first", [
    { label: "Event", cell: d => d.event }, { label: "State", cell: d => h("span", { class: d.state === "delivered" ? "ok" : d.state === "failed" ? "bad" : "" }, d.state) },
    { label: "Attempts", cell: d => d.attempts, class: "num" }, { label: "Status", cell: d => d.status_code ?? "–", class: "num" },
    { label: "Error", cell: d => d.error || "–", class: "hide-phone" }, { label: "When", cell: d => when(d.last_attempt_at || d.created_at) },
  ], log, "no deliveries yet")];
}

// --- audit --------------------------------------------------------------------------------------------
export async function audit(params) {
  const q = new URLSearchParams();
  for (const k of ["actor", "action", "resource", "since", "until"]) if (params.get(k)) q.set(k, k === "since" || k === "until" ? new Date(params.get(k)).toISOString() : params.get(k));
  const items = await all(`/audit?${q}`);
  const filters = form("Filter", [
    field("Action", h("input", { name: "action", value: params.get("action") || "", placeholder: "backup." }), "An action, or a prefix ending in a dot"),
    field("Actor (user ID)", h("input", { name: "actor", value: params.get("actor") || "" })),
    field("Resource ID", h("input", { name: "resource", value: params.get("resource") || "" })),
    field("Since", h("input", { name: "since", type: "datetime-local", value: params.get("since") || "" })),
    field("Until", h("input", { name: "until", type: "datetime-local", value: params.get("until") || "" })),
  ], "Apply filters", async d => {
    const p = new URLSearchParams();
    for (const [k, v] of d.entries()) if (v) p.set(k, v);
    go(`#/audit?${p}`);
  });
  return [h("h1", {}, "Audit log"), filters, table("Audit log, newest first", [
    { label: "When", cell: a => when(a.created_at) }, { label: "Action", cell: a => a.action },
    { label: "Result", cell: a => h("span", { class: a.result === "success" ? "ok" : "bad" }, a.result) },
    { label: "Actor", cell: a => `${a.actor_type} ${a.actor_id || ""}`, class: "hide-phone" },
    { label: "Resource", cell: a => a.resource_id || "–", class: "hide-phone" },
  ], items, "no entries match")];
}

// --- API tokens ---------------------------------------------------------------------------------------
export async function tokens() {
  const items = await all("/tokens");
  const shown = h("div", { "aria-live": "polite" });
  const out = [h("h1", {}, "API tokens"), shown, table("Tokens", [
    { label: "Name", cell: t => t.name }, { label: "Role", cell: t => t.role }, { label: "Prefix", cell: t => h("code", {}, t.prefix) },
    { label: "Expires", cell: t => t.revoked_at ? "revoked" : when(t.expires_at), class: "hide-phone" },
    { label: "Last used", cell: t => when(t.last_used_at), class: "hide-phone" },
    { label: "Actions", cell: t => !t.revoked_at && can("DELETE", `${O}/tokens/{token_id}`) && action("Revoke", async () => {
      await api("DELETE", orgPath(`/tokens/${t.id}`)); go(`#/tokens?r=${Date.now()}`);
    }, { class: "danger", aria: `Revoke ${t.name}`, confirm: `Revoke token ${t.name}?` }) },
  ], items, "no tokens yet")];
  if (can("POST", `${O}/tokens`)) {
    out.push(form("Create a token", [
      field("Name", h("input", { name: "name", required: true })),
      field("Role", select("role", ["viewer", "member", "admin"].map(r => [r, r]), "viewer"), "It never does more than your own role."),
      field("Expires in (days)", h("input", { name: "days", type: "number", min: 1, max: 365, value: 90 })),
    ], "Create token", async (d, f) => {
      const t = await api("POST", orgPath("/tokens"), { name: d.get("name"), role: d.get("role"), expires_in_days: Number(d.get("days")) || null });
      f.reset();
      shown.replaceChildren(h("section", { class: "panel" }, h("h2", {}, `Token ${t.name} created`),
        h("p", {}, "Copy it now: it is shown once and cannot be shown again."), h("code", { class: "secret", "data-testid": "new-token" }, t.token)));
    }));
  }
  return out;
}

// --- organizations ------------------------------------------------------------------------------------
export async function newOrg(reload) {
  return [h("h1", {}, "New organization"), form("Create an organization", [
    field("Name", h("input", { name: "name", required: true, maxlength: 200 })),
  ], "Create organization", async d => {
    const o = await api("POST", "/orgs", { name: d.get("name") });
    localStorage.setItem("firebackup.org", o.id);
    await reload(); go("#/");
  })];
}
