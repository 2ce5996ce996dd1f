"""The backup's document count for the progress bar is best effort: it never fails, blocks or outlives the backup."""

from __future__ import annotations

import io
import threading

import pytest

from firebackup.engine.backup.run import _DocumentTotal, _someone_watches
from firebackup.errors import SourceError
from firebackup.progress import NoProgress, TerminalProgress


class _Bar:
    def __init__(self) -> None:
        self.totals: list[int | None] = []

    def __call__(self, documents: int = 0, bytes: int = 0) -> None:
        pass

    def set_total(self, documents: int | None = None, bytes: int | None = None) -> None:
        self.totals.append(documents)


class _Stream:
    def __init__(self) -> None:
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()


class _Reader:
    """Stands in for SnapshotReader.count_documents: answers n, raises, or hangs until cancelled."""

    def __init__(self, *, answer: int | None = None, error: BaseException | None = None, hang: bool = False):
        self.answer, self.error, self.hang = answer, error, hang
        self.stream = _Stream()
        self.streaming = threading.Event()
        self.asked: list = []

    def count_documents(self, collections=None, *, on_stream=None) -> int:
        self.asked.append(collections)
        on_stream(self.stream)
        self.streaming.set()
        if self.hang:
            self.stream.cancelled.wait()
            raise SourceError("RunAggregationQuery on db at host failed: CANCELLED")
        if self.error is not None:
            raise self.error
        return self.answer


@pytest.fixture
def thread_errors(monkeypatch) -> list:
    """Exceptions that escape any thread during the test."""
    seen: list = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    return seen


def test_a_finished_count_becomes_the_bars_document_total(thread_errors):
    bar, reader = _Bar(), _Reader(answer=1234)

    total = _DocumentTotal(reader, ["users"], bar)
    total.thread.join()

    assert bar.totals == [1234]
    assert reader.asked == [["users"]]
    assert thread_errors == []


@pytest.mark.parametrize("error", [SourceError("count refused"), ValueError("Cannot invoke RPC on closed channel!")])
def test_a_failing_count_leaves_the_bar_without_a_total_and_raises_nothing(thread_errors, error):
    bar = _Bar()

    total = _DocumentTotal(_Reader(error=error), None, bar)
    total.thread.join()

    assert bar.totals == []
    assert thread_errors == []


def test_stopping_cancels_a_running_count_and_no_total_arrives_after_it(thread_errors):
    bar, reader = _Bar(), _Reader(hang=True)
    total = _DocumentTotal(reader, None, bar)
    reader.streaming.wait()

    total.stop()
    total.thread.join()

    assert reader.stream.cancelled.is_set()
    assert bar.totals == []
    assert thread_errors == []


def test_the_count_thread_never_keeps_the_process_alive():
    reader = _Reader(hang=True)
    total = _DocumentTotal(reader, None, _Bar())
    try:
        assert total.thread.daemon
    finally:
        total.stop()
        total.thread.join()


def test_only_a_bar_that_can_show_a_total_counts_as_someone_watching():
    assert _someone_watches(TerminalProgress("backup", io.StringIO()))
    assert _someone_watches(_Bar())
    assert not _someone_watches(NoProgress())
    assert not _someone_watches(None)
    assert not _someone_watches(lambda documents=0, bytes=0: None)  # a bare callback has no set_total
