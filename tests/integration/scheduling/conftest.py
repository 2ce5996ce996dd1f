"""The scheduler and maintenance functions under functions-framework, fed ticks through the Pub/Sub emulator.

`pubsub` makes a topic and a subscription on the official emulator; `ticks.publish_and_pull(n)`
publishes n ticks and pulls them back; `deliver(url, message, pubsub)` posts one pulled message
to a function the way Eventarc does (a binary-mode CloudEvent). `serve_function(name, db_url)`
runs functions/<name>/main.py in a functions-framework process of its own on a free port.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from google.cloud import pubsub_v1

from firebackup.db.models import Organization, Project, StorageDestination, new_id
from infra.local import stack

ROOT = Path(__file__).resolve().parents[3]
PROJECT = "demo-firebackup"


@dataclass
class PubSub:
    publisher: pubsub_v1.PublisherClient
    subscriber: pubsub_v1.SubscriberClient
    topic: str
    subscription: str

    def publish_and_pull(self, n: int, tick: str = "firebackup-scheduler") -> list[Any]:
        """Publish n ticks, pull all n back (acknowledged), oldest first; returns their PubsubMessages."""
        for _ in range(n):
            self.publisher.publish(self.topic, json.dumps({"tick": tick}).encode()).result(timeout=60)
        got: list[Any] = []
        for _ in range(50):  # the emulator may hand them out over several pulls
            if len(got) >= n:
                break
            resp = self.subscriber.pull(subscription=self.subscription, max_messages=n, timeout=60)
            got.extend(resp.received_messages)
        assert len(got) == n, f"pulled {len(got)} of {n} ticks from the emulator"
        self.subscriber.acknowledge(subscription=self.subscription, ack_ids=[m.ack_id for m in got])
        return sorted((m.message for m in got), key=lambda m: m.publish_time)


@pytest.fixture
def pubsub(pubsub_emulator: stack.Service, monkeypatch: pytest.MonkeyPatch) -> Iterator[PubSub]:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.env["PUBSUB_EMULATOR_HOST"])
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    name = f"ticks-{secrets.token_hex(4)}"
    topic = publisher.topic_path(PROJECT, name)
    subscription = subscriber.subscription_path(PROJECT, name)
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)
    yield PubSub(publisher, subscriber, topic, subscription)
    subscriber.close()


def deliver(url: str, message: Any, pubsub: PubSub) -> int:
    """POST one pulled message to a CloudEvent function as Eventarc does (binary mode); returns the status."""
    published = message.publish_time.rfc3339()
    body = {"message": {"data": base64.b64encode(message.data).decode(), "messageId": message.message_id,
                        "publishTime": published, "attributes": dict(message.attributes)},
            "subscription": pubsub.subscription}
    headers = {"ce-id": message.message_id, "ce-specversion": "1.0", "ce-time": published,
               "ce-source": f"//pubsub.googleapis.com/{pubsub.topic}",
               "ce-type": "google.cloud.pubsub.topic.v1.messagePublished", "Content-Type": "application/json"}
    return requests.post(url, data=json.dumps(body), headers=headers, timeout=120).status_code


@pytest.fixture
def serve_function(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start functions/<name>/main.py under functions-framework; returns its URL. Stopped after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def serve(name: str, db_url: str, **settings: str) -> str:
        port = stack.free_port()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": f"{ROOT / 'shared'}:{ROOT}",
               "HOME": str(tmp_path), "FIREBACKUP_DATABASE_URL": db_url, "FIREBACKUP_QUEUE": "recording",
               "FIREBACKUP_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
               "FIREBACKUP_ALLOW_LOCAL_STORAGE": "1", "FIREBACKUP_LOCAL_STORAGE_ROOT": str(tmp_path), **settings}
        log = open(tmp_path / f"{name}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "functions_framework", "--target", name,
                                 "--source", str(ROOT / "functions" / name / "main.py"),
                                 "--signature-type", "cloudevent", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(proc)
        for _ in range(600):  # until it listens (or dies); nothing is measured
            if proc.poll() is not None:
                pytest.fail(f"{name} function exited: {(tmp_path / f'{name}.log').read_text()[-2000:]}", pytrace=False)
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return f"http://127.0.0.1:{port}/"
            time.sleep(0.1)
        pytest.fail(f"{name} function did not listen on {port}", pytrace=False)

    yield serve
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Tenant:
    org: str
    project: str
    destination: str


def seed_tenant(engine: sa.Engine, destination_url: str = "file:///tmp/firebackup-ticks") -> Tenant:
    """An organization with a connected project and a destination, written straight into the database."""
    org, project, dest = new_id("org"), new_id("prj"), new_id("dst")
    with engine.begin() as conn:
        conn.execute(sa.insert(Organization).values(id=org, name="Ticks Inc"))
        conn.execute(sa.insert(Project).values(id=project, org_id=org, name="prod", gcp_project_id=f"p-{org[-8:]}",
                                               database_id="(default)", auth_kind="service_account"))
        conn.execute(sa.insert(StorageDestination).values(id=dest, org_id=org, name="here", kind="local",
                                                          url=destination_url, options={}))
    return Tenant(org, project, dest)
