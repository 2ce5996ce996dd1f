"""One local platform (make run's, populated by its own demo flow) and one headless Debian chromium for every
browser test of the dashboard; axe-core from infra/local/node_modules checks each page."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from infra.local.demo import seed_firestore
from infra.local.platform import DEMO_EMAIL, DEMO_PASSWORD, PROJECT, Client, Platform, _service_account_key

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
AXE = ROOT / "infra" / "local" / "node_modules" / "axe-core" / "axe.min.js"
LAPTOP, PHONE = {"width": 1366, "height": 768}, {"width": 390, "height": 844}
PASSWORD = "browser-pass-1"
CHUNK_DOCS = 25


@dataclass
class Demo:
    """The running platform, its populated demo organization and the people in it (e-mail -> role)."""

    platform: Platform
    owner: Client
    org: str
    backup_id: str
    documents: int
    people: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.platform.url


def _populate(platform: Platform) -> Demo:
    """The demo organization through the HTTP API, as make run's demo builds it, but without waiting for a
    scheduler tick: two backups started now, a restore, a nightly schedule, a webhook, a token, two members."""
    documents = seed_firestore(PROJECT, "(default)")
    owner = platform.sign_in(DEMO_EMAIL, DEMO_PASSWORD)
    org = owner.call("POST", "/orgs", {"name": "Demo"})["id"]
    project = owner.call("POST", f"/orgs/{org}/projects", {
        "name": "demo", "gcp_project_id": PROJECT, "service_account_key": _service_account_key(PROJECT)})["id"]
    destination = owner.call("POST", f"/orgs/{org}/destinations", {
        "name": "local folder", "kind": "local", "url": (platform.storage / "demo").as_uri()})["id"]
    owner.call("POST", f"/orgs/{org}/schedules", {
        "name": "nightly", "project_id": project, "destination_id": destination, "cron": "0 3 * * *",
        "timezone": "Europe/Paris", "retention": {"keep_last": 7, "keep_weekly": 4}})
    owner.call("POST", f"/orgs/{org}/webhooks", {"url": "https://hooks.firebackup.invalid/notify",
                                                 "events": ["backup.completed", "backup.failed"],
                                                 "secret": "demo-webhook-secret-0123"})
    backups = []
    for _ in range(2):
        started = owner.call("POST", f"/orgs/{org}/backups", {"project_id": project, "destination_id": destination})
        done = owner.wait(f"/orgs/{org}/backups/{started['id']}", lambda b: b["state"] not in ("pending", "running"),
                          timeout=120, what="a demo backup")
        assert done["state"] == "completed", done
        backups.append(done["id"])
    restore = owner.call("POST", f"/orgs/{org}/restores", {
        "backup_id": backups[-1], "target_project_id": project, "target_database": "restored"})
    owner.wait(f"/orgs/{org}/restores/{restore['id']}", lambda r: r["state"] == "completed", timeout=120,
               what="the demo restore")
    owner.call("POST", f"/orgs/{org}/tokens", {"name": "ci", "role": "member"})
    people = {"viewer@firebackup.local": "viewer", "member@firebackup.local": "viewer"}
    for email, role in people.items():
        platform.sign_in(email, PASSWORD)  # an account in the Auth emulator
        owner.call("POST", f"/orgs/{org}/members", {"email": email, "role": role})
    return Demo(platform, owner, org, backups[-1], documents, people)


@pytest.fixture(scope="session")
def demo_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    saved = dict(os.environ)  # the platform points this process's client libraries at its emulators
    try:
        # Small chunks: a backup of the demo data takes several, so its progress has steps to show.
        with Platform(tmp_path_factory.mktemp("dashboard"), tick_seconds=3600,
                      env={"FIREBACKUP_CHUNK_DOCS": str(CHUNK_DOCS)}) as platform:
            yield _populate(platform)
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed (infra/bootstrap.sh installs it: apt-get install chromium)",
                    pytrace=False)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


def open_signed_in(browser: Any, url: str, email: str, password: str, viewport: dict[str, int] = LAPTOP) -> Any:
    """A fresh browser context (its own session storage), signed in through the dashboard's own form."""
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    errors: list[str] = []  # script errors and CSP refusals: each test asserts there are none
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.errors = errors
    page.goto(url + "/")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("heading", level=1).filter(has_text="Overview").or_(
        page.get_by_role("heading", name="New organization")).wait_for()
    return page


def api_failures(page: Any) -> list[str]:
    """Every /v1 call of the page from now on that the API refused (4xx) or failed (5xx)."""
    failures: list[str] = []
    page.on("response", lambda r: failures.append(f"{r.request.method} {r.url} -> {r.status}")
            if "/v1/" in r.url and r.status >= 400 else None)
    return failures


def preview_restore(scope: Any, database: str) -> tuple[str, Any]:
    """Fill the restore wizard's target database, choose overwrite, run the dry run (the real run is not offered
    before it); its result line and the now enabled "Restore now" button. `scope` is the page or one form."""
    scope.get_by_label("Target database").fill(database)
    scope.get_by_label("Mode").select_option("overwrite")
    real = scope.get_by_role("button", name="Restore now")
    assert real.is_disabled()
    scope.get_by_role("button", name="Preview (dry run)").click()
    dry = scope.get_by_test_id("dry-run-result")
    dry.wait_for(timeout=120_000)
    assert real.is_enabled()
    return dry.inner_text(), real


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not AXE.is_file():
        pytest.fail(f"axe-core is missing at {AXE} (infra/bootstrap.sh runs npm ci in infra/local)", pytrace=False)
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())  # evaluated by the driver, not a <script>: the page's CSP stays intact
    found: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target)}))")
    return found


HEADINGS = {"Overview": "Overview", "Projects": "Projects", "Backups": "Backups", "Restore": "Restore",
            "Schedules": "Schedules", "Storage": "Storage destinations", "Team": "Team and roles",
            "Webhooks": "Webhooks", "Audit log": "Audit log", "API tokens": "API tokens",
            "New organization": "New organization"}


def section(page: Any, link: str) -> None:
    """Follow a navigation link and wait until its page is drawn (its own heading, nothing loading)."""
    page.get_by_role("navigation").get_by_role("link", name=link, exact=True).click()
    page.locator("main[aria-busy=false] h1").filter(has_text=HEADINGS[link]).wait_for()
