from __future__ import annotations

import sqlalchemy as sa

from firebackup.db.migrate import downgrade, upgrade
from firebackup.db.models import Base
from firebackup.db.session import make_engine


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


def test_migrations_upgrade_an_empty_database_to_head_and_downgrade_back_to_empty(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert _tables(engine) == set()
        upgrade(engine)
        assert _tables(engine) == set(Base.metadata.tables)
        downgrade(engine, "base")
        assert _tables(engine) == set()
        upgrade(engine)
        assert _tables(engine) == set(Base.metadata.tables)
    finally:
        engine.dispose()


def test_head_schema_matches_the_models_exactly(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(db_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_each_engine_parameter_really_talks_to_its_database(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as c:
            if db_url.startswith("postgresql"):
                assert engine.dialect.driver == "pg8000"
                assert c.execute(sa.text("SELECT version()")).scalar().startswith("PostgreSQL")
            else:
                assert c.execute(sa.text("SELECT sqlite_version()")).scalar()
                assert c.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        engine.dispose()


def test_an_unsupported_database_url_is_refused_with_an_actionable_message() -> None:
    import pytest

    from firebackup.errors import UsageError

    with pytest.raises(UsageError, match="sqlite:/// or postgresql"):
        make_engine("mysql://u:secretpw@h/db")
    try:
        make_engine("mysql://u:secretpw@h/db")
    except UsageError as e:
        assert "secretpw" not in str(e)
