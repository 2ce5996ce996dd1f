from __future__ import annotations

import re

from firebackup.api.openapi import build_openapi
from firebackup.api.routes import ROUTES
from firebackup.services.context import Role


def test_every_route_under_an_organization_names_a_minimum_role() -> None:
    for r in ROUTES:
        assert (r.role is not None) == r.path.startswith("/orgs/{org_id}"), (r.method, r.path)


def test_only_owners_delete_the_organization_and_viewers_can_change_nothing() -> None:
    by_op = {r.operation_id: r for r in ROUTES}
    assert by_op["delete_org"].role is Role.owner
    for r in ROUTES:
        if r.role is Role.viewer:
            assert r.method == "GET" or r.operation_id == "leave", r.operation_id


def test_routes_are_unique_and_operation_ids_too() -> None:
    assert len({(r.method, r.path) for r in ROUTES}) == len(ROUTES)
    assert len({r.operation_id for r in ROUTES}) == len(ROUTES)


def test_the_openapi_document_describes_every_route_with_its_success_and_error_responses() -> None:
    doc = build_openapi(ROUTES)
    assert doc["openapi"] == "3.1.0"
    for r in ROUTES:
        op = doc["paths"]["/v1" + r.path][r.method.lower()]
        ok = str(r.status) if r.response else "204"
        assert ok in op["responses"]
        for code in ("401", "403", "404", "413", "415", "422"):
            assert op["responses"][code]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
        assert {p["name"] for p in op["parameters"] if p["in"] == "path"} == set(re.findall(r"\{(\w+)\}", r.path))
        if r.body:
            ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
            assert schema.get("additionalProperties") is False  # unknown fields are refused, and documented so


def test_no_response_schema_exposes_a_secret_field() -> None:
    doc = build_openapi(ROUTES)
    outputs = {name: s for name, s in doc["components"]["schemas"].items() if name.endswith(("Out", "Page"))}
    for name, schema in outputs.items():
        for field in schema.get("properties", {}):
            if name == "TokenCreatedOut" and field == "token":
                continue  # shown once, on creation
            assert not re.search(r"secret(?!_fingerprint)|private|password|sealed|credentials$|refresh|(?<!manifest_)key$", field), (name, field)
