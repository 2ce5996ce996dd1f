"""A control plane on SQLite and on PostgreSQL, a queue that keeps each task's delay, a clock the test moves,
and a real HTTP receiver on 127.0.0.1 that answers from a script."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from firebackup.bootstrap import ControlPlane, api_app
from firebackup.runtime.queue import TaskQueue
from firebackup.services.workers import Workers
from tests.integration.controlplane.conftest import db_url, engine  # noqa: F401 - fixtures used here
from tests.integration.controlplane.jobs_world import Org, make_org, settings_for
from tests.integration.local_http import QuietHandler, serving


class DelayedQueue(TaskQueue):
    """Keeps every task with the delay it asked for; the test runs them when it moves the clock."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, dict[str, Any], float]] = []

    def enqueue(self, name: str, payload: dict[str, Any], *, delay_seconds: float = 0.0) -> None:
        self.tasks.append((name, dict(payload), delay_seconds))


class Clock:
    """Starts a minute after the wall clock (which stamps a new delivery due at once) and moves when told."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Plane:
    org: Org
    plane: ControlPlane
    queue: DelayedQueue
    clock: Clock
    workers: Workers


@pytest.fixture
def plane(engine: sa.Engine, tmp_path: Path) -> Plane:  # noqa: F811 - the imported fixture
    queue, clock = DelayedQueue(), Clock()
    app = api_app(settings_for(engine, b"w" * 32, allow_http_webhooks=True), engine=engine, queue=queue)
    control: ControlPlane = app.extensions["firebackup_control_plane"]
    workers = Workers(control.factory, control.ports, clock=clock)
    return Plane(make_org(app, control.factory, tmp_path), control, queue, clock, workers)


@dataclass
class Receiver:
    url: str
    answers: list[tuple[int, bytes]]  # (status, body) per request, in order; the last one repeats
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver("", [(200, b"ok")])

    class Handler(QuietHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            rx.got.append(({k.lower(): v for k, v in self.headers.items()}, self.body()))
            self.answer(*rx.answers[min(len(rx.got), len(rx.answers)) - 1])

    with serving(Handler) as base:
        rx.url = base + "/hook"
        yield rx
