"""The dashboard's Done-when flows in a real browser against the local platform: sign in, connect a project,
back it up watching progress reach 100% without a reload, restore with a dry run then for real, a role change
the member sees, and a Viewer who finds no button that would fail."""

from __future__ import annotations

import json
from typing import Any

import pytest
from infra.local.platform import DEMO_EMAIL, DEMO_PASSWORD, PROJECT, _service_account_key
from tests.browser.conftest import CHUNK_DOCS, PASSWORD, Demo, api_failures, open_signed_in, preview_restore, section

pytestmark = pytest.mark.browser


def test_a_user_connects_a_project_backs_it_up_live_and_restores_it_dry_run_then_for_real(
        demo_platform: Demo, browser: Any) -> None:
    d = demo_platform
    page = open_signed_in(browser, d.url, DEMO_EMAIL, DEMO_PASSWORD)
    failures = api_failures(page)
    section(page, "New organization")
    page.get_by_label("Name").fill("Browser tests")
    page.get_by_role("button", name="Create organization").click()
    page.get_by_role("heading", name="Overview · Browser tests").wait_for()  # the new organization is chosen

    section(page, "Projects")
    page.get_by_label("Name", exact=True).fill("demo")
    page.get_by_label("Google Cloud project ID").fill(PROJECT)
    page.get_by_label("…or paste the key").fill(json.dumps(_service_account_key(PROJECT)))
    page.get_by_role("button", name="Connect project").click()
    page.get_by_role("button", name="Test connection to demo").click()
    page.get_by_text("demo: connection works").wait_for()

    section(page, "Storage")
    page.get_by_label("Name").fill("browser folder")
    page.get_by_label("Kind").select_option("local")
    page.get_by_label("URL").fill((d.platform.storage / "browser").as_uri())
    page.get_by_role("button", name="Add destination").click()
    page.get_by_role("cell", name="browser folder", exact=True).wait_for()

    section(page, "Backups")
    page.get_by_role("button", name="Start backup").click()
    page.get_by_role("heading", name="Backup bkp_").wait_for()
    page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page
    progress = page.get_by_test_id("progress-text")
    progress.filter(has_text="100%").wait_for(timeout=120_000)
    chunks = -(-d.documents // CHUNK_DOCS)
    assert f"{chunks} of {chunks} chunks" in progress.inner_text() and "completed" in progress.inner_text()
    assert page.evaluate("window.__sameDocument === true")
    assert page.locator("progress").get_attribute("value") == "100"
    page.get_by_text("Stored manifest").wait_for()

    page.get_by_role("button", name="Restore…").click()
    dry, real = preview_restore(page, "browser-copy")
    assert f"would write {d.documents} documents" in dry
    real.click()
    page.get_by_role("heading", name="Restore rst_").wait_for()
    page.get_by_test_id("progress-text").filter(has_text="100%").wait_for(timeout=120_000)
    assert "completed" in page.get_by_test_id("progress-text").inner_text()
    restores = d.owner.call("GET", f"/orgs/{d.org}/restores")  # the demo org is untouched; ours is new
    assert all(r["target_database"] != "browser-copy" for r in restores["items"])
    assert failures == [] and page.errors == []
    page.context.close()


def test_a_role_change_by_an_owner_changes_what_the_member_is_offered(demo_platform: Demo, browser: Any) -> None:
    d = demo_platform
    member = open_signed_in(browser, d.url, "member@firebackup.local", PASSWORD)
    section(member, "Backups")
    member.get_by_role("heading", name="Backups").wait_for()
    assert member.get_by_role("button", name="Start backup").count() == 0
    assert member.get_by_role("combobox", name="Organization").input_value() == d.org

    owner = open_signed_in(browser, d.url, DEMO_EMAIL, DEMO_PASSWORD)
    section(owner, "Team")
    owner.get_by_label("Role of member@firebackup.local", exact=True).select_option("member")
    owner.get_by_role("button", name="Save role of member@firebackup.local").click()
    owner.get_by_text("member@firebackup.local is now member").wait_for()

    section(member, "Projects")  # any navigation draws the page for the current role
    section(member, "Backups")
    member.get_by_role("button", name="Start backup").wait_for()
    assert "(member)" in member.get_by_role("combobox", name="Organization").inner_text()
    assert member.errors == [] and owner.errors == []
    owner.context.close()
    member.context.close()


def test_a_viewer_finds_no_button_that_would_fail(demo_platform: Demo, browser: Any) -> None:
    d = demo_platform
    page = open_signed_in(browser, d.url, "viewer@firebackup.local", PASSWORD)
    failures = api_failures(page)
    page.on("dialog", lambda dialog: dialog.accept())
    visited: dict[str, list[str]] = {}
    for name in ("Overview", "Projects", "Backups", "Restore", "Schedules", "Storage", "Team", "Webhooks"):
        section(page, name)
        labels = page.locator("main button").all_inner_texts()
        visited[name] = labels
        for i in range(len(labels)):  # press every button the page offers
            button = page.locator("main button").nth(i)
            if button.is_visible() and button.is_enabled():
                button.click()
                page.wait_for_load_state("networkidle")
    for link in ("Audit log", "API tokens"):  # admin-only sections are not offered at all
        assert page.get_by_role("link", name=link).count() == 0
    page.goto(f"{d.url}/#/backups/{d.backup_id}")
    page.wait_for_selector("main[aria-busy=false] h1")
    assert page.locator("main button").count() == 0  # no verify, restore, cancel or delete
    # Only reads are offered: filters and the retention dry run (a GET a Viewer may make).
    assert "Retention dry run" in visited["Schedules"], visited
    assert {label for labels in visited.values() for label in labels} <= {"Retention dry run", "Apply filters"}, visited
    assert failures == [] and page.errors == []
    page.context.close()


def test_an_api_token_is_shown_once_and_afterwards_only_its_prefix(demo_platform: Demo, browser: Any) -> None:
    d = demo_platform
    page = open_signed_in(browser, d.url, DEMO_EMAIL, DEMO_PASSWORD)
    section(page, "API tokens")
    page.get_by_label("Name").fill("shown once")
    page.get_by_role("button", name="Create token").click()
    token = page.get_by_test_id("new-token").inner_text()
    assert len(token) > 20
    assert d.owner.session.get(f"{d.url}/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    page.reload()
    page.locator("main[aria-busy=false] h1").filter(has_text="API tokens").wait_for()
    assert token not in page.content() and page.get_by_role("cell", name="shown once", exact=True).count() == 1
    assert page.errors == []
    page.context.close()


def test_a_wrong_password_is_refused_in_one_line_and_the_skip_link_is_the_first_tab_stop(
        demo_platform: Demo, browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(demo_platform.url + "/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.get_by_label("E-mail address").fill(DEMO_EMAIL)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in", exact=True).click()
    notice = page.get_by_role("status").locator("p")
    notice.first.wait_for()
    assert notice.first.inner_text().startswith("Sign-in failed:") and "\n" not in notice.first.inner_text()
    assert page.get_by_role("heading", name="Sign in to FireBackup").is_visible()
    context.close()
