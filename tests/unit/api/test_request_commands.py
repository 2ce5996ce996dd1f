"""Request models turn into the plain commands the services take; what the services store stays the same."""

from __future__ import annotations

import inspect
import json
import typing

import pytest

from firebackup.api import schemas as s
from firebackup.api.routes import ROUTES
from firebackup.services import commands as c
from firebackup.services.context import Role

KEY = {"type": "service_account", "client_email": "b@p.iam.gserviceaccount.com", "private_key": "-----BEGIN",
       "project_id": None, "universe_domain": "googleapis.com"}


def test_every_body_and_query_of_a_route_builds_the_command_its_handler_is_typed_to_take() -> None:
    checked = 0
    for r in ROUTES:
        params = list(inspect.signature(r.handler).parameters.values())
        models = [m for m in (r.body, r.query) if m is not None]
        hints = typing.get_type_hints(r.handler)
        for model, param in zip(models, params[len(params) - len(models):]):
            built = typing.get_type_hints(model.to_command)["return"]
            assert hints[param.name] is built, (r.operation_id, model.__name__)
            checked += 1
    assert checked == sum((r.body is not None) + (r.query is not None) for r in ROUTES) > 20


def test_a_schedule_patch_marks_unsent_fields_unset_and_keeps_an_explicit_null() -> None:
    cmd = s.SchedulePatch.model_validate({"enabled": False, "retention": None}).to_command()
    assert cmd == c.UpdateSchedule(enabled=False, retention=None)
    assert (cmd.name, cmd.cron, cmd.timezone) == (c.UNSET, c.UNSET, c.UNSET)
    assert cmd.given() == ["enabled", "retention"]
    cmd = s.SchedulePatch.model_validate({"retention": {"keep_within": "30d", "keep_daily": 7}}).to_command()
    assert cmd.retention == c.Retention(keep_daily=7, keep_within="30d") and cmd.given() == ["retention"]


def test_a_project_key_keeps_its_extra_fields_and_drops_nulls_as_it_always_has() -> None:
    body = s.ProjectIn.model_validate({"name": "p", "gcp_project_id": "my-project", "service_account_key": KEY})
    cmd = body.to_command()
    before = json.dumps(body.service_account_key.model_dump(exclude_none=True), sort_keys=True)
    assert json.dumps(dict(cmd.service_account_key), sort_keys=True) == before
    assert "universe_domain" in cmd.service_account_key and "project_id" not in cmd.service_account_key


@pytest.mark.parametrize("creds", [
    {"access_key_id": "AKIA", "secret_access_key": "s3cr3t"},
    {"service_account_key": KEY},
])
def test_storage_credentials_seal_the_same_json_as_before(creds) -> None:
    body = s.DestinationIn.model_validate({"name": "d", "kind": "s3", "url": "s3://b", "credentials": creds})
    cmd = body.to_command()
    assert cmd.credentials is not None and body.credentials is not None
    before = json.dumps(body.credentials.model_dump(exclude_none=True), sort_keys=True)
    assert json.dumps(cmd.credentials.as_dict(), sort_keys=True) == before


def test_roles_arrive_as_roles_and_lists_as_tuples() -> None:
    assert s.MemberIn.model_validate({"email": "a@b.c", "role": "admin"}).to_command() == c.InviteMember("a@b.c",
                                                                                                        Role.admin)
    backup = s.BackupIn.model_validate({"project_id": "p", "destination_id": "d", "collections": ["a", "b"]})
    assert backup.to_command() == c.StartBackup("p", "d", collections=("a", "b"))
    assert s.PageQuery.model_validate({"limit": "7"}).to_command() == c.PageRequest(limit=7)


def test_secrets_in_commands_stay_out_of_their_repr() -> None:
    cmd = c.AddWebhook("https://a.test", ("backup.failed",), secret="whsec-very-secret")
    creds = c.StorageCredentials(access_key_id="AKIA", secret_access_key="s3cr3t", service_account_key=KEY)
    oauth = c.CompleteOAuth(state="st4te", code="c0de", name="p", gcp_project_id="my-project")
    text = repr(cmd) + repr(creds) + repr(oauth) + repr(c.ConnectProject("p", "my-project", KEY))
    for secret in ("whsec-very-secret", "s3cr3t", "BEGIN", "st4te", "c0de"):
        assert secret not in text


@pytest.mark.parametrize("model, body", [
    (s.Retention, {"keep_daily": True}),
    (s.PitrIn, {"destination_id": "dst_1", "retention_days": True}),
    (s.TokenIn, {"name": "ci", "role": "member", "expires_in_days": True}),
])
def test_a_count_given_as_true_is_refused_rather_than_read_as_one(model, body) -> None:
    with pytest.raises(ValueError, match="valid integer"):
        model.model_validate_json(json.dumps(body))
    number = {k: (3 if v is True else v) for k, v in body.items()}
    assert model.model_validate_json(json.dumps(number)) is not None  # the same body with a number passes
