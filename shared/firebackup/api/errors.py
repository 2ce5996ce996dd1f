"""What an error means over HTTP: the one table from the services' errors to a status and a code, and the body.

Every error response is `{"error": {"code", "message", "details"}}` with a stable `code` clients can
switch on; the services' errors carry only the message and details.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from flask import Response

from firebackup.services.errors import Conflict, Invalid, NotFound, PermissionDenied, ServiceError, Unauthenticated

# The most specific class wins, so a new subclass inherits its parent's status until it is given its own.
HTTP_STATUS: dict[type[ServiceError], tuple[int, str]] = {
    ServiceError: (400, "bad_request"),
    Unauthenticated: (401, "unauthenticated"),
    PermissionDenied: (403, "permission_denied"),
    NotFound: (404, "not_found"),
    Conflict: (409, "conflict"),
    Invalid: (422, "invalid"),
}


def http_status(e: ServiceError) -> tuple[int, str]:
    """(HTTP status, error code) for a service error."""
    return next(HTTP_STATUS[cls] for cls in type(e).__mro__ if cls in HTTP_STATUS)


def error_response(status: int, code: str, message: str, details: Any = None,
                   headers: Iterable[tuple[str, str]] | None = None) -> Response:
    """The JSON error body with `status`; extra headers (e.g. Allow on a 405) are copied, body headers are not."""
    body = json.dumps({"error": {"code": code, "message": message, "details": details}})
    resp = Response(body, status=status, mimetype="application/json")
    for k, v in headers or []:
        if k.lower() not in ("content-type", "content-length"):
            resp.headers[k] = v
    return resp


def service_error_response(e: ServiceError) -> Response:
    status, code = http_status(e)
    return error_response(status, code, str(e), e.details)
