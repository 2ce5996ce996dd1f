"""Progress reporting the engines can receive as a callback: `progress(documents=n, bytes=m)`.

Engines call the callback with increments (not totals) from any thread. A ProgressBar also
takes `set_total` once the size of the job is known; engines give it one only to a bar. The
terminal bar redraws at most a few times a second, so calling it once per chunk or per batch
costs nothing measurable.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Protocol, TextIO, runtime_checkable


class ProgressCallback(Protocol):
    def __call__(self, documents: int = 0, bytes: int = 0) -> None:
        """Add `documents` and `bytes` to what has been done so far."""


@runtime_checkable
class ProgressBar(ProgressCallback, Protocol):
    """A callback that can also show how much there is to do (a percentage, an ETA)."""

    def set_total(self, documents: int | None = None, bytes: int | None = None) -> None:
        """The job's size, in documents or bytes (None: that one stays unknown)."""


class NoProgress:
    """The callback to pass when nobody is watching."""

    def __call__(self, documents: int = 0, bytes: int = 0) -> None:
        pass

    def set_total(self, documents: int | None = None, bytes: int | None = None) -> None:
        pass

    def close(self) -> None:
        pass


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def _human_duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class TerminalProgress:
    """A one-line bar on a terminal: label, documents, bytes, rate and ETA when the total is known."""

    def __init__(self, label: str, stream: TextIO | None = None, *, interval: float = 0.2,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.documents = 0
        self.bytes = 0
        self.total_documents: int | None = None
        self.total_bytes: int | None = None
        self._interval = interval
        self._clock = clock
        self._start = clock()
        self._last_draw = 0.0
        self._lock = threading.Lock()
        self._drawn = False
        self._closed = False

    def set_total(self, documents: int | None = None, bytes: int | None = None) -> None:
        with self._lock:
            if documents is not None:
                self.total_documents = documents
            if bytes is not None:
                self.total_bytes = bytes

    def __call__(self, documents: int = 0, bytes: int = 0) -> None:
        with self._lock:
            self.documents += documents
            self.bytes += bytes
            now = self._clock()
            if now - self._last_draw >= self._interval:
                self._last_draw = now
                self._draw(now)

    def line(self, now: float | None = None) -> str:
        """The text of the bar as it would be drawn now."""
        now = self._clock() if now is None else now
        elapsed = max(now - self._start, 1e-9)
        rate = self.documents / elapsed
        parts = [self.label]
        done_fraction = None
        if self.total_documents:
            done_fraction = min(self.documents / self.total_documents, 1.0)
            width = 20
            filled = int(done_fraction * width)
            parts.append(f"[{'#' * filled}{'.' * (width - filled)}] {done_fraction * 100:3.0f}%")
            parts.append(f"{self.documents:,}/{self.total_documents:,} docs")
        elif self.total_bytes:
            done_fraction = min(self.bytes / self.total_bytes, 1.0)
            parts.append(f"{done_fraction * 100:3.0f}%")
            parts.append(f"{self.documents:,} docs")
        else:
            parts.append(f"{self.documents:,} docs")
        parts.append(_human_bytes(self.bytes))
        parts.append(f"{rate:,.0f} docs/s")
        if done_fraction and 0 < done_fraction < 1:
            parts.append(f"ETA {_human_duration(elapsed * (1 - done_fraction) / done_fraction)}")
        else:
            parts.append(_human_duration(elapsed))
        return "  ".join(parts)

    def _draw(self, now: float) -> None:
        self.stream.write("\r\x1b[K" + self.line(now))
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._draw(self._clock())
            self.stream.write("\n")
            self.stream.flush()


def progress_for(
    label: str, stream: TextIO | None = None, *, enabled: bool | None = None
) -> TerminalProgress | NoProgress:
    """A terminal bar when `stream` (stderr by default) is a terminal, else a silent callback."""
    stream = stream if stream is not None else sys.stderr
    if enabled is None:
        try:
            enabled = stream.isatty()
        except (AttributeError, ValueError):
            enabled = False
    return TerminalProgress(label, stream) if enabled else NoProgress()
