"""Each local server starts on a free port and answers a real request from the client the project uses."""

from __future__ import annotations

import os
import secrets

import pytest

pytestmark = pytest.mark.integration


def test_firestore_emulator_stores_and_returns_a_document(firestore_emulator, project_id, monkeypatch):
    from google.cloud import firestore

    firestore_emulator.apply(monkeypatch)
    client = firestore.Client(project=project_id)
    client.collection("things").document("a").set({"n": 1, "s": "x"})
    assert client.collection("things").document("a").get().to_dict() == {"n": 1, "s": "x"}


def test_firestore_emulator_keeps_named_databases_apart_from_the_default(firestore_emulator, project_id,
                                                                        monkeypatch):
    from google.cloud import firestore

    firestore_emulator.apply(monkeypatch)
    default = firestore.Client(project=project_id)
    named = firestore.Client(project=project_id, database="second")
    default.collection("c").document("d").set({"where": "default"})
    named.collection("c").document("d").set({"where": "second"})
    assert default.collection("c").document("d").get().to_dict() == {"where": "default"}
    assert named.collection("c").document("d").get().to_dict() == {"where": "second"}


def test_firestore_emulator_isolates_projects(firestore_emulator, monkeypatch):
    from google.cloud import firestore

    firestore_emulator.apply(monkeypatch)
    a = firestore.Client(project=f"test-{secrets.token_hex(4)}")
    b = firestore.Client(project=f"test-{secrets.token_hex(4)}")
    a.collection("c").document("only-in-a").set({"x": 1})
    assert not b.collection("c").document("only-in-a").get().exists


def test_auth_emulator_creates_and_finds_a_user(auth_emulator, project_id, monkeypatch):
    import firebase_admin
    from firebase_admin import auth

    auth_emulator.apply(monkeypatch)
    app = firebase_admin.initialize_app(options={"projectId": project_id}, name=project_id)
    try:
        user = auth.create_user(email="ada@example.com", password="correct horse", app=app)
        found = auth.get_user_by_email("ada@example.com", app=app)
        assert found.uid == user.uid
    finally:
        firebase_admin.delete_app(app)


def test_pubsub_emulator_publishes_to_a_topic(pubsub_emulator, project_id, monkeypatch):
    from google.cloud import pubsub_v1

    pubsub_emulator.apply(monkeypatch)
    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(project_id, "events")
    publisher.create_topic(name=topic)
    message_id = publisher.publish(topic, b"hello").result(timeout=30)
    assert message_id


def test_moto_server_stores_an_object_in_a_new_bucket(s3_server, monkeypatch):
    import boto3

    s3_server.apply(monkeypatch)
    s3 = boto3.client("s3")
    assert s3.meta.endpoint_url == s3_server.url
    bucket = f"b-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"


def test_fake_gcs_server_accepts_a_resumable_upload(gcs_server, monkeypatch):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    gcs_server.apply(monkeypatch)
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    bucket = client.create_bucket(f"b-{secrets.token_hex(4)}")
    blob = bucket.blob("big")
    blob.chunk_size = 256 * 1024  # forces the resumable path, in several requests
    data = os.urandom(1024 * 1024 + 7)
    blob.upload_from_string(data)
    assert bucket.blob("big").download_as_bytes() == data


def test_postgres_answers_select_one_through_sqlalchemy_and_pg8000(postgres_server):
    import sqlalchemy as sa

    assert postgres_server.url.startswith("postgresql+pg8000://")
    engine = sa.create_engine(postgres_server.url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
