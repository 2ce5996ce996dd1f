"""`make run`: the FireBackup platform on one machine, with embedded defaults, driven through its HTTP API.

Starts the Firestore and Auth emulators and seeds a demo dataset; serves the API (the same Flask app the
`api` function serves) with its workers in this process (the local queue) and the scheduler and
maintenance ticks (the local stand-in for Cloud Scheduler); then, through the HTTP API only, as any
client would: signs in a demo user, creates an organization, connects the emulator project, adds a
destination folder and a schedule, WAITS FOR THE SCHEDULER to start the first backup on its own,
restores it into a second database, compares source and copy document by document, prints the
summary and the URLs, and keeps serving until Ctrl-C (--exit-after-summary or
FIREBACKUP_EXIT_AFTER_SUMMARY=1 exits after the summary; the end-to-end test uses it).

    python -m infra.local.platform [--workdir DIR] [--port N] [--exit-after-summary] [--json]

Embedded defaults: SQLite at DIR/platform.db and backups under DIR/storage, both made fresh each run
(the emulators start empty too). PostgreSQL is one setting away: FIREBACKUP_DATABASE_URL.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from infra.local import stack
from infra.local.demo import diff, dump_firestore, seed_auth, seed_firestore

PROJECT = "demo-firebackup"
RESTORED_DATABASE = "restored"
DEMO_EMAIL, DEMO_PASSWORD = "demo@firebackup.local", "firebackup-demo"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _service_account_key(project: str) -> dict[str, str]:
    """A well-formed key for the demo project (the emulator takes no credentials; the API wants the shape)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return {"type": "service_account", "project_id": project, "private_key_id": "demo", "private_key": pem,
            "client_email": f"firebackup@{project}.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token"}


class Platform:
    """The emulators, the API with in-process workers, and the ticks; a context manager."""

    def __init__(self, workdir: Path, *, port: int = 0, tick_seconds: float = 5.0,
                 maintenance_seconds: float = 3600.0, env: dict[str, str] | None = None) -> None:
        self.workdir, self.port = workdir.resolve(), port
        self.tick_seconds, self.maintenance_seconds = tick_seconds, maintenance_seconds
        self.extra_env = dict(env or {})
        self._stop: list[Any] = []

    def __enter__(self) -> "Platform":
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self) -> None:
        from werkzeug.serving import make_server

        from firebackup import bootstrap
        from firebackup.settings import Settings

        self.workdir.mkdir(parents=True, exist_ok=True)
        storage = self.workdir / "storage"
        for stale in (self.workdir / "platform.db", storage):
            if stale.is_dir():
                shutil.rmtree(stale)
            elif stale.exists():
                stale.unlink()
        storage.mkdir()
        say("starting the Firestore and Auth emulators ...")
        self.firestore = stack.start_firestore_emulator()
        self._stop.append(self.firestore.stop)
        self.auth = stack.start_auth_emulator(PROJECT)
        self._stop.append(self.auth.stop)
        os.environ.update(self.firestore.env)  # the demo's own seeding and comparing use the client libraries
        os.environ.update(self.auth.env)
        self.storage = storage
        env = {
            "FIREBACKUP_DATABASE_URL": f"sqlite:///{self.workdir / 'platform.db'}",
            "FIREBACKUP_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
            "FIREBACKUP_FIREBASE_PROJECT": PROJECT,
            "FIREBACKUP_QUEUE": "local",
            # Development settings, each explicit: local folders, the Auth emulator's unverified addresses.
            "FIREBACKUP_ALLOW_LOCAL_STORAGE": "1",
            "FIREBACKUP_LOCAL_STORAGE_ROOT": str(storage),
            "FIREBACKUP_TRUST_EMULATOR_TOKENS": "1",
            "FIREBACKUP_LOCAL_TICK_SECONDS": str(self.tick_seconds),
            "FIREBACKUP_LOCAL_MAINTENANCE_SECONDS": str(self.maintenance_seconds),
            **self.firestore.env, **self.auth.env,
        }
        settings = Settings.from_env({**os.environ, **env, **self.extra_env})
        self.app = bootstrap.api_app(settings)
        self.plane = self.app.extensions["firebackup_control_plane"]
        self._stop.append(self.plane.ports.queue.close)
        self.server = make_server(stack.HOST, self.port, self.app, threaded=True)
        self._stop.append(self.server.shutdown)
        threading.Thread(target=self.server.serve_forever, name="firebackup-api", daemon=True).start()
        self.url = f"http://{stack.HOST}:{self.server.server_port}"
        self.ticker = bootstrap.local_ticker(self.plane).start()
        self._stop.append(self.ticker.stop)
        say(f"dashboard at {self.url}/, API at {self.url}/v1 (metrics at {self.url}/metrics); "
            f"ticks every {self.tick_seconds:g} s")

    def stop(self) -> None:
        while self._stop:
            try:
                self._stop.pop()()
            except Exception as e:  # noqa: BLE001 - stop the rest whatever one of them says
                say(f"while stopping: {type(e).__name__}: {e}")

    def sign_in(self, email: str = DEMO_EMAIL, password: str = DEMO_PASSWORD) -> "Client":
        """A user of the Auth emulator (signed up on first use), as an API client holding their ID token."""
        base = f"http://{self.auth.host}/identitytoolkit.googleapis.com/v1/accounts"
        body = {"email": email, "password": password, "returnSecureToken": True}
        r = requests.post(f"{base}:signUp?key=demo", json=body, timeout=30)
        if r.status_code != 200:
            r = requests.post(f"{base}:signInWithPassword?key=demo", json=body, timeout=30)
        r.raise_for_status()
        return Client(self.url, r.json()["idToken"])


