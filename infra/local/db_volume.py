"""A metadata database at realistic volume, made fast: generate_series in SQL, not ORM inserts.

    load(engine, now)     # 1,000 organizations, 200,000 backups, 20,000 restores, 5,000 schedules,
                          # 1,000,000 audit rows over the year before `now`; then ANALYZE

Used by the query-plan test (tests/integration/database) and bench/db.py. Ids have the shape
models.new_id gives them (prefix, milliseconds of created_at in hex, random tail), so id order is
time order as in production. A few jobs are pending or running, as at any moment in production.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from firebackup.db import partitions

ORGS, BACKUPS, RESTORES, SCHEDULES, AUDIT_ROWS = 1_000, 200_000, 20_000, 5_000, 1_000_000
ACTIONS = ("backup.start", "backup.complete", "backup.fail", "project.create", "token.create", "access.denied")


def _id(prefix: str, at: str, salt: str) -> str:
    """SQL for an id like models.new_id's, for the row created at `at` (the tail: `salt` in hex, unique)."""
    return f"'{prefix}_' || lpad(to_hex((extract(epoch FROM {at}) * 1000)::bigint), 12, '0') || lpad(to_hex({salt}), 10, '0')"


def org_id(n: int) -> str:
    return f"org_vol{n:06d}"


def load(engine: sa.Engine, now: dt.datetime) -> None:
    """Fill an empty database migrated to head; `now` (UTC) is the newest row's time."""
    t = f"TIMESTAMP '{now.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M:%S}'"
    org = f"'org_vol' || lpad(({{k}} % {ORGS})::text, 6, '0')"
    actions = "ARRAY[" + ",".join(f"'{a}'" for a in ACTIONS) + "]"
    with engine.begin() as c:
        run = c.exec_driver_sql
        # The rows are consistent by construction: skip the per-row foreign key triggers (a superuser's
        # switch, for this transaction only); they would double the load time.
        run("SET LOCAL session_replication_role = replica")
        run(f"INSERT INTO organizations (id, name, created_at) SELECT 'org_vol' || lpad(g::text, 6, '0'), "
            f"'Org ' || g, {t} - interval '400 days' FROM generate_series(0, {ORGS - 1}) g")
        run(f"INSERT INTO projects (id, org_id, name, gcp_project_id, database_id, auth_kind, created_at) "
            f"SELECT 'prj_vol' || lpad(g::text, 6, '0'), 'org_vol' || lpad(g::text, 6, '0'), 'p', 'gcp-' || g, "
            f"'(default)', 'service_account', {t} - interval '400 days' FROM generate_series(0, {ORGS - 1}) g")
        run(f"INSERT INTO storage_destinations (id, org_id, name, kind, url, options, created_at) "
            f"SELECT 'dst_vol' || lpad(g::text, 6, '0'), 'org_vol' || lpad(g::text, 6, '0'), 'd', 's3', "
            f"'s3://bucket/' || g, '{{}}', {t} - interval '400 days' FROM generate_series(0, {ORGS - 1}) g")
        at = f"({t} - g * interval '150 seconds')"
        run(f"INSERT INTO backups (id, org_id, project_id, destination_id, state, include_auth, documents, "
            f"chunks_total, chunks_done, bytes_raw, bytes_stored, created_at, started_at, finished_at, heartbeat_at, "
            f"lease_until, attempts) SELECT {_id('bkp', at, 'g')}, {org.format(k='g')}, "
            f"'prj_vol' || lpad((g % {ORGS})::text, 6, '0'), 'dst_vol' || lpad((g % {ORGS})::text, 6, '0'), "
            f"CASE WHEN g % 1000 = 1 THEN 'running' WHEN g % 997 = 1 THEN 'pending' WHEN g % 50 = 0 THEN 'failed' "
            f"ELSE 'completed' END, false, 1000 + g % 5000, 4, 4, 10000000, 3000000, {at}, {at}, {at}, {at}, "
            f"{at} + interval '10 minutes', 1 FROM generate_series(1, {BACKUPS}) g")
        at = f"({t} - g * interval '1500 seconds')"
        run(f"INSERT INTO restores (id, org_id, backup_id, target_project_id, mode, dry_run, include_auth, state, "
            f"chunks_total, chunks_done, documents_written, documents_skipped, documents_failed, auth_users, "
            f"created_at, heartbeat_at, attempts) SELECT {_id('rst', at, 'g')}, b.org_id, b.id, b.project_id, "
            f"'overwrite', false, false, CASE WHEN g % 500 = 1 THEN 'running' ELSE 'completed' END, 4, 4, 1000, 0, 0, "
            f"0, {at}, {at}, 1 FROM generate_series(1, {RESTORES}) g "
            f"JOIN backups b ON b.id = (SELECT id FROM backups WHERE org_id = {org.format(k='g')} LIMIT 1)")
        # Four in five enabled; each next due within the coming day, a few a minute ago (due now).
        run(f"INSERT INTO schedules (id, org_id, project_id, destination_id, name, cron, timezone, retention, "
            f"collections, enabled, created_at, next_run_at) SELECT 'sch_vol' || lpad(g::text, 7, '0'), "
            f"{org.format(k='g')}, 'prj_vol' || lpad((g % {ORGS})::text, 6, '0'), "
            f"'dst_vol' || lpad((g % {ORGS})::text, 6, '0'), 'nightly', (g % 60) || ' ' || (g % 24) || ' * * *', "
            f"'UTC', '{{\"keep_daily\": 7}}', NULL, g % 5 <> 0, {t} - interval '30 days', "
            f"CASE WHEN g % 500 = 0 THEN {t} - interval '1 minute' ELSE {t} + (1 + g % 1440) * interval '1 minute' END "
            f"FROM generate_series(0, {SCHEDULES - 1}) g")
        # One row every ~31.5 s over the year before now; organizations interleaved, not in blocks. Its
        # months get their partitions first, as maintenance would have made them.
        naive = now.astimezone(dt.timezone.utc).replace(tzinfo=None)
        partitions.ensure_months(c, naive - dt.timedelta(days=366), naive)
        at = f"({t} - g * interval '31536 milliseconds')"
        run(f"INSERT INTO audit_log (id, org_id, actor_type, actor_id, action, resource_type, resource_id, ip, "
            f"user_agent, result, details, created_at) SELECT {_id('aud', at, 'g')}, {org.format(k='(g::bigint * 7919)')}, "
            f"'user', 'usr_vol' || (g % 5000), ({actions})[1 + g % {len(ACTIONS)}], 'backup', 'bkp_' || (g % 100000), "
            f"'203.0.113.' || (g % 250), 'firebackup-cli/1.0', CASE WHEN g % 40 = 0 THEN 'denied' ELSE 'success' END, "
            f"NULL, {at} FROM generate_series(1, {AUDIT_ROWS}) g")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("ANALYZE organizations, projects, storage_destinations, backups, restores, schedules, audit_log")
