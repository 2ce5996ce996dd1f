"""One rule for every name a client sends: no control characters, nothing invisible that makes it read as another."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from firebackup.api import schemas as s

# Every request model with a name, with what else it needs to be valid.
NAMED: list[tuple[type[BaseModel], dict[str, object]]] = [
    (s.OrgIn, {}), (s.OrgPatch, {}), (s.TokenIn, {"role": "viewer"}),
    (s.ProjectIn, {"gcp_project_id": "acme-prod", "service_account_key": {
        "type": "service_account", "private_key": "k", "client_email": "b@acme-prod.iam.gserviceaccount.com"}}),
    (s.OAuthCompleteIn, {"state": "st", "code": "c", "gcp_project_id": "acme-prod"}),
    (s.DestinationIn, {"kind": "s3", "url": "s3://bucket/p"}),
    (s.ScheduleIn, {"project_id": "prj_1", "destination_id": "dst_1", "cron": "0 3 * * *"}),
    (s.SchedulePatch, {}),
]

SPOOFS = {
    "right-to-left override": "invoice\u202efdp.exe", "left-to-right embedding": "a\u202ab",
    "first strong isolate": "\u2068Acme\u2069", "right-to-left isolate": "Acme\u2067",
    "zero-width space": "Ac\u200bme", "zero-width joiner": "Acme\u200d", "zero-width non-joiner": "Ac\u200cme",
    "word joiner": "Ac\u2060me", "byte order mark": "\ufeffAcme", "right-to-left mark": "Acme\u200f",
    "newline": "Acme\nInc", "tab": "Acme\tInc", "escape": "Acme\x1b[31m", "C1 control": "Acme\x85",
    "line separator": "Acme\u2028Inc", "only spaces": "   ", "only no-break spaces": "\u00a0\u00a0",
}


def test_every_request_model_with_a_name_uses_the_one_rule() -> None:
    named = {m for m in vars(s).values() if isinstance(m, type) and issubclass(m, s.ApiRequest)
             and "name" in m.model_fields}
    assert named == {m for m, _ in NAMED}
    for model in named:
        assert _patterns(model.model_json_schema()["properties"]["name"]) == [s.NAME_PATTERN], model.__name__


def _patterns(schema: object) -> list[str]:
    """Every "pattern" in a JSON schema fragment (a nullable field nests it in anyOf)."""
    if isinstance(schema, dict):
        own = [schema["pattern"]] if "pattern" in schema else []
        return own + [p for v in schema.values() for p in _patterns(v)]
    if isinstance(schema, list):
        return [p for v in schema for p in _patterns(v)]
    return []


@pytest.mark.parametrize("name", SPOOFS.values(), ids=SPOOFS.keys())
@pytest.mark.parametrize("model, rest", NAMED, ids=[m.__name__ for m, _ in NAMED])
def test_a_name_with_invisible_or_control_characters_is_refused(model: type[BaseModel], rest: dict[str, object],
                                                                  name: str) -> None:
    with pytest.raises(ValidationError) as e:
        model.model_validate({**rest, "name": name})
    assert [err["loc"] for err in e.value.errors()] == [("name",)]


@pytest.mark.parametrize("name", ["Acme", " Acme Inc. ", "Ünïcode 名前", "שלום", "مرحبا", "😀 team", "a" * 200])
def test_ordinary_names_in_any_script_are_accepted(name: str) -> None:
    for model, rest in NAMED:
        assert model.model_validate({**rest, "name": name}).name == name  # type: ignore[attr-defined]
