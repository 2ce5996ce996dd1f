"""Each built function, started by functions-framework from its folder alone, answers a real request.

HTTP functions are called over HTTP; CloudEvent functions get a Pub/Sub message as Eventarc
delivers it. The interpreter sees the built folder, the standard library and site-packages,
never the repository (the editable install points there): the tests prove it.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import site
import sys
from pathlib import Path

import pytest

from infra import build_functions, functions
from infra.local.function_server import run_isolated, sample_firestore_write, start_built, start_function

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("functions")
    build_functions.build(out)
    return out


@pytest.fixture
def function_env(tmp_path: Path) -> dict[str, str]:
    """What the settings need to start: an embedded database, a master key, tasks kept, not run."""
    return {
        "FIREBACKUP_DATABASE_URL": f"sqlite:///{tmp_path / 'firebackup.db'}",
        "FIREBACKUP_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "FIREBACKUP_QUEUE": "recording",
        "FIREBACKUP_WORKER_SECRET": secrets.token_urlsafe(24),
    }


def _outside_the_folder_only_the_environment(sys_path: list[str], folder: Path) -> list[str]:
    """sys.path entries that are neither the folder, the standard library nor site-packages."""
    allowed = [sys.base_prefix, *site.getsitepackages()]
    return [p for p in sys_path[1:]
            if not any(p == a or p.startswith(a.rstrip(os.sep) + os.sep) for a in allowed)]


def _repository_sources() -> set[str]:
    """The repository, its shared/ and whatever the editable install puts on sys.path (real paths)."""
    paths = {functions.REPO_ROOT, functions.REPO_ROOT / "shared"}
    for d in site.getsitepackages():
        for pth in Path(d).glob("__editable__*.pth"):
            paths.update(Path(line.strip()) for line in pth.read_text().splitlines()
                         if line.strip() and not line.startswith(("import", "#")))
    return {os.path.realpath(p) for p in paths}


@pytest.mark.parametrize("name", functions.present())
def test_a_built_function_imports_only_its_folder_and_answers_its_sample_request(
        name: str, built: Path, function_env: dict[str, str]) -> None:
    fn = functions.by_name()[name]
    folder = built / name
    with start_built(built, name, function_env) as server:
        assert Path(server.firebackup_file).is_relative_to(folder)
        assert server.sys_path[0] == str(folder)
        assert not _outside_the_folder_only_the_environment(server.sys_path, folder)
        assert not {os.path.realpath(p) for p in server.sys_path} & _repository_sources()
        sample = fn.sample
        if isinstance(sample, functions.HttpCall):
            answer = server.request_json(sample.method, sample.path, sample.json)
            assert answer.status in sample.status, answer.body[:300]
            assert answer.content_type.startswith("application/json")
            body = answer.json()
            assert isinstance(body, dict) and sample.json_key in body
        elif isinstance(sample, functions.FirestoreWrite):
            answer = server.deliver_firestore_write(*sample_firestore_write(sample))
            assert 200 <= answer.status < 300, answer.body[:300]
        else:
            answer = server.deliver_pubsub(sample.topic, sample.data, sample.attributes)
            assert 200 <= answer.status < 300, answer.body[:300]


def test_the_isolated_interpreter_cannot_import_firebackup_from_a_folder_without_it(tmp_path: Path) -> None:
    result = run_isolated(tmp_path, "import firebackup")
    assert result.returncode == 1
    assert "ModuleNotFoundError: No module named 'firebackup'" in result.stderr


def test_the_isolated_interpreter_still_has_the_installed_dependencies(built: Path) -> None:
    name = functions.present()[0]
    result = run_isolated(built / name, "import firebackup, functions_framework, google.cloud.firestore; "
                                        "print(firebackup.__file__)")
    assert result.returncode == 0, result.stderr[-500:]
    assert Path(result.stdout.strip()).is_relative_to(built / name)


_RECORDING_FUNCTION = '''\
import base64, json, os

import functions_framework


@functions_framework.cloud_event
def tick(event):
    message = event.data["message"]
    record = {"type": event["type"], "source": event["source"], "id": event["id"],
              "data": base64.b64decode(message["data"]).decode(), "attributes": message["attributes"],
              "subscription": event.data["subscription"]}
    with open(os.environ["EVENT_RECORD"], "w") as f:
        json.dump(record, f)
'''


def test_a_cloudevent_function_receives_a_pubsub_message_as_eventarc_delivers_it(tmp_path: Path) -> None:
    folder = tmp_path / "tick"
    (folder / "firebackup").mkdir(parents=True)
    (folder / "firebackup" / "__init__.py").write_text("")
    (folder / "main.py").write_text(_RECORDING_FUNCTION)
    record = tmp_path / "event.json"
    with start_function(folder, "tick", "cloudevent", {"EVENT_RECORD": str(record)}) as server:
        plain = server.request_json("POST", "/", {"message": {"data": ""}})
        assert plain.status == 400 and not record.exists(), "a body without ce-* headers is no CloudEvent"
        answer = server.deliver_pubsub("ticks", b"every minute", {"origin": "scheduler"}, project="demo-p",
                                       message_id="4711")
        assert answer.status == 200, answer.body[:300]
    assert json.loads(record.read_text()) == {
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": "//pubsub.googleapis.com/projects/demo-p/topics/ticks",
        "id": "4711",
        "data": "every minute",
        "attributes": {"origin": "scheduler"},
        "subscription": "projects/demo-p/subscriptions/eventarc-ticks",
    }
