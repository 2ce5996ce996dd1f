"""TaskEndpoint: one task per request, and the status that tells Cloud Tasks whether to deliver it again."""

from __future__ import annotations

import json
from typing import Any, Mapping

import pytest

from firebackup.engine.jobs import LeaseHeld
from firebackup.errors import BucketNotFound, TransientStorageError
from firebackup.runtime.worker import RETRY_COUNT_HEADER, TaskEndpoint
from firebackup.runtime.worker_auth import SECRET_HEADER, SharedSecret, WorkerAuth

SECRET = "a-long-shared-secret-0123456789"
OK = {SECRET_HEADER: SECRET}


class Recorder:
    """Handlers that record their payloads and raise what the test scripts."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, dict[str, Any]]] = []
        self.raises: dict[str, Exception] = {}
        self.gave_up: list[tuple[str, dict[str, Any], str]] = []

    def handler(self, name: str) -> Any:
        def run(payload: dict[str, Any]) -> None:
            self.ran.append((name, payload))
            if name in self.raises:
                raise self.raises[name]

        return run

    def give_up(self, name: str, payload: dict[str, Any], error: BaseException) -> None:
        self.gave_up.append((name, payload, type(error).__name__))


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def endpoint(rec: Recorder, auth: WorkerAuth | None = None, attempts: int = 5) -> TaskEndpoint:
    names = ("backup.plan", "backup.chunk", "verify")
    return TaskEndpoint({n: rec.handler(n) for n in names}, auth or SharedSecret(SECRET),
                        max_attempts=lambda task: attempts, on_give_up=rec.give_up)


def body(task: str, payload: dict[str, Any] | None = None) -> bytes:
    return json.dumps({"task": task, "payload": payload if payload is not None else {"job": "bkp_1"}}).encode()


def test_an_authenticated_task_runs_once_and_answers_204(rec: Recorder) -> None:
    answer = endpoint(rec).respond(OK, body("backup.chunk", {"job": "bkp_1", "task": {"seq": 1}}))
    assert answer == ("", 204)
    assert rec.ran == [("backup.chunk", {"job": "bkp_1", "task": {"seq": 1}})]


@pytest.mark.parametrize("headers", [{}, {SECRET_HEADER: "wrong"}, {"Authorization": "Bearer x"}],
                         ids=["none", "wrong-secret", "a-token-nobody-checks"])
def test_an_unauthenticated_request_gets_401_and_runs_nothing(rec: Recorder, headers: Mapping[str, str]) -> None:
    answer, status = endpoint(rec).respond(headers, body("backup.plan"))
    assert status == 401 and isinstance(answer, dict) and answer["error"]["code"] == "unauthenticated"
    assert rec.ran == []


@pytest.mark.parametrize("raw", [body("restore.plan"), b"{not json", b"", json.dumps({"task": "verify"}).encode(),
                                 json.dumps({"task": "verify", "payload": [1]}).encode()],
                         ids=["another-workers-task", "not-json", "empty", "no-payload", "payload-not-an-object"])
def test_a_task_this_worker_does_not_run_gets_400_and_runs_nothing(rec: Recorder, raw: bytes) -> None:
    answer, status = endpoint(rec).respond(OK, raw)
    assert status == 400 and rec.ran == []
    assert isinstance(answer, dict) and "backup.chunk, backup.plan, verify" in answer["error"]["message"]


def test_a_permanent_failure_answers_2xx_so_it_is_not_retried(rec: Recorder) -> None:
    rec.raises["verify"] = BucketNotFound("bucket b does not exist")
    answer, status = endpoint(rec).respond({**OK, RETRY_COUNT_HEADER: "0"}, body("verify", {"backup_id": "b"}))
    assert 200 <= status < 300 and isinstance(answer, dict) and answer["error"]["code"] == "failed"
    assert rec.gave_up == []
    rec.raises["verify"] = KeyError("job")  # a malformed payload: a bug, not worth retrying either
    assert endpoint(rec).respond(OK, body("verify", {}))[1] == 200


def test_a_transient_failure_answers_503_so_the_queue_delivers_it_again(rec: Recorder) -> None:
    rec.raises["backup.chunk"] = TransientStorageError("503 Slow Down")
    answer, status = endpoint(rec).respond({**OK, RETRY_COUNT_HEADER: "3"}, body("backup.chunk"))
    assert status == 503 and isinstance(answer, dict) and answer["error"]["code"] == "unavailable"
    assert rec.gave_up == []


def test_a_transient_failure_on_the_last_allowed_attempt_fails_the_job_and_answers_2xx(rec: Recorder) -> None:
    rec.raises["backup.chunk"] = TransientStorageError("503 Slow Down")
    answer, status = endpoint(rec, attempts=5).respond({**OK, RETRY_COUNT_HEADER: "4"}, body("backup.chunk"))
    assert status == 200
    assert rec.gave_up == [("backup.chunk", {"job": "bkp_1"}, "TransientStorageError")]
    unlimited = endpoint(rec, attempts=-1)
    assert unlimited.respond({**OK, RETRY_COUNT_HEADER: "999"}, body("backup.chunk"))[1] == 503
    assert len(rec.gave_up) == 1


def test_a_lease_held_elsewhere_on_the_last_attempt_does_not_fail_the_job_running_under_it(rec: Recorder) -> None:
    rec.raises["backup.chunk"] = LeaseHeld("bkp_1", "d00000-00000")
    assert endpoint(rec, attempts=5).respond({**OK, RETRY_COUNT_HEADER: "4"}, body("backup.chunk"))[1] == 503
    assert rec.gave_up == []
