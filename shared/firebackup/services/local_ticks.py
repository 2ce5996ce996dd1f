"""The embedded stand-in for Cloud Scheduler -> Pub/Sub -> the scheduler and maintenance functions.

In the cloud, a tick a minute reaches functions/scheduler and an hourly one functions/maintenance;
on one machine a daemon thread calls the very same services (scheduling.run_due, maintenance.run)
every `every` and `maintenance_every` seconds. A tick that fails is logged and the next one runs:
as with Pub/Sub redelivery, the database decides what is due, so nothing starts twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Callable

from firebackup.engine.jobs import one_line, utcnow
from firebackup.services import maintenance, scheduling
from firebackup.services.context import Ports, SystemTx

log = logging.getLogger("firebackup.ticks")


class LocalTicker:
    """Ticks the scheduler every `every` seconds and maintenance every `maintenance_every` seconds."""

    def __init__(self, tx: SystemTx, ports: Ports, *, every: float, maintenance_every: float,
                 reap_after: dt.timedelta, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.tx, self.ports, self.clock = tx, ports, clock
        self.every, self.maintenance_every, self.reap_after = every, maintenance_every, reap_after
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> list[str]:
        """One scheduler tick now; returns the ids of the backups it started."""
        started = scheduling.run_due(self.tx, self.clock())
        self.ports.metrics.report_queues()
        return started

    def maintain(self) -> maintenance.Report:
        """One maintenance run now."""
        report = maintenance.run(self.tx, self.clock(), reap_after=self.reap_after)
        return report

    def start(self) -> "LocalTicker":
        self._thread = threading.Thread(target=self._run, name="firebackup-ticks", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        last_maintenance: float | None = None
        while True:
            self._safely("scheduler", self.tick)
            now = time.monotonic()
            if last_maintenance is None or now - last_maintenance >= self.maintenance_every:
                last_maintenance = now
                self._safely("maintenance", self.maintain)
            if self._stop.wait(self.every):
                return

    @staticmethod
    def _safely(what: str, step: Callable[[], object]) -> None:
        try:
            step()
        except Exception as e:  # noqa: BLE001 - a failed tick is logged; the next one tries again
            log.warning("local %s tick failed: %s", what, one_line(e))
