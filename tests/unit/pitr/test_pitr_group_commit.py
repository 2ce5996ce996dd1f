"""GroupCommit: concurrent requests share one INSERT, and each returns once its own batch is written."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from firebackup.crypto.keys import DataKey
from firebackup.db.models import Project
from firebackup.pitr.events import CREATE, CapturedWrite
from firebackup.pitr.sealing import ChangeSealer
from firebackup.services.context import Ctx
from firebackup.services.pitr import Capture, GroupCommit, _Target

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
        self.lookups: list[str] = []  # the thread each lookup ran on
        self.known = False

    def cached_targets(self, project: str, database: str) -> list[_Target] | None:
        return [self.target] if self.known else None

    def targets(self, project: str, database: str) -> list[_Target]:
        self.lookups.append(threading.current_thread().name)
        self.known = True
        return [self.target]

    def store(self, rows: list[dict[str, Any]]) -> None:
        gate = threading.Event()
        self.gates.append(gate)
        self.inserts.append([v["document_path"] for v in rows])
        assert gate.wait(WAIT)
        if self.failure is not None:
            raise self.failure


def _write(n: int) -> CapturedWrite:
    return CapturedWrite("p", "(default)", f"users/u{n}", CREATE, 1_800_000_000 * 10**9 + n, b"doc")


async def _until(cond: Callable[[], bool]) -> None:
    ends = time.monotonic() + WAIT
    while not cond():
        assert time.monotonic() < ends, "the requests never reached the state the test waits for"
        await asyncio.sleep(0.001)


class Requests:
    """Each record() a task of its own on the test's event loop."""

    def __init__(self, group: GroupCommit):
        self.group = group
        self.tasks: dict[int, asyncio.Task[int]] = {}

    def start(self, n: int) -> None:
        self.tasks[n] = asyncio.get_running_loop().create_task(self.group.record(_write(n)))

    def pending(self) -> int:
        return sum(len(rows) for rows, _ in self.group._pending)

    async def finished(self, *ns: int) -> list[object]:
        """What each request returned or raised, once all have finished."""
        done = await asyncio.wait_for(asyncio.gather(*(self.tasks[n] for n in ns), return_exceptions=True), WAIT)
        return list(done)


async def _held_behind_the_first_insert(capture: GatedCapture, req: Requests, *ns: int) -> None:
    """Request 0's insert is being written (its gate shut) and requests ns wait in the next batch."""
    req.start(0)
    await _until(lambda: len(capture.gates) == 1)
    for n in ns:
        req.start(n)
    await _until(lambda: req.pending() == len(ns))


def _run(scenario: Callable[[GatedCapture, Requests], Coroutine[Any, Any, None]]) -> GatedCapture:
    capture = GatedCapture()
    group = GroupCommit(capture)
    raised: list[BaseException] = []

    def loop() -> None:
        try:
            asyncio.run(scenario(capture, Requests(group)))
        except BaseException as e:  # noqa: BLE001 - raised again on the test's thread
            raised.append(e)

    # An event loop of its own on a thread of its own: another test's session (Playwright's sync
    # API) may be running one on this thread.
    thread = threading.Thread(target=loop)
    thread.start()
    thread.join(2 * WAIT)
    assert not thread.is_alive(), "the scenario never ended"
    if raised:
        raise raised[0]
    return capture


def test_requests_arriving_while_a_batch_is_written_share_the_next_insert_and_return_once_it_is_written() -> None:
    async def scenario(capture: GatedCapture, req: Requests) -> None:
        await _held_behind_the_first_insert(capture, req, 1, 2, 3)
        capture.gates[0].set()
        await _until(lambda: len(capture.gates) == 2)  # insert 2 (u1-u3) is being written
        for n in (4, 5):
            req.start(n)
        await _until(lambda: req.pending() == 2)
        capture.gates[1].set()
        # Requests 1-3 return while insert 3 is still held: they never wait out a later batch.
        assert await req.finished(0, 1, 2, 3) == [1, 1, 1, 1]
        assert not req.tasks[4].done() and not req.tasks[5].done()
        await _until(lambda: len(capture.gates) == 3)
        capture.gates[2].set()
        assert await req.finished(4, 5) == [1, 1]

    capture = _run(scenario)
    assert [sorted(i) for i in capture.inserts] == [["users/u0"], ["users/u1", "users/u2", "users/u3"],
                                                    ["users/u4", "users/u5"]]


def test_a_failed_insert_fails_every_request_of_its_batch_and_no_other() -> None:
    async def scenario(capture: GatedCapture, req: Requests) -> None:
        await _held_behind_the_first_insert(capture, req, 1, 2)
        capture.gates[0].set()
        await _until(lambda: len(capture.gates) == 2)
        capture.failure = ConnectionError("the database went away")
        capture.gates[1].set()
        first, *failed = await req.finished(0, 1, 2)
        assert first == 1
        assert all(isinstance(f, ConnectionError) for f in failed), failed
        capture.failure = None
        req.start(3)  # the next request is not stuck behind the failed batch
        await _until(lambda: len(capture.gates) == 3)
        capture.gates[2].set()
        assert await req.finished(3) == [1]

    _run(scenario)


def test_a_request_whose_caller_went_away_leaves_the_others_of_its_batch_to_be_answered() -> None:
    async def scenario(capture: GatedCapture, req: Requests) -> None:
        await _held_behind_the_first_insert(capture, req, 1, 2)
        req.tasks[1].cancel()
        capture.gates[0].set()
        await _until(lambda: len(capture.gates) == 2)
        capture.gates[1].set()
        zero, cancelled, two = await req.finished(0, 1, 2)
        assert (zero, two) == (1, 1)
        assert isinstance(cancelled, asyncio.CancelledError)

    capture = _run(scenario)
    # The cancelled request's rows were already in the batch: stored all the same, as a redelivery would be.
    assert [sorted(i) for i in capture.inserts] == [["users/u0"], ["users/u1", "users/u2"]]


def test_the_database_is_read_and_written_on_one_thread_of_its_own_never_on_the_event_loop() -> None:
    async def scenario(capture: GatedCapture, req: Requests) -> None:
        loop_thread = threading.current_thread().name
        req.start(0)
        await _until(lambda: len(capture.gates) == 1)
        capture.gates[0].set()
        assert await req.finished(0) == [1]
        assert capture.lookups and all(name != loop_thread for name in capture.lookups)
        assert all(name.startswith("pitr-database") for name in capture.lookups), capture.lookups

    _run(scenario)