class Client:
    """The HTTP API as a client sees it; a non-2xx answer raises with the API's own error line."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.session = url, requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: Any = None) -> Any:
        r = self.session.request(method, f"{self.url}/v1{path}", json=body, timeout=60)
        if r.status_code >= 300:
            raise RuntimeError(f"{method} {path} -> {r.status_code}: {r.text[:300]}")
        return r.json() if r.content else None

    def wait(self, path: str, done: Any, *, timeout: float, what: str) -> Any:
        """Poll GET path until done(answer) is true; the last answer, or TimeoutError saying what did not happen."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.call("GET", path)
            if done(got):
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not happen within {timeout:g} s (last answer: {json.dumps(got)[:300]})")
            time.sleep(1)


def demo(platform: Platform, *, wait_seconds: float = 150) -> dict[str, Any]:
    """Seed, then drive the platform through its API: connect, destination, schedule, the scheduler's
    first backup, a restore into a second database, and compare."""
    t0 = time.monotonic()
    docs = seed_firestore(PROJECT, "(default)")
    users = seed_auth(PROJECT)
    say(f"seeded {docs} documents and {users} Auth users into {PROJECT}")
    client = platform.sign_in()
    org = client.call("POST", "/orgs", {"name": "Demo"})["id"]
    project = client.call("POST", f"/orgs/{org}/projects", {
        "name": "demo", "gcp_project_id": PROJECT, "service_account_key": _service_account_key(PROJECT)})["id"]
    folder = platform.storage / "demo"
    destination = client.call("POST", f"/orgs/{org}/destinations",
                              {"name": "local folder", "kind": "local", "url": folder.as_uri()})["id"]
    schedule = client.call("POST", f"/orgs/{org}/schedules", {
        "name": "every minute", "project_id": project, "destination_id": destination, "cron": "* * * * *",
        "timezone": "UTC", "retention": {"keep_last": 5}})["id"]
    say("schedule created (every minute); waiting for the scheduler to start the first backup ...")
    backups = client.wait(f"/orgs/{org}/backups", lambda page: any(
        b["schedule_id"] == schedule and b["state"] in ("completed", "failed") for b in page["items"]),
        timeout=wait_seconds, what="a scheduled backup")
    backup = next(b for b in backups["items"] if b["schedule_id"] == schedule and b["state"] in ("completed", "failed"))
    if backup["state"] != "completed":
        raise RuntimeError(f"the scheduled backup failed: {backup['error']}")
    say(f"backup {backup['id']} by the scheduler: {backup['documents']} documents")
    restore = client.call("POST", f"/orgs/{org}/restores", {
        "backup_id": backup["id"], "target_project_id": project, "target_database": RESTORED_DATABASE})
    restore = client.wait(f"/orgs/{org}/restores/{restore['id']}", lambda r: r["state"] in ("completed", "failed"),
                          timeout=wait_seconds, what="the restore")
    src, dst = dump_firestore(PROJECT, "(default)"), dump_firestore(PROJECT, RESTORED_DATABASE)
    problems = diff(src, dst)
    match = restore["state"] == "completed" and not problems and len(src) == docs == backup["documents"]
    return {
        "match": match, "dashboard": f"{platform.url}/", "api": f"{platform.url}/v1",
        "metrics": f"{platform.url}/metrics",
        "openapi": f"{platform.url}/v1/openapi.json", "login": {"email": DEMO_EMAIL, "password": DEMO_PASSWORD},
        "organization": org, "schedule": schedule, "backup_id": backup["id"], "restore_id": restore["id"],
        "documents_seeded": docs, "documents_backed_up": backup["documents"],
        "documents_restored": restore["documents_written"], "documents_compared": len(src),
        "bytes_stored": backup["bytes_stored"], "source": f"{PROJECT}/(default)",
        "target": f"{PROJECT}/{RESTORED_DATABASE}", "folder": str(folder), "problems": problems[:20],
        "restore_error": restore["error"], "duration_s": round(time.monotonic() - t0, 2),
    }


