"""Errors the services raise for the API to map onto HTTP statuses (all are firebackup.errors types).

UsageError (firebackup.errors)
├── Unauthenticated     no or bad credentials                   -> 401
├── PermissionDenied    authenticated, role too low             -> 403
├── NotFound            absent, or in an organization you are not in  -> 404
├── Conflict            the current state forbids it            -> 409
└── Invalid             well-formed but unacceptable input      -> 422
"""

from __future__ import annotations

from typing import Any

from firebackup.errors import UsageError


class ServiceError(UsageError):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: Any = None):
        super().__init__(message)
        self.details = details


class Unauthenticated(ServiceError):
    status, code = 401, "unauthenticated"


class PermissionDenied(ServiceError):
    status, code = 403, "permission_denied"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class Conflict(ServiceError):
    status, code = 409, "conflict"


class Invalid(ServiceError):
    status, code = 422, "invalid"
