"""Attack fixtures: the API on its own SQLite database with chosen settings, and TCP listeners on 127.0.0.1
standing in for the hosts an attacker would aim the platform at (a metadata server, an internal service)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from firebackup.bootstrap import api_app
from firebackup.crypto.secrets import LocalMasterKey, Sealer
from firebackup.db.session import make_session_factory
from firebackup.services.ports import RecordingQueue
from firebackup.settings import Settings
from tests.integration.controlplane.conftest import FakeFirestoreProber, FakeGoogleOAuth
from tests.integration.controlplane.jobs_world import Org, make_org


class Listener:
    """A TCP server on 127.0.0.1 that records who connected and every byte sent to it.

    answer None: accept and never answer (a stalled service); else send `answer` once a request's
    headers have arrived, then close. What it saw is read through connections() and
    received_when_closed(), which synchronize with its threads instead of sleeping.
    """

    def __init__(self, answer: bytes | None) -> None:
        self.answer = answer
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.received = bytearray()
        self._cond = threading.Condition()
        self._peers: list[Any] = []  # accepted connections' peer addresses, in accept order
        self._markers: set[Any] = set()
        self._reading = 0
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connections(self) -> int:
        """How many connections others have made so far.

        Exact, not a snapshot that may miss one still in the accept queue: a marker connection of
        ours joins that queue behind every earlier one, and is waited for.
        """
        with socket.create_connection(("127.0.0.1", self.port)) as marker:
            me = marker.getsockname()
            with self._cond:
                self._markers.add(me)
                assert self._cond.wait_for(lambda: me in self._peers, timeout=30), "the listener stopped accepting"
                return sum(1 for p in self._peers if p not in self._markers)

    def received_when_closed(self) -> bytes:
        """Every byte received, once every connection accepted so far has been closed by its client."""
        self.connections()
        with self._cond:
            assert self._cond.wait_for(lambda: self._reading == 0, timeout=30), "a connection is still open"
            return bytes(self.received)

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self.server.accept()
            except OSError:
                return  # closed
            with self._cond:
                self._peers.append(peer)
                self._open.append(conn)
                self._reading += 1
                self._cond.notify_all()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        head = b""
        try:
            while chunk := conn.recv(65536):
                with self._cond:
                    self.received += chunk
                head += chunk
                if self.answer is not None and b"\r\n\r\n" in head:
                    conn.sendall(self.answer)
                    conn.close()
                    return
        except OSError:
            return
        finally:
            with self._cond:
                self._reading -= 1
                self._cond.notify_all()

    def close(self) -> None:
        self.server.close()
        with self._cond:
            for conn in self._open:
                conn.close()


@pytest.fixture
def listener() -> Iterator[Callable[..., Listener]]:
    """listener(answer=None) -> a Listener; all are closed after the test."""
    made: list[Listener] = []

    def make(answer: bytes | None = None) -> Listener:
        made.append(Listener(answer))
        return made[-1]

    yield make
    for item in made:
        item.close()


@dataclass
class Tenant:
    """A Member-or-better's view: an organization of their own on the API, called with an owner token."""

    org: Org
    app: Any

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return self.org.call(method, path, body)

    def post(self, path: str, body: Any) -> Any:
        return self.call("POST", path, body)


@pytest.fixture
def tenant(tmp_path: Path) -> Callable[..., Tenant]:
    """tenant(**settings) -> the API built from Settings(**settings) and a fresh organization on it."""
    made = 0

    def make(**settings: Any) -> Tenant:
        nonlocal made
        made += 1
        key = os.urandom(32)
        plane = Settings(database_url=f"sqlite:///{tmp_path / f'fb{made}.db'}", master_key=key, **settings)
        app = api_app(plane, sealer=Sealer(LocalMasterKey(key)), queue=RecordingQueue(), oauth=FakeGoogleOAuth(),
                      prober=FakeFirestoreProber())
        factory = make_session_factory(app.extensions["firebackup_control_plane"].engine)
        return Tenant(make_org(app, factory, tmp_path), app)

    return make
