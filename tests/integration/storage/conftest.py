"""Backends for the storage contract suite: a temp folder, memory, moto S3, fake-gcs-server.

`backend` is parametrized over all four; each test gets its own key prefix (s3/gcs share one
bucket per session), so tests never see each other's objects. Remote backends come from the
shared s3_server / gcs_server fixtures (tests/conftest.py): a server that cannot start fails
the test, it never skips.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Callable

import pytest

from firebackup.storage import MemoryStorage, open_storage

BACKENDS = ["file", "memory", "s3", "gcs"]
S3_PART = 5 << 20  # S3's minimum part size: a 12 MiB object takes 3 parts
GCS_PART = 1 << 20  # a multiple of 256 KiB: a 12 MiB object takes 12 resumable chunks


@dataclass
class Backend:
    name: str
    opener: Callable[..., object]
    part_size: int
    raw: dict = field(default_factory=dict)  # vendor handles for test set-up and inspection only

    def open(self, prefix: str | None = None, **opts):
        """A raw (not retrying) storage under a fresh prefix, or under `prefix`."""
        return self.opener(prefix or f"t-{secrets.token_hex(4)}", **opts)


@pytest.fixture(scope="session")
def s3_bucket(s3_server):
    import boto3

    env = s3_server.env
    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
    )
    name = f"contract-{secrets.token_hex(4)}"
    client.create_bucket(Bucket=name)
    yield name, client
    client.close()


@pytest.fixture(scope="session")
def gcs_bucket(gcs_server):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": gcs_server.env["STORAGE_EMULATOR_HOST"]},
    )
    name = f"contract-{secrets.token_hex(4)}"
    client.create_bucket(name)
    yield name, client


def make_backend(name: str, request, tmp_path, monkeypatch) -> Backend:
    if name == "file":
        return Backend(name, lambda p, **o: open_storage(f"file://{tmp_path}/{p}", retry=False, **o), 1 << 20)
    if name == "memory":
        shared: dict[str, MemoryStorage] = {}

        def mem(p, **o):
            if o:
                return MemoryStorage(**o)
            return shared.setdefault(p, MemoryStorage())

        return Backend(name, mem, 8 << 20)
    if name == "s3":
        request.getfixturevalue("s3_server").apply(monkeypatch)  # AWS_ENDPOINT_URL and keys
        bucket, client = request.getfixturevalue("s3_bucket")
        return Backend(
            name,
            lambda p, **o: open_storage(f"s3://{bucket}/{p}", retry=False, **{"part_size": S3_PART, **o}),
            S3_PART,
            {"bucket": bucket, "client": client},
        )
    if name == "gcs":
        request.getfixturevalue("gcs_server").apply(monkeypatch)  # STORAGE_EMULATOR_HOST
        bucket, client = request.getfixturevalue("gcs_bucket")
        return Backend(
            name,
            lambda p, **o: open_storage(f"gs://{bucket}/{p}", retry=False, **{"part_size": GCS_PART, "project": "test", **o}),
            GCS_PART,
            {"bucket": bucket, "client": client},
        )
    raise AssertionError(name)


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path, monkeypatch) -> Backend:
    return make_backend(request.param, request, tmp_path, monkeypatch)


@pytest.fixture(params=["s3", "gcs"])
def remote_backend(request, tmp_path, monkeypatch) -> Backend:
    return make_backend(request.param, request, tmp_path, monkeypatch)


@pytest.fixture
def s3_backend(request, tmp_path, monkeypatch) -> Backend:
    return make_backend("s3", request, tmp_path, monkeypatch)


@pytest.fixture
def gcs_backend(request, tmp_path, monkeypatch) -> Backend:
    return make_backend("gcs", request, tmp_path, monkeypatch)


@pytest.fixture
def store(backend):
    s = backend.open()
    yield s
    s.close()
