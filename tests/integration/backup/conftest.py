"""Fixtures for backup tests: a connection to the shared emulator (one project per test), a location."""

from __future__ import annotations

from typing import Iterable

import pytest

from firebackup.engine.repository import Repository
from firebackup.firestore.grpc import FirestoreConnection, open_firestore
from firebackup.storage import open_storage


@pytest.fixture
def emulator_host(firestore_emulator) -> str:
    return firestore_emulator.env["FIRESTORE_EMULATOR_HOST"]


@pytest.fixture
def conn(emulator_host, project_id) -> Iterable[FirestoreConnection]:
    c = open_firestore(project_id, emulator_host=emulator_host)
    yield c
    c.close()


@pytest.fixture
def repo(tmp_path) -> Repository:
    return Repository(open_storage((tmp_path / "backups").as_uri()))
