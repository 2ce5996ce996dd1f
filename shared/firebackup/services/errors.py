"""Errors the services raise: what went wrong in the domain's terms, with no transport attached.

UsageError (firebackup.errors)
└── ServiceError
    ├── Unauthenticated     no or bad credentials
    ├── PermissionDenied    authenticated, role too low
    ├── NotFound            absent, or in an organization you are not in
    ├── Conflict            the current state forbids it
    └── Invalid             well-formed but unacceptable input

Each entry point decides what these mean to its caller; the HTTP API's table is in api/errors.py.
"""

from __future__ import annotations

from typing import Any

from firebackup.errors import UsageError


class ServiceError(UsageError):
    """Base of the services' errors; `details` is optional structured context for the caller."""

    def __init__(self, message: str, details: Any = None):
        super().__init__(message)
        self.details = details


class Unauthenticated(ServiceError):
    pass


class PermissionDenied(ServiceError):
    pass


class NotFound(ServiceError):
    pass


class Conflict(ServiceError):
    pass


class Invalid(ServiceError):
    pass
