"""Point-in-time recovery in the dashboard: an admin turns it on from the project page, restores to an instant just
after a backup (dry run, then for real into a second database), and a Viewer is offered no PITR control. The local
platform has no Eventarc, so nothing is captured: the instant's state is the backup's."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from infra.local.platform import DEMO_EMAIL, DEMO_PASSWORD, PROJECT
from tests.browser.conftest import (ARTIFACTS, LAPTOP, PASSWORD, PHONE, Demo, api_failures, axe_violations,
                                   open_signed_in, preview_restore, section)

pytestmark = pytest.mark.browser
TARGET_DATABASE = "pitr-copy"


def _plain(value: Any) -> Any:
    """A field value comparable across databases: a reference compares by its path, not by its client, and NaN
    equals NaN."""
    from google.cloud.firestore_v1.document import DocumentReference

    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, DocumentReference):
        return ("reference", value.path)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _documents(database: str) -> dict[str, Any]:
    """Every document of a database in the Firestore emulator, subcollections included, by path."""
    from google.cloud import firestore

    db = firestore.Client(project=PROJECT, database=database)
    found: dict[str, Any] = {}
    pending = list(db.collections())
    while pending:
        for ref in pending.pop().list_documents():  # missing parents too: their subcollections hold documents
            snap = ref.get()
            if snap.exists:
                found[ref.path] = _plain(snap.to_dict() or {})
            pending.extend(ref.collections())
    return found


def _check(page: Any, name: str) -> None:
    """A screenshot at laptop and phone width, and no serious or critical axe-core violation at either."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width, viewport in (("phone", PHONE), ("laptop", LAPTOP)):
        page.set_viewport_size(viewport)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
        assert axe_violations(page) == [], (name, width)


def _choose_org(page: Any, org: str) -> None:
    """The demo organization, when the owner has another (the flows test makes one)."""
    switch = page.get_by_role("combobox", name="Organization")
    if switch.input_value() != org:
        switch.select_option(org)
        page.locator("main[aria-busy=false] h1").filter(has_text="Overview · Demo").wait_for()


def _backup_now(d: Demo, project_id: str) -> dict[str, Any]:
    """A completed backup of the project into its PITR destination, started through the API."""
    destination = d.owner.call("GET", f"/orgs/{d.org}/projects/{project_id}/pitr")["destination_id"]
    started = d.owner.call("POST", f"/orgs/{d.org}/backups", {"project_id": project_id, "destination_id": destination})
    backup: dict[str, Any] = d.owner.wait(f"/orgs/{d.org}/backups/{started['id']}",
                                          lambda b: b["state"] not in ("pending", "running"), timeout=120,
                                          what="a backup after PITR was turned on")
    assert backup["state"] == "completed", backup
    return backup


def _instant_wizard(page: Any, read_time: str) -> Any:
    """The wizard's "an instant" form with the instant 1 ms after read_time, in the browser's time zone."""
    section(page, "Restore")
    page.get_by_role("radio", name="an instant").check()
    wizard = page.get_by_role("form", name="Restore to an instant")
    assert page.get_by_role("form", name="Restore a backup").is_hidden()
    zone = ZoneInfo(page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone"))
    after = (dt.datetime.fromisoformat(read_time.replace("Z", "+00:00")) + dt.timedelta(milliseconds=1))
    value = after.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23]
    instant = wizard.locator("input[name=at]")
    assert (instant.get_attribute("min") or "9") <= value <= (instant.get_attribute("max") or "0")
    instant.fill(value)
    return wizard


def _demo_project(d: Demo) -> str:
    return str(next(p["id"] for p in d.owner.call("GET", f"/orgs/{d.org}/projects")["items"] if p["name"] == "demo"))


