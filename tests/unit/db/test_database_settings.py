"""The database's settings: the connection budget, the reporting engine, the audit partitions; bad values are one line."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from firebackup.db.session import BudgetPool, make_engine, sqlstate
from firebackup.errors import DatabaseUnavailable, UsageError, is_transient
from firebackup.settings import Settings


def test_the_connection_budget_and_the_audit_settings_are_read_from_the_environment() -> None:
    s = Settings.from_env({"FIREBACKUP_DB_POOL_SIZE": "1", "FIREBACKUP_DB_MAX_OVERFLOW": "0",
                           "FIREBACKUP_DB_POOL_TIMEOUT": "2.5", "FIREBACKUP_DB_POOL_RECYCLE": "300",
                           "FIREBACKUP_REPORTING_DATABASE_URL": " postgresql+pg8000://r@replica/db ",
                           "FIREBACKUP_AUDIT_RETENTION_MONTHS": "13", "FIREBACKUP_AUDIT_PARTITIONS_AHEAD": "2",
                           "FIREBACKUP_AUDIT_ARCHIVE_URL": "gs://platform-audit/archive"})
    assert (s.db_pool_size, s.db_max_overflow, s.db_pool_timeout, s.db_pool_recycle) == (1, 0, 2.5, 300.0)
    assert s.reporting_database_url == "postgresql+pg8000://r@replica/db"
    assert (s.audit_retention_months, s.audit_partitions_ahead, s.audit_archive_url) == (
        13, 2, "gs://platform-audit/archive")
    defaults = Settings.from_env({})
    assert (defaults.db_pool_size, defaults.db_max_overflow, defaults.audit_retention_months) == (2, 1, 0)
    assert defaults.reporting_database_url is None


@pytest.mark.parametrize("name, value, says", [
    ("FIREBACKUP_DB_POOL_SIZE", "0", "FIREBACKUP_DB_POOL_SIZE=0 is below 1; set a whole number of at least 1"),
    ("FIREBACKUP_DB_MAX_OVERFLOW", "-1", "FIREBACKUP_DB_MAX_OVERFLOW=-1 is below 0"),
    ("FIREBACKUP_DB_POOL_TIMEOUT", "soon", "FIREBACKUP_DB_POOL_TIMEOUT='soon' is not a positive number of seconds"),
    ("FIREBACKUP_AUDIT_PARTITIONS_AHEAD", "0", "FIREBACKUP_AUDIT_PARTITIONS_AHEAD=0 is below 1"),
])
def test_a_bad_database_setting_is_refused_in_one_line(name: str, value: str, says: str) -> None:
    with pytest.raises(UsageError) as e:
        Settings.from_env({name: value})
    assert says in str(e.value) and "\n" not in str(e.value)


def test_a_postgresql_engine_keeps_to_the_budget_and_sqlite_is_left_as_it_was() -> None:
    pg = make_engine(Settings(database_url="postgresql+pg8000://u:p@127.0.0.1:1/db", db_pool_size=3,
                              db_max_overflow=2, db_pool_timeout=4.0, db_pool_recycle=60.0))
    assert isinstance(pg.pool, BudgetPool)
    assert (pg.pool.size(), pg.pool._max_overflow, pg.pool._timeout, pg.pool._recycle) == (3, 2, 4.0, 60.0)
    assert not isinstance(make_engine("sqlite://").pool, BudgetPool)


def test_an_empty_pool_and_a_refused_connection_are_transient_with_one_line() -> None:
    engine = make_engine(Settings(database_url="postgresql+pg8000://u:p@127.0.0.1:1/db", db_pool_size=1,
                                  db_max_overflow=0, db_pool_timeout=0.05))
    with pytest.raises(DatabaseUnavailable) as refused:
        engine.connect()  # nothing listens on port 1
    assert is_transient(refused.value) and "unavailable" in str(refused.value) and "u:p" not in str(refused.value)
    pool = BudgetPool(lambda: object(), pool_size=1, max_overflow=0, timeout=0.05)
    held = pool.connect()
    with pytest.raises(DatabaseUnavailable, match="no database connection came free within 0.05 s"):
        pool.connect()
    held.close()


def test_the_sqlstate_of_a_server_error_is_read_from_its_fields() -> None:
    assert sqlstate(Exception({"S": "FATAL", "C": "53300", "M": "too many clients"})) == "53300"
    assert sqlstate(Exception("no fields")) is None
    assert sqlstate(None) is None
    assert not is_transient(sa.exc.ProgrammingError("SELECT", {}, Exception({"C": "42P01"})))
