"""Projects, destinations, schedules and webhooks: the checks that depend on configuration and stored state."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from firebackup.db.models import Project, Schedule, StorageDestination
from firebackup.services import resources
from firebackup.services.commands import (AddDestination, AddWebhook, ConnectProject, CreateSchedule, Retention,
                                          StorageCredentials, UpdateSchedule)
from firebackup.services.context import Role
from firebackup.errors import BucketNotFound, StorageError, TransientStorageError
from firebackup.services.errors import Conflict, Invalid, NotFound
from tests.unit.services.conftest import LOCAL_ROOT, SA_KEY

KEYS = StorageCredentials(access_key_id="AKIA1", secret_access_key="s3cr3t")


def _admin(world, org):
    return world.ctx_as(org.users[Role.admin], org.id, Role.admin)


def test_connecting_the_same_database_twice_is_a_conflict_and_the_key_is_stored_sealed(world) -> None:
    org = world.org()
    key = {"type": "service_account", "client_email": "x@y.z", "private_key": "-----BEGIN-----"}
    cmd = ConnectProject(name="again", gcp_project_id="other-project", service_account_key=key)
    row = resources.connect_project(_admin(world, org), org.id, cmd)
    assert "BEGIN" not in (row.credentials_sealed or "")
    assert json.loads(resources.project_credentials(_admin(world, org), row)) == key
    with pytest.raises(Conflict):
        resources.connect_project(_admin(world, org), org.id, cmd)


def test_storage_credentials_are_sealed_and_handed_back_only_to_the_storage_opener(world) -> None:
    org = world.org()
    creds = StorageCredentials(access_key_id="AKIA1", secret_access_key="s3cr3t")
    row = resources.create_destination(_admin(world, org), org.id, AddDestination(
        name="s3", kind="s3", url="s3://bucket/prefix", region="eu-west-1", credentials=creds))
    assert "s3cr3t" not in (row.credentials_sealed or "") and row.options == {"region": "eu-west-1"}
    assert resources.destination_credentials(_admin(world, org), row) == {"access_key_id": "AKIA1",
                                                                          "secret_access_key": "s3cr3t"}


@pytest.mark.parametrize("cmd", [
    AddDestination(name="d", kind="s3", url="gs://bucket"),
    AddDestination(name="d", kind="gcs", url="gs://"),
    AddDestination(name="d", kind="s3", url="s3://user:pw@bucket"),
    AddDestination(name="d", kind="s3compat", url="s3://bucket"),
    AddDestination(name="d", kind="gcs", url="gs://bucket", credentials=StorageCredentials(access_key_id="a")),
    AddDestination(name="d", kind="s3", url="s3://bucket", credentials=StorageCredentials(access_key_id="a")),
    AddDestination(name="d", kind="local", url="file:///tmp/x", credentials=StorageCredentials(access_key_id="a")),
    AddDestination(name="d", kind="s3", url="s3://bucket/p"),
    AddDestination(name="d", kind="gcs", url="gs://bucket/p"),
    AddDestination(name="d", kind="s3", url="s3://bucket/p?endpoint=https://169.254.169.254", credentials=KEYS),
    AddDestination(name="d", kind="s3", url="s3://bucket/p?sig=secret", credentials=KEYS),
    AddDestination(name="d", kind="s3compat", url="s3://bucket/p", endpoint_url="https://169.254.169.254",
                   credentials=KEYS),
    AddDestination(name="d", kind="s3compat", url="s3://bucket/p", endpoint_url="http://1.1.1.1", credentials=KEYS),
    AddDestination(name="d", kind="gcs", url="gs://bucket/p", credentials=StorageCredentials(
        service_account_key={**SA_KEY, "token_uri": "https://attacker.example/token"})),
    AddDestination(name="d", kind="local", url="file:///etc/firebackup"),
    AddDestination(name="d", kind="local", url=f"file://{LOCAL_ROOT}/../etc"),
], ids=["scheme", "no-bucket", "userinfo", "no-endpoint", "gcs-access-keys", "half-s3-keys", "local-creds",
        "s3-no-credentials", "gcs-no-credentials", "endpoint-in-query", "secret-in-query", "metadata-endpoint",
        "http-endpoint", "foreign-token-uri", "local-outside-root", "local-dot-dot"])
def test_a_destination_that_does_not_fit_its_kind_is_invalid(world, cmd: AddDestination) -> None:
    org = world.org()
    before = world.session.query(StorageDestination).count()
    with pytest.raises(Invalid):
        resources.create_destination(_admin(world, org), org.id, cmd)
    assert world.session.query(StorageDestination).count() == before


def test_a_refused_destination_is_one_line_naming_what_to_do(world) -> None:
    org = world.org()
    with pytest.raises(Invalid) as e:
        resources.create_destination(_admin(world, org), org.id, AddDestination(name="d", kind="s3", url="s3://b/p"))
    assert str(e.value) == ("a s3 destination needs access_key_id and secret_access_key of its own; the platform's "
                            "identity is never used for tenant storage")


def test_a_project_key_with_a_foreign_token_endpoint_is_refused_and_nothing_is_stored(world) -> None:
    org = world.org()
    before = world.session.query(Project).count()
    for extra in ({"token_uri": "http://169.254.169.254/token"}, {"universe_domain": "attacker.example"}):
        with pytest.raises(Invalid, match="as Google issued it"):
            resources.connect_project(_admin(world, org), org.id, ConnectProject(
                name="p", gcp_project_id="tenant-p", service_account_key={**SA_KEY, **extra}))
    assert world.session.query(Project).count() == before


def test_local_folders_need_a_root_in_the_settings(world) -> None:
    org = world.org()
    world.ports = replace(world.ports, settings=replace(world.ports.settings, local_storage_root=None))
    with pytest.raises(Invalid, match="FIREBACKUP_LOCAL_STORAGE_ROOT"):
        resources.create_destination(_admin(world, org), org.id, AddDestination("d", "local", f"file://{LOCAL_ROOT}/y"))


def test_local_folders_are_refused_unless_the_settings_allow_them(world) -> None:
    org = world.org()
    world.ports = replace(world.ports, settings=replace(world.ports.settings, allow_local_storage=False))
    with pytest.raises(Invalid, match="FIREBACKUP_ALLOW_LOCAL_STORAGE"):
        resources.create_destination(_admin(world, org), org.id, AddDestination("d", "local", "file:///tmp/y"))


def test_plain_http_webhooks_are_refused_unless_the_settings_allow_them(world) -> None:
    org = world.org()
    with pytest.raises(Invalid):
        resources.create_webhook(_admin(world, org), org.id, AddWebhook("http://a.test/h", ("backup.failed",), "s" * 16))
    world.ports = replace(world.ports, settings=replace(world.ports.settings, allow_http_webhooks=True))
    hook = resources.create_webhook(_admin(world, org), org.id,
                                    AddWebhook("http://a.test/h", ("backup.failed", "backup.failed"), "s" * 16))
    assert hook.events == ["backup.failed"]
    assert resources.webhook_secret(_admin(world, org), hook) == b"s" * 16


def test_a_schedule_for_another_orgs_project_or_destination_is_not_found(world) -> None:
    mine, theirs = world.org("Mine"), world.org("Theirs")
    for project, dest in ((theirs.project_id, mine.destination_id), (mine.project_id, theirs.destination_id)):
        with pytest.raises(NotFound):
            resources.create_schedule(_admin(world, mine), mine.id, CreateSchedule("s", project, dest, "0 3 * * *"))


def test_a_schedule_with_a_bad_cron_or_time_zone_is_invalid(world) -> None:
    org = world.org()
    for cron, tz in (("61 * * * *", "UTC"), ("0 3 * * *", "Mars/Olympus")):
        with pytest.raises(Invalid):
            resources.create_schedule(_admin(world, org), org.id,
                                      CreateSchedule("s", org.project_id, org.destination_id, cron, tz))


def test_a_schedule_update_changes_only_what_was_sent_and_a_null_retention_clears_it(world) -> None:
    org = world.org()
    admin = _admin(world, org)
    made = resources.create_schedule(admin, org.id, CreateSchedule(
        "nightly", org.project_id, org.destination_id, "0 3 * * *", "Europe/Paris", Retention(keep_last=7),
        collections=("users",)))
    out = resources.update_schedule(admin, org.id, made["id"], UpdateSchedule(enabled=False, name=None))
    assert (out["name"], out["cron"], out["timezone"], out["enabled"]) == ("nightly", "0 3 * * *", "Europe/Paris", False)
    assert out["retention"] == {"keep_last": 7} and out["next_run_at"] is None
    out = resources.update_schedule(admin, org.id, made["id"], UpdateSchedule(retention=None, cron="@hourly"))
    assert out["retention"] == {} and out["cron"] == "@hourly"
    assert world.session.get(Schedule, made["id"]).collections == ["users"]
    with pytest.raises(Invalid):
        resources.update_schedule(admin, org.id, made["id"], UpdateSchedule(timezone="Nowhere/Else"))


def test_another_orgs_project_cannot_be_read_tested_or_deleted(world) -> None:
    mine, theirs = world.org("Mine"), world.org("Theirs")
    admin = _admin(world, mine)
    for call in (resources.get_project, resources.test_project, resources.delete_project):
        with pytest.raises(NotFound):
            call(admin, mine.id, theirs.project_id)
    assert world.session.get(Project, theirs.project_id) is not None


def test_testing_a_destination_writes_and_removes_a_probe_object(world, stores) -> None:
    org = world.org()
    out = resources.test_destination(_admin(world, org), org.id, org.destination_id)
    assert out == {"ok": True, "message": "wrote and deleted a probe object"}
    storage = stores.by_url[world.session.get(StorageDestination, org.destination_id).url]
    assert [k.split("/")[0] for k in storage.written] == [".firebackup-probe"]
    assert list(storage.list("")) == []


def test_a_destination_that_refuses_access_reports_it_in_one_line_instead_of_raising(world, stores) -> None:
    org = world.org()
    stores.refused.add(world.session.get(StorageDestination, org.destination_id).url)
    out = resources.test_destination(_admin(world, org), org.id, org.destination_id)
    assert out == {"ok": False, "message": "could not write a probe object: access denied"}
    assert stores.bounded == [True]  # one try, short timeouts: an HTTP request is waiting


@pytest.mark.parametrize("error, said", [
    (StorageError("<html><title>Jenkins</title>admin console on 10.0.0.7</html>"), "the storage service refused"),
    (TransientStorageError("Read timed out: 10.0.0.7:8080 (gave up after 1 attempts)"), "no answer in time"),
    (BucketNotFound("NoSuchBucket: <Error><BucketName>internal-backups</BucketName></Error>"), "does not exist"),
])
def test_a_failed_probe_says_what_failed_in_our_words_never_the_remote_servers(world, stores, error, said) -> None:
    org = world.org()
    stores.failing[world.session.get(StorageDestination, org.destination_id).url] = error
    out = resources.test_destination(_admin(world, org), org.id, org.destination_id)
    assert out["ok"] is False and out["message"].startswith("could not write a probe object: ") and said in out["message"]
    assert "10.0.0.7" not in out["message"] and "<" not in out["message"] and "internal" not in out["message"]