def test_an_admin_turns_pitr_on_and_restores_to_an_instant_dry_run_then_for_real_into_a_second_database(
        demo_platform: Demo, browser: Any) -> None:
    d = demo_platform
    page = open_signed_in(browser, d.url, DEMO_EMAIL, DEMO_PASSWORD)
    failures = api_failures(page)
    _choose_org(page, d.org)

    section(page, "Projects")
    panel = page.get_by_role("form", name="Point-in-time recovery of demo")
    assert panel.get_by_test_id("pitr-status").inner_text() == "Off."
    panel.get_by_label("Capture changes for point-in-time restores").check()
    panel.get_by_label("Retention (days)").fill("3")
    panel.get_by_label("Segment destination").select_option(label="local folder")
    panel.get_by_role("button", name="Save PITR settings").click()
    status = page.get_by_role("form", name="Point-in-time recovery of demo").get_by_test_id("pitr-status")
    status.filter(has_text="On: changes are kept 3 days in local folder.").wait_for()
    _check(page, "pitr-panel")

    # The covered window starts at the first backup read after PITR was turned on.
    backup = _backup_now(d, _demo_project(d))
    wizard = _instant_wizard(page, backup["read_time"])
    dry, real = preview_restore(wizard, TARGET_DATABASE)
    assert f"would write {backup['documents']} documents" in dry
    assert backup["documents"] == d.documents
    _check(page, "restore-instant")
    assert _documents(TARGET_DATABASE) == {}  # a dry run writes nothing

    real.click()
    # The API answers with the finished result, or with a restore job the wizard follows on its own page.
    done = wizard.get_by_test_id("restore-result").or_(page.get_by_role("heading", name="Restore rst_"))
    done.wait_for(timeout=120_000)
    if page.get_by_role("heading", name="Restore rst_").count():
        page.get_by_test_id("progress-text").filter(has_text="100%").wait_for(timeout=120_000)
        assert "completed" in page.get_by_test_id("progress-text").inner_text()
    else:
        assert f"wrote {d.documents} documents" in wizard.get_by_test_id("restore-result").inner_text()
    copied = _documents(TARGET_DATABASE)
    assert len(copied) == d.documents and copied == _documents("(default)")
    assert failures == [] and page.errors == []
    page.context.close()


def _pitr_on(d: Demo) -> str:
    """PITR on for the demo project, through the API; the project's ID."""
    project = _demo_project(d)
    destination = d.owner.call("GET", f"/orgs/{d.org}/destinations")["items"][0]["id"]
    d.owner.call("PUT", f"/orgs/{d.org}/projects/{project}/pitr",
                 {"destination_id": destination, "retention_days": 3, "enabled": True})
    return project


def test_an_instant_that_depends_on_a_gap_is_refused_with_the_apis_line_and_previewed_on_explicit_override(
        demo_platform: Demo, browser: Any) -> None:
    from google.cloud import firestore

    from firebackup.services.context import system_transactions
    from firebackup.services.pitr import check_backups

    d = demo_platform
    project = _pitr_on(d)
    before = _backup_now(d, project)
    # A write capture never saw (the local platform has no Eventarc), then a backup that holds it: the
    # maintenance tick's gap check, run here, records the window in which changes are missing.
    firestore.Client(project=PROJECT, database="(default)").document("users/user000").update({"nickname": "missed"})
    _backup_now(d, project)
    plane = d.platform.plane
    assert check_backups(system_transactions(plane.factory, plane.ports), project)

    page = open_signed_in(browser, d.url, DEMO_EMAIL, DEMO_PASSWORD)
    failures = api_failures(page)
    _choose_org(page, d.org)
    wizard = _instant_wizard(page, before["read_time"])  # from the earlier backup: the missed write is after it
    assert "capture never recorded" in wizard.get_by_role("list", name="Gaps in capture").inner_text()
    override = wizard.get_by_label("Restore anyway: accept that writes in the gap may be missing")
    assert override.is_hidden()
    wizard.get_by_label("Target database").fill("pitr-gap")
    wizard.get_by_role("button", name="Preview (dry run)").click()
    refused = wizard.get_by_test_id("restore-refused")
    refused.wait_for()
    assert "capture missed writes" in refused.inner_text() and "\n" not in refused.inner_text()
    assert wizard.get_by_role("button", name="Restore now").is_disabled()
    override.check()
    wizard.get_by_role("button", name="Preview (dry run)").click()
    wizard.get_by_test_id("dry-run-result").wait_for()
    assert "Warning:" in wizard.inner_text() and "capture missed writes" in wizard.inner_text()
    assert _documents("pitr-gap") == {}
    assert len(failures) == 1 and "/pitr/restore -> 409" in failures[0], failures
    assert all("409" in e for e in page.errors), page.errors  # the browser logs the refused call, nothing else
    page.context.close()


def test_a_viewer_sees_the_covered_window_but_no_pitr_control(demo_platform: Demo, browser: Any) -> None:
    d = demo_platform
    _pitr_on(d)
    page = open_signed_in(browser, d.url, "viewer@firebackup.local", PASSWORD)
    failures = api_failures(page)
    section(page, "Projects")
    panel = page.get_by_role("region", name="Point-in-time recovery of demo")
    assert panel.get_by_test_id("pitr-status").inner_text().startswith("On:")
    assert "Earliest restorable" in panel.inner_text()
    assert page.get_by_role("form", name="Point-in-time recovery of demo").count() == 0
    assert page.get_by_role("button", name="Save PITR settings").count() == 0
    section(page, "Restore")
    assert page.get_by_role("radio", name="an instant").count() == 0
    assert page.get_by_role("form", name="Restore to an instant").count() == 0
    assert failures == [] and page.errors == []
    page.context.close()