def _print(s: dict[str, Any]) -> None:
    print(f"\nFireBackup platform: {s['source']} -> {s['target']}\n"
          f"  backup      {s['backup_id']}, started by the scheduler: {s['documents_backed_up']} documents, "
          f"{s['bytes_stored']} bytes stored, encrypted, in {s['folder']}\n"
          f"  restore     {s['restore_id']}: {s['documents_restored']} documents\n"
          f"  compare     {s['documents_compared']} documents: {'exact match' if s['match'] else 'MISMATCH'}\n"
          f"  dashboard   {s['dashboard']}   (sign in with the demo login below)\n"
          f"  API         {s['api']}   (OpenAPI: {s['openapi']})\n"
          f"  metrics     {s['metrics']}\n"
          f"  demo login  {s['login']['email']} / {s['login']['password']} (Auth emulator)\n"
          f"  took        {s['duration_s']} s", flush=True)
    for p in s["problems"]:
        print(f"  - {p}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m infra.local.platform", description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=stack.REPO_ROOT / ".local", help="default: ./.local")
    ap.add_argument("--port", type=int, default=int(os.environ.get("FIREBACKUP_PORT", "8080")),
                    help="the API's port on 127.0.0.1 (default: 8080; 0 for any free port)")
    ap.add_argument("--exit-after-summary", action="store_true",
                    default=os.environ.get("FIREBACKUP_EXIT_AFTER_SUMMARY", "") in ("1", "true", "yes"),
                    help="exit after the summary instead of serving until Ctrl-C")
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        with Platform(args.workdir, port=args.port) as platform:
            summary = demo(platform)
            print(json.dumps(summary), flush=True) if args.json else _print(summary)
            if not args.exit_after_summary and summary["match"]:
                say("serving until Ctrl-C ...")
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    say("stopping")
    except (stack.StackError, RuntimeError, TimeoutError, OSError) as e:
        say(f"platform: {e}")
        return 2 if isinstance(e, stack.StackError) else 1
    return 0 if summary["match"] else 1


if __name__ == "__main__":
    sys.exit(main())
