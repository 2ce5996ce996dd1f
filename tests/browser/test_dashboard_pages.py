"""Every dashboard page, populated by the demo: a screenshot at laptop and phone width, no serious or critical
axe-core violation, no script error or CSP refusal, and the strict Content-Security-Policy on every page."""

from __future__ import annotations

import pytest
import requests

from infra.local.platform import DEMO_EMAIL, DEMO_PASSWORD
from tests.browser.conftest import ARTIFACTS, LAPTOP, PHONE, Demo, axe_violations, open_signed_in

pytestmark = pytest.mark.browser


def _pages(d: Demo) -> dict[str, str]:
    restores = d.owner.call("GET", f"/orgs/{d.org}/restores")["items"]
    webhook = d.owner.call("GET", f"/orgs/{d.org}/webhooks")["items"][0]["id"]
    return {"overview": "#/", "projects": "#/projects", "backups": "#/backups",
            "backup": f"#/backups/{d.backup_id}", "restore": "#/restore",
            "restore-detail": f"#/restores/{restores[0]['id']}", "schedules": "#/schedules",
            "destinations": "#/destinations", "team": "#/team", "webhooks": "#/webhooks",
            "webhook-deliveries": f"#/webhooks/{webhook}", "audit": "#/audit", "tokens": "#/tokens",
            "new-org": "#/new-org"}


def test_every_page_is_populated_accessible_and_screenshotted_at_laptop_and_phone_width(demo_platform, browser) -> None:
    d = demo_platform
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: dict[str, object] = {}
    for width, viewport in (("laptop", LAPTOP), ("phone", PHONE)):
        page = open_signed_in(browser, d.url, DEMO_EMAIL, DEMO_PASSWORD, viewport)
        for name, hash_ in _pages(d).items():
            page.evaluate("h => { location.hash = h; }", hash_)  # in-page navigation: one load per width
            page.wait_for_selector(f'main[aria-busy=false][data-route="{hash_}"] h1')
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
            found = axe_violations(page)
            if found:
                problems[f"{name} at {width}"] = found
            heading = page.locator("main h1").inner_text()
            assert "went wrong" not in heading and "not found" not in heading, (name, heading)
        assert page.errors == [], page.errors
        page.context.close()
    assert problems == {}, problems


def test_the_demo_data_shows_on_the_overview_and_schedules_with_next_runs_in_the_schedules_zone(
        demo_platform, browser) -> None:
    d = demo_platform
    page = open_signed_in(browser, d.url, DEMO_EMAIL, DEMO_PASSWORD)
    cards = page.locator(".card").all_inner_texts()
    assert cards[0].startswith("1") and cards[1].startswith("2"), cards  # one project, two completed backups
    assert page.get_by_role("img", name="Size (bars").count() == 1
    for link in ("Audit log", "API tokens"):  # an owner is offered the admin-only sections
        assert page.get_by_role("navigation").get_by_role("link", name=link, exact=True).is_visible()
    page.goto(f"{d.url}/#/schedules")
    runs = page.get_by_role("list", name="Next runs of nightly").locator("li")
    runs.first.wait_for()
    # 03:00 in Paris, the schedule's zone, whatever the browser's own zone (UTC here: 01:00 or 02:00).
    assert runs.count() == 3 and all("03:00" in t for t in runs.all_inner_texts()), runs.all_inner_texts()
    page.get_by_role("button", name="Retention dry run of nightly").click()
    page.get_by_role("heading", name="Retention dry run: nightly").wait_for()
    # The demo's backups were started by hand, not by the schedule: its retention touches none of them.
    assert page.get_by_text("Would remove: nothing").is_visible()
    assert page.errors == []
    page.context.close()


def test_every_page_and_asset_is_sent_with_a_strict_content_security_policy(demo_platform) -> None:
    for path in ("/", "/assets/js/app.js", "/assets/app.css", "/dashboard/config.json", "/oauth/callback"):
        r = requests.get(demo_platform.url + path, timeout=30)
        assert r.status_code == 200, path
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, csp
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "Set-Cookie" not in requests.get(demo_platform.url + "/", timeout=30).headers
