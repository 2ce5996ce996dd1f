"""Every gRPC status becomes one firebackup error, classified once: transient or permanent, one line."""

from __future__ import annotations

import grpc
import pytest

from firebackup.errors import (
    NotSupportedByServer,
    PermanentSourceError,
    SnapshotTooOld,
    SourceAccessDenied,
    SourceNotFound,
    SourceUnavailable,
    TransientSourceError,
    is_transient,
)
from firebackup.firestore.grpc import translate_error


class RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


S = grpc.StatusCode


@pytest.mark.parametrize("code,details,kind,transient,exit_code", [
    (S.UNAVAILABLE, "failed to connect", SourceUnavailable, True, 1),
    (S.DEADLINE_EXCEEDED, "Deadline Exceeded", TransientSourceError, True, 1),
    (S.RESOURCE_EXHAUSTED, "Quota exceeded.", TransientSourceError, True, 1),
    (S.ABORTED, "Too much contention on these documents.", TransientSourceError, True, 1),
    (S.INTERNAL, "internal error", TransientSourceError, True, 1),
    (S.UNKNOWN, "Stream removed", TransientSourceError, True, 1),
    (S.PERMISSION_DENIED, "Missing or insufficient permissions.", SourceAccessDenied, False, 2),
    (S.UNAUTHENTICATED, "Request had invalid authentication credentials.", SourceAccessDenied, False, 2),
    (S.NOT_FOUND, "The database (x) does not exist for project p", SourceNotFound, False, 2),
    (S.FAILED_PRECONDITION, "The requested snapshot version is too old.", SnapshotTooOld, False, 1),
    (S.INVALID_ARGUMENT, "The requested 'read_time' is too old.", SnapshotTooOld, False, 1),
    (S.INVALID_ARGUMENT, "Cursor has too many values.", PermanentSourceError, False, 1),
    (S.FAILED_PRECONDITION, "The query requires an index.", PermanentSourceError, False, 1),
    (S.UNIMPLEMENTED, "unimplemented", NotSupportedByServer, False, 1),
    (S.CANCELLED, "Cancelled", PermanentSourceError, False, 1),
])
def test_a_grpc_status_becomes_one_classified_one_line_error(code, details, kind, transient, exit_code):
    err = translate_error(RpcError(code, details + "\n  more"), host="h:1", what="RunQuery",
                          database="projects/p/databases/d")
    assert type(err) is kind
    assert err.grpc_code == code.name
    assert is_transient(err) is transient
    assert err.exit_code == exit_code
    assert "\n" not in str(err) and "h:1" in str(err)


def test_an_unavailable_source_is_transient_not_a_usage_error():
    err = translate_error(RpcError(S.UNAVAILABLE, "connection refused"), host="h:1", what="RunQuery")
    assert err.exit_code == 1 and "retry later" in str(err)
