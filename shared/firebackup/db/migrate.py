"""Run the packaged Alembic migrations programmatically (`python -m firebackup.db.migrate [head|base|REV]`)."""

from __future__ import annotations

import sys
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(engine: sa.Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # env.py uses this engine instead of building one from a URL (keeps Cloud SQL's creator).
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: sa.Engine, revision: str = "base") -> None:
    command.downgrade(alembic_config(engine), revision)


def main(argv: list[str] | None = None) -> int:
    from firebackup.db.session import make_engine
    from firebackup.settings import Settings

    args = sys.argv[1:] if argv is None else argv
    target = args[0] if args else "head"
    engine = make_engine(Settings.from_env())
    if target == "base" or target.startswith("-"):
        downgrade(engine, target)
    else:
        upgrade(engine, target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
