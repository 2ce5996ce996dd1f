"""The platform of cloud_world.py, started once per module: its servers are real and never skipped."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pg8000.native
import pytest
import sqlalchemy as sa

from firebackup import bootstrap
from firebackup.db.migrate import upgrade
from firebackup.db.session import make_engine, make_session_factory
from infra.local import stack
from tests.integration.controlplane.conftest import FakeFirestoreProber, FakeGoogleOAuth
from tests.integration.controlplane.jobs_world import make_org
from tests.integration.tasks.cloud_world import Platform, new_tag, start_workers, worker_settings


def _admin(url: sa.URL) -> pg8000.native.Connection:
    return pg8000.native.Connection(url.username, host=url.host, port=url.port, password=url.password,
                                    database="postgres")


@pytest.fixture(scope="module")
def database_url(postgres_server: stack.Service) -> Iterator[str]:
    """A migrated database of this module's own on the shared PostgreSQL (several processes write it)."""
    url = sa.make_url(postgres_server.url)
    name = f"tasks_{secrets.token_hex(6)}"
    admin = _admin(url)
    admin.run(f'CREATE DATABASE "{name}"')
    admin.close()
    own = url.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(own)
    upgrade(engine)
    engine.dispose()
    yield own
    admin = _admin(url)
    admin.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="module")
def platform(database_url: str, tasks_emulator: stack.Service, firestore_emulator: stack.Service,
             postgres_server: stack.Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    firestore_host = firestore_emulator.env["FIRESTORE_EMULATOR_HOST"]
    mp = pytest.MonkeyPatch()
    mp.setenv("FIRESTORE_EMULATOR_HOST", firestore_host)  # the test's own Firestore clients
    tag, key, folder = new_tag(), os.urandom(32), tmp_path_factory.mktemp("platform")
    settings, backup, restore = start_workers(lambda backup_url, restore_url: worker_settings(
        tag=tag, database_url=database_url, master_key=key,
        tasks_host=tasks_emulator.env["FIREBACKUP_TASKS_EMULATOR_HOST"], firestore_host=firestore_host,
        folder=folder, backup_url=backup_url, restore_url=restore_url))
    engine = make_engine(database_url)
    try:
        assert len(bootstrap.ensure_task_queues(settings)) == 3
        app = bootstrap.api_app(settings, engine=engine, oauth=FakeGoogleOAuth(), prober=FakeFirestoreProber())
        org = make_org(app, make_session_factory(engine), folder)
        yield Platform(settings, app, org, tasks_emulator, backup, restore, postgres_server.port)
        app.extensions["firebackup_queue"].close()
    finally:
        backup.stop()
        restore.stop()
        engine.dispose()
        mp.undo()
