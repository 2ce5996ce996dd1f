"""The API's one table from service errors to HTTP status and code, and the OpenAPI document that lists them."""

from __future__ import annotations

import inspect
import json

import pytest

from firebackup.api.errors import HTTP_STATUS, http_status, service_error_response
from firebackup.api.openapi import ERRORS, build_openapi
from firebackup.api.routes import ROUTES
from firebackup.services import errors


@pytest.mark.parametrize("cls,status,code", [
    (errors.Unauthenticated, 401, "unauthenticated"),
    (errors.PermissionDenied, 403, "permission_denied"),
    (errors.NotFound, 404, "not_found"),
    (errors.Conflict, 409, "conflict"),
    (errors.Invalid, 422, "invalid"),
    (errors.ServiceError, 400, "bad_request"),
])
def test_each_service_error_answers_with_its_status_code_and_the_same_body_as_before(cls, status, code) -> None:
    resp = service_error_response(cls("backup is running; cancel it first", details=[{"loc": ["x"]}]))
    assert resp.status_code == status and resp.mimetype == "application/json"
    # Byte for byte what clients have always received: key order and spacing included.
    assert resp.get_data() == json.dumps({"error": {"code": code, "message": "backup is running; cancel it first",
                                                    "details": [{"loc": ["x"]}]}}).encode()


def test_a_subclass_without_its_own_entry_answers_like_its_parent() -> None:
    class Gone(errors.NotFound):
        pass

    assert http_status(Gone("backup not found")) == (404, "not_found")


def test_every_error_class_of_the_services_has_an_entry_in_the_table() -> None:
    classes = {c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.ServiceError)}
    assert classes == set(HTTP_STATUS)


def test_every_status_a_service_error_can_cause_is_documented_on_every_operation() -> None:
    doc = build_openapi(ROUTES)
    statuses = {str(status) for status, _ in HTTP_STATUS.values()}
    assert statuses <= {str(s) for s in ERRORS}
    for path in doc["paths"].values():
        for op in path.values():
            assert statuses <= set(op["responses"]), op["operationId"]
