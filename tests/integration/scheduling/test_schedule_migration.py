"""Migration 0004 carries existing retention rules over: keep_days becomes keep_within, and back on downgrade."""

from __future__ import annotations

import sqlalchemy as sa

from firebackup.db.migrate import downgrade, upgrade
from firebackup.db.models import Schedule, new_id
from firebackup.db.session import make_engine
from tests.integration.scheduling.conftest import seed_tenant


def test_keep_days_becomes_keep_within_in_days_and_returns_on_downgrade(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine, "0003")
        t = seed_tenant(engine)
        rules = {"both": {"keep_last": 3, "keep_days": 30}, "count": {"keep_last": 7}, "none": {}}
        ids = {name: new_id("sch") for name in rules}
        with engine.begin() as conn:
            for name, r in rules.items():
                conn.execute(sa.insert(Schedule.__table__).values(
                    id=ids[name], org_id=t.org, project_id=t.project, destination_id=t.destination, name=name,
                    cron="0 3 * * *", timezone="UTC", retention=r, enabled=True, created_at=sa.func.now()))

        def stored() -> dict[str, dict[str, object]]:
            with engine.connect() as conn:
                by_id = dict(conn.execute(sa.select(Schedule.id, Schedule.retention)).all())
            return {name: by_id[sid] for name, sid in ids.items()}

        upgrade(engine)
        assert stored() == {"both": {"keep_last": 3, "keep_within": "30d"}, "count": {"keep_last": 7}, "none": {}}
        downgrade(engine, "0003")
        assert stored() == rules
    finally:
        engine.dispose()
