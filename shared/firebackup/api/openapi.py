"""The OpenAPI 3.1 document, generated from the route table and the same pydantic models that validate."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from firebackup.api import schemas as s
from firebackup.api.routes import Route

ERRORS = {400: "Malformed request", 401: "Not authenticated", 403: "Role too low", 404: "Not found",
          405: "Method not allowed", 409: "Conflicts with the current state", 413: "Request too large",
          415: "Body is not JSON", 422: "Invalid input"}
PATH_PARAM = {"type": "string", "minLength": 1, "maxLength": 40, "pattern": "^[A-Za-z0-9_-]+$"}


def _query_schema(prop: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a value; `null` has no spelling in a URL, so drop that branch."""
    prop = {k: v for k, v in prop.items() if k not in ("title", "default")}
    branches = [b for b in prop.pop("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1:
        prop.update(branches[0])
    elif branches:
        prop["anyOf"] = branches
    return prop


def build_openapi(routes: list[Route], prefix: str = "/v1") -> dict[str, Any]:
    inputs = {r.body for r in routes if r.body} | {r.query for r in routes if r.query}
    outputs = {r.response for r in routes if r.response} | {s.Error}
    pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (m, "validation") for m in sorted(inputs, key=lambda m: m.__name__)]
    pairs += [(m, "serialization") for m in sorted(outputs, key=lambda m: m.__name__)]
    refs, defs = models_json_schema(pairs, ref_template="#/components/schemas/{model}")
    schemas = defs.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {"operationId": r.operation_id, "summary": r.summary or r.operation_id.replace("_", " "),
                              "parameters": [], "responses": {}}
        for name in r.params:
            op["parameters"].append({"name": name, "in": "path", "required": True, "schema": dict(PATH_PARAM)})
        if r.query:
            q = r.query.model_json_schema(mode="validation", ref_template="#/components/schemas/{model}")
            for name, prop in q.get("properties", {}).items():
                prop = _query_schema(prop)
                op["parameters"].append({"name": name, "in": "query", "required": name in q.get("required", []),
                                         "schema": prop})
        if r.body:
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": refs[(r.body, "validation")]}}}
        if r.response:
            op["responses"][str(r.status)] = {
                "description": "OK",
                "content": {"application/json": {"schema": refs[(r.response, "serialization")]}}}
        else:
            op["responses"]["204"] = {"description": "Done"}
        err = {"application/json": {"schema": refs[(s.Error, "serialization")]}}
        for code, text in ERRORS.items():
            op["responses"][str(code)] = {"description": text, "content": err}
        path = prefix + r.path
        paths.setdefault(path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "FireBackup API", "version": "1.0.0",
                 "description": "Backups of Firestore to storage you own. Errors: {error: {code, message, details}}."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "Firebase ID token or API token (fbk_...)"}}},
        "security": [{"bearer": []}],
    }
