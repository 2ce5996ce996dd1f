"""Start a Cloud Function from its folder under `functions-framework`, as Cloud Functions would run it.

The function runs in a fresh interpreter (this one's executable) whose only project source is
the folder: `python -I -S` (no PYTHON* variables, no user site, no site-packages yet), then an
explicit sys.path of the folder, the standard library and this environment's site-packages with
their .pth files, except the editable install's, which would make the repository importable.
The interpreter reports where it imported `firebackup` from, so a test can prove it.

    build_functions.build(out)                      # infra/build_functions.py
    with start_built(out, "api", env) as fn:
        fn.request("GET", "/v1/openapi.json")
"""

from __future__ import annotations

import base64
import json
import os
import site
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from infra import functions
from infra.local import stack

# Prepended to every isolated program. argv[1] is the folder, argv[2] the site-packages
# directories (os.pathsep-separated); the program's own arguments follow.
_PRELUDE = """\
import os, site, sys
sys.path.insert(0, sys.argv[1])
for _dir in sys.argv[2].split(os.pathsep):
    sys.path.append(_dir)
    for _pth in sorted(os.listdir(_dir)):
        if _pth.endswith(".pth") and not _pth.startswith("__editable__"):
            site.addpackage(_dir, _pth, None)
"""

# Reports its firebackup and sys.path on one line, then runs the functions-framework command.
_LAUNCH = """\
import json, runpy
import firebackup
print("function-host:", json.dumps({"firebackup": firebackup.__file__, "sys_path": sys.path}), flush=True)
sys.argv = ["functions-framework", *sys.argv[3:]]
runpy.run_path(os.path.join(os.path.dirname(sys.executable), "functions-framework"), run_name="__main__")
"""
_REPORT = "function-host: "


def isolated_python(folder: Path, program: str, *args: str) -> list[str]:
    """argv running `program` in a fresh interpreter whose only project source is `folder`."""
    return [sys.executable, "-I", "-S", "-c", _PRELUDE + program, str(folder),
            os.pathsep.join(d for d in site.getsitepackages() if os.path.isdir(d)), *args]


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class FunctionServer:
    """A function served by functions-framework on 127.0.0.1; stop() ends its process group."""

    target: str
    folder: Path
    service: stack.Service
    firebackup_file: str  # where the function's interpreter imported firebackup from
    sys_path: list[str]

    @property
    def url(self) -> str:
        return self.service.url

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Response:
        """Send one HTTP request; any status is an answer (only a failed connection raises)."""
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return Response(r.status, r.headers.get("Content-Type", ""), r.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, e.headers.get("Content-Type", ""), e.read())

    def request_json(self, method: str, path: str, payload: object | None = None,
                     headers: Mapping[str, str] | None = None) -> Response:
        body = None if payload is None else json.dumps(payload).encode()
        return self.request(method, path, body, {"Content-Type": "application/json", **(headers or {})})

    def deliver_pubsub(self, topic: str, data: bytes, attributes: Mapping[str, str] | None = None,
                       *, project: str = "demo-firebackup", message_id: str | None = None) -> Response:
        """POST a Pub/Sub message as Eventarc delivers it: a CloudEvent in binary content mode."""
        headers, body = pubsub_cloudevent(project, topic, data, attributes or {}, message_id=message_id)
        return self.request("POST", "/", body, headers)

    def deliver_firestore_write(self, headers: Mapping[str, str], body: bytes) -> Response:
        """POST a Firestore write event built by firestore_write_cloudevent."""
        return self.request("POST", "/", body, headers)

    def stop(self) -> None:
        self.service.stop()

    def __enter__(self) -> FunctionServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def pubsub_cloudevent(project: str, topic: str, data: bytes, attributes: Mapping[str, str],
                      *, message_id: str | None = None, published: datetime | None = None,
                      ) -> tuple[dict[str, str], bytes]:
    """Headers and body of the CloudEvent Eventarc sends for a message published to a topic."""
    message_id = message_id or str(uuid.uuid4().int % 10**16)
    when = (published or datetime.now(timezone.utc)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    headers = {
        "ce-specversion": "1.0",
        "ce-id": message_id,
        "ce-source": f"//pubsub.googleapis.com/projects/{project}/topics/{topic}",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-time": when,
        "Content-Type": "application/json; charset=utf-8",
    }
    # Eventarc writes the message fields in both spellings.
    message = {"data": base64.b64encode(data).decode(), "attributes": dict(attributes),
               "messageId": message_id, "message_id": message_id, "publishTime": when, "publish_time": when}
    body = {"message": message, "subscription": f"projects/{project}/subscriptions/eventarc-{topic}"}
    return headers, json.dumps(body).encode()


def firestore_write_cloudevent(project: str, database: str, path: str, *, value: bytes | None,
                               old_value: bytes | None, when: str, event_id: str | None = None,
                               ) -> tuple[dict[str, str], bytes]:
    """Headers and body of the CloudEvent Eventarc sends for a Firestore document write (`{document=**}`).

    Binary content mode: attributes as ce-* headers (with the `document`, `database`, `project`
    and `namespace` extensions), the body a protobuf DocumentEventData of the google-events
    package built from the before/after Document bytes (google.firestore.v1 wire format).
    `when` is the event time in RFC 3339: the new update_time, or the commit time of a delete.
    """
    from google.events.cloud.firestore_v1.types import Document, DocumentEventData

    data = DocumentEventData()
    if value is not None:
        data.value = Document.deserialize(value)
    if old_value is not None:
        data.old_value = Document.deserialize(old_value)
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id or str(uuid.uuid4()),
        "ce-source": f"//firestore.googleapis.com/projects/{project}/databases/{database}",
        "ce-type": "google.cloud.firestore.document.v1.written",
        "ce-subject": f"documents/{path}",
        "ce-time": when,
        "ce-dataschema": "https://github.com/googleapis/google-cloudevents/blob/main/proto/google/events/cloud/"
                         "firestore/v1/data.proto",
        "ce-location": "nam5",
        "ce-project": project,
        "ce-database": database,
        "ce-namespace": "(default)",
        "ce-document": path,
        "Content-Type": "application/protobuf",
    }
    return headers, DocumentEventData.serialize(data)


