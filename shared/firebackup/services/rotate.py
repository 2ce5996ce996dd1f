"""Re-seal every secret under the current master key (`python -m firebackup.services.rotate`).

Zero downtime: deploy with the new key as FIREBACKUP_MASTER_KEY and the old one in
FIREBACKUP_OLD_MASTER_KEYS (so both open), run this, then drop the old key. Rows are
re-sealed in small transactions with a compare-and-set, so concurrent edits are never lost
and the command can be re-run after an interruption.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from firebackup.crypto.secrets import Sealer
from firebackup.db.models import SEALED_COLUMNS

log = logging.getLogger("firebackup.rotate")


@dataclass
class RotationReport:
    resealed: dict[str, int] = field(default_factory=dict)
    already_current: int = 0

    @property
    def total(self) -> int:
        return sum(self.resealed.values())


def reseal_all(factory: sessionmaker[Session], sealer: Sealer, *, batch: int = 100) -> RotationReport:
    """Re-seal every sealed column whose key is not the current one; returns counts per column."""
    report = RotationReport()
    for model, column in SEALED_COLUMNS:
        table = model.metadata.tables[model.__tablename__]
        col, pk = table.c[column], table.c.id
        name = f"{table.name}.{column}"
        report.resealed[name] = 0
        after = ""
        while True:
            with factory() as session, session.begin():
                rows = session.execute(
                    sa.select(pk, col).where(pk > after, col.is_not(None)).order_by(pk).limit(batch)
                ).all()
                for row_id, token in rows:
                    new = sealer.reseal(token, f"{name}:{row_id}")
                    if new is None:
                        report.already_current += 1
                        continue
                    # Compare-and-set: a row edited since it was read keeps its newer value.
                    done = session.connection().execute(
                        sa.update(table).where(pk == row_id, col == token).values({column: new}))
                    report.resealed[name] += done.rowcount
            if len(rows) < batch:
                break
            after = rows[-1][0]
    log.info("re-sealed %d secrets under %s (%d already current)", report.total, sealer.current.key_id,
             report.already_current)
    return report


def main(argv: list[str] | None = None) -> int:
    from firebackup.db.session import make_engine, make_session_factory
    from firebackup.errors import FireBackupError
    from firebackup.settings import Settings

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        settings = Settings.from_env()
        report = reseal_all(make_session_factory(make_engine(settings)), Sealer.from_settings(settings))
    except FireBackupError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    for name, n in report.resealed.items():
        print(f"{name}: {n} re-sealed")
    print(f"{report.already_current} already under the current key")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
