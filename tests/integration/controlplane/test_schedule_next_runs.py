"""GET /schedules/{id}/next-runs: the preview the dashboard shows, computed by the same cron code as the scheduler."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import quote

from tests.integration.controlplane.test_scheduling import _schedule, _token
from tests.integration.controlplane.world import build_world

EMAILS = {c: f"next-{c}@example.com" for c in ("owner", "admin", "member", "viewer", "outsider")}


def test_next_runs_are_wall_times_in_the_schedules_zone_and_a_preview_can_change_cron_and_zone(api) -> None:
    w = build_world(api, EMAILS)
    sid = _schedule(api, w, cron="0 3 * * *", tz="Europe/Paris")
    viewer = _token(api, w.org, "viewer")
    base = f"/v1/orgs/{w.org}/schedules/{sid}/next-runs"
    r = api.call("GET", base + "?count=3", viewer)
    assert r.status_code == 200, r.get_json()
    got = r.get_json()
    assert (got["cron"], got["timezone"], got["schedule_id"]) == ("0 3 * * *", "Europe/Paris", sid)
    ats = [datetime.fromisoformat(x["at"]) for x in got["runs"]]
    locals_ = [datetime.fromisoformat(x["local"]) for x in got["runs"]]
    assert len(ats) == 3 and all(a.utcoffset() == timedelta(0) for a in ats)
    # A day apart, or 23 or 25 hours across a DST change.
    assert all(timedelta(hours=23) <= b - a <= timedelta(hours=25) for a, b in zip(ats, ats[1:]))
    assert all((t.hour, t.minute) == (3, 0) and t == a for t, a in zip(locals_, ats))

    preview = api.call("GET", f"{base}?cron={quote('30 2 * * mon-fri')}&timezone=America/New_York", viewer).get_json()
    assert preview["timezone"] == "America/New_York" and len(preview["runs"]) == 5
    for run in preview["runs"]:
        local = datetime.fromisoformat(run["local"])
        assert (local.hour, local.minute) == (2, 30) and local.weekday() < 5
        assert local.utcoffset() in (timedelta(hours=-5), timedelta(hours=-4))


def test_next_runs_refuse_a_bad_preview_in_one_line_and_hide_other_organizations_schedules(api) -> None:
    w = build_world(api, EMAILS)
    sid = _schedule(api, w)
    viewer = _token(api, w.org, "viewer")
    base = f"/v1/orgs/{w.org}/schedules/{sid}/next-runs"
    for query in ("?cron=0+25+*+*+*", "?timezone=Mars/Olympus", "?count=0", "?count=51"):
        r = api.call("GET", base + query, viewer)
        assert r.status_code == 422 and "\n" not in r.get_json()["error"]["message"], query
    other = build_world(api, EMAILS)
    assert api.call("GET", f"/v1/orgs/{w.org}/schedules/{other.schedule}/next-runs", viewer).status_code == 404