def sample_firestore_write(sample: functions.FirestoreWrite) -> tuple[dict[str, str], bytes]:
    """The CloudEvent of a FirestoreWrite sample: a created document with string fields."""
    from google.events.cloud.firestore_v1.types import Document, Value

    now = datetime.now(timezone.utc)
    name = f"projects/{sample.project}/databases/{sample.database}/documents/{sample.document}"
    doc = Document(name=name, fields={k: Value(string_value=v) for k, v in sample.fields.items()},
                   create_time=now, update_time=now)
    return firestore_write_cloudevent(sample.project, sample.database, sample.document, value=Document.serialize(doc),
                                      old_value=None, when=now.isoformat().replace("+00:00", "Z"))


def start_built(out: Path, name: str, env: Mapping[str, str], *, timeout: float = 60,
                port: int | None = None) -> FunctionServer:
    """Start function `name` from its folder in a build's output, with the signature type of infra/functions.py."""
    fn = functions.by_name()[name]
    return start_function(out / name, fn.entry_point, fn.signature, env, timeout=timeout, port=port)


def start_function(folder: Path, target: str, signature: functions.Signature, env: Mapping[str, str],
                   *, timeout: float = 60, port: int | None = None) -> FunctionServer:
    """Serve functions-framework --target target --source folder/main.py, cwd folder, env on top of ours.

    port: None for a free one; chosen beforehand when the function must know its own URL (a worker
    enqueues its follow-up tasks to itself)."""
    workdir = tempfile.mkdtemp(prefix=f"firebackup-function-{target}-")
    name = f"function-{target}"

    def build(port: int, _workdir: str) -> tuple[list[str], dict[str, str] | None, str | None]:
        argv = isolated_python(folder, _LAUNCH, "--target", target, "--source", str(folder / "main.py"),
                               "--signature-type", signature, "--host", stack.HOST, "--port", str(port))
        return argv, dict(env), str(folder)

    # robots.txt is answered by functions-framework itself (404, or 405 for an event function):
    # readiness without running the function.
    service = stack._start(name, build, lambda p: stack._http_ok(f"http://{stack.HOST}:{p}/robots.txt"),
                           lambda p: {}, timeout=timeout, workdir=workdir, port=port)
    log = os.path.join(workdir, f"{name}.log")
    for line in Path(log).read_text(errors="replace").splitlines():
        if line.startswith(_REPORT):
            report = json.loads(line[len(_REPORT):])
            return FunctionServer(target, folder, service, str(report["firebackup"]),
                                  [str(p) for p in report["sys_path"]])
    tail = stack._tail(log)
    service.stop()
    raise stack.StackError(f"{name} started without reporting where it imported firebackup from; log: {tail}")


def run_isolated(folder: Path, program: str, *args: str, env: Mapping[str, str] | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `program` in the isolated interpreter of isolated_python, cwd folder; output captured."""
    return subprocess.run(isolated_python(folder, program, *args), cwd=folder, capture_output=True, text=True,
                          timeout=timeout, check=False, env={**os.environ, **(env or {})})
