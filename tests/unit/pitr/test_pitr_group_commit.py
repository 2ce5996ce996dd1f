"""Capture's group commit: concurrent requests share one INSERT, and each returns once its own batch is written."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from firebackup.crypto.keys import DataKey
from firebackup.db.models import Project
from firebackup.pitr.events import CREATE, CapturedWrite
from firebackup.pitr.sealing import ChangeSealer
from firebackup.services.context import Ctx
from firebackup.services.pitr import Capture, _Target

WAIT = 30.0  # seconds: only a guard against hanging forever, never a measure of speed


@contextmanager
def _no_database() -> Iterator[Ctx]:
    raise AssertionError("these tests stand in for the database; nothing may open a transaction")
    yield  # pragma: no cover


class GatedCapture(Capture):
    """A Capture whose store is a list, each INSERT held until the test opens its gate."""

    def __init__(self) -> None:
        super().__init__(_no_database)
        project = Project(id="prj_1", org_id="org_1", name="p", gcp_project_id="p", database_id="(default)",
                          auth_kind="service_account")
        self.target = _Target(project, ChangeSealer("prj_1", DataKey.generate()))
        self.inserts: list[list[str]] = []
        self.gates: list[threading.Event] = []
        self.failure: BaseException | None = None

    def _lookup(self, project: str, database: str) -> list[_Target]:
        return [self.target]

    def _insert(self, values: list[dict[str, Any]]) -> None:
        gate = threading.Event()
        self.gates.append(gate)
        self.inserts.append([v["document_path"] for v in values])
        assert gate.wait(WAIT)
        if self.failure is not None:
            raise self.failure

    def pending(self) -> int:
        with self._lock:
            return 0 if self._pending is None else len(self._pending.values)


def _write(n: int) -> CapturedWrite:
    return CapturedWrite("p", "(default)", f"users/u{n}", CREATE, 1_800_000_000 * 10**9 + n, b"doc")


def _until(cond: Callable[[], bool]) -> None:
    ends = time.monotonic() + WAIT
    while not cond():
        assert time.monotonic() < ends, "the requests never reached the state the test waits for"
        time.sleep(0.001)


class Requests:
    """Each record() on its own thread; what it returned or raised, and when it finished."""

    def __init__(self, capture: GatedCapture):
        self.capture = capture
        self.done: dict[int, threading.Event] = {}
        self.outcome: dict[int, object] = {}

    def start(self, n: int) -> None:
        self.done[n] = threading.Event()

        def run() -> None:
            try:
                self.outcome[n] = self.capture.record(_write(n))
            except BaseException as e:  # noqa: BLE001 - the test looks at what each request saw
                self.outcome[n] = e
            self.done[n].set()

        threading.Thread(target=run, daemon=True).start()


def test_requests_arriving_while_a_batch_is_written_share_the_next_insert_and_return_once_it_is_written() -> None:
    capture = GatedCapture()
    req = Requests(capture)
    req.start(0)
    _until(lambda: len(capture.gates) == 1)  # insert 1 (u0) is being written
    for n in (1, 2, 3):
        req.start(n)
    _until(lambda: capture.pending() == 3)
    capture.gates[0].set()
    _until(lambda: len(capture.gates) == 2)  # insert 2 (u1-u3) is being written
    for n in (4, 5):
        req.start(n)
    _until(lambda: capture.pending() == 2)
    capture.gates[1].set()
    # Requests 1-3 return while insert 3 is still held: they never wait out a later batch.
    assert all(req.done[n].wait(WAIT) for n in (0, 1, 2, 3))
    assert not req.done[4].is_set() and not req.done[5].is_set()
    _until(lambda: len(capture.gates) == 3)
    capture.gates[2].set()
    assert all(req.done[n].wait(WAIT) for n in (4, 5))
    assert [sorted(i) for i in capture.inserts] == [["users/u0"], ["users/u1", "users/u2", "users/u3"],
                                                    ["users/u4", "users/u5"]]
    assert all(req.outcome[n] == 1 for n in range(6))


def test_a_failed_insert_fails_every_request_of_its_batch_and_no_other() -> None:
    capture = GatedCapture()
    req = Requests(capture)
    req.start(0)
    _until(lambda: len(capture.gates) == 1)
    for n in (1, 2):
        req.start(n)
    _until(lambda: capture.pending() == 2)
    capture.gates[0].set()
    _until(lambda: len(capture.gates) == 2)
    capture.failure = ConnectionError("the database went away")
    capture.gates[1].set()
    assert all(req.done[n].wait(WAIT) for n in (0, 1, 2))
    assert req.outcome[0] == 1
    assert all(isinstance(req.outcome[n], ConnectionError) for n in (1, 2))
    capture.failure = None
    req.start(3)  # the next request is not stuck behind the failed batch
    _until(lambda: len(capture.gates) == 3)
    capture.gates[2].set()
    assert req.done[3].wait(WAIT) and req.outcome[3] == 1

