from __future__ import annotations

import sqlalchemy as sa

from firebackup.db.migrate import downgrade, upgrade
from firebackup.db.models import Base
from firebackup.db.partitions import is_partition, not_a_partition
from firebackup.db.session import make_engine


def _tables(engine: sa.Engine) -> set[str]:
    return {t for t in sa.inspect(engine).get_table_names() if not is_partition(t)} - {"alembic_version"}


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
            opts = {"compare_type": True, "include_name": not_a_partition}
            diff = compare_metadata(MigrationContext.configure(conn, opts=opts), Base.metadata)
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


def test_upgrading_a_database_with_rows_keeps_every_row_of_the_tables_it_rebuilds(db_url: str) -> None:
    """SQLite rebuilds a table to change it; with foreign keys on, the old table's DROP cascaded into
    every table referencing it (a backup's chunk rows, everything an organization owns) and emptied them."""
    from firebackup.db.migrate import downgrade

    engine = make_engine(db_url)
    try:
        upgrade(engine, "0005")
        with engine.begin() as c:
            c.exec_driver_sql("INSERT INTO organizations (id, name, created_at) VALUES ('org_1', 'Acme', CURRENT_TIMESTAMP)")
            c.exec_driver_sql("INSERT INTO projects (id, org_id, name, gcp_project_id, database_id, auth_kind, "
                              "credentials_sealed, credentials_fingerprint, created_at) VALUES ('prj_1', 'org_1', 'p', "
                              "'g', '(default)', 'service_account', 'x', 'f', CURRENT_TIMESTAMP)")
            c.exec_driver_sql("INSERT INTO storage_destinations (id, org_id, name, kind, url, options, created_at) "
                              "VALUES ('dst_1', 'org_1', 'd', 'local', 'file:///x', '{}', CURRENT_TIMESTAMP)")
            c.exec_driver_sql("INSERT INTO backups (id, org_id, project_id, destination_id, state, include_auth, "
                              "documents, chunks_total, chunks_done, bytes_raw, bytes_stored, created_at, attempts) "
                              "VALUES ('bkp_1', 'org_1', 'prj_1', 'dst_1', 'completed', false, 1, 1, 1, 1, 1, "
                              "CURRENT_TIMESTAMP, 0)")
            c.exec_driver_sql("INSERT INTO backup_chunks (backup_id, chunk_id, kind, key, records, bytes_raw, "
                              "bytes_stored, sha256, created_at) VALUES ('bkp_1', 'd00000-00000', 'docs', 'k', 1, 1, 1, "
                              "'s', CURRENT_TIMESTAMP)")
        counts = "SELECT (SELECT count(*) FROM backups), (SELECT count(*) FROM backup_chunks), (SELECT count(*) FROM projects)"
        upgrade(engine)
        with engine.connect() as c:
            assert tuple(c.exec_driver_sql(counts).one()) == (1, 1, 1)
        downgrade(engine, "0005")
        with engine.connect() as c:
            assert tuple(c.exec_driver_sql(counts).one()) == (1, 1, 1)
    finally:
        engine.dispose()
