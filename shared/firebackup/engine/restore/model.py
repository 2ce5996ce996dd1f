"""The restore's data: what to restore where, one chunk task, and the CLI's result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from firebackup.errors import UsageError
from firebackup.firestore.rewrite import MODES

ERROR_LIMIT = 100

RESULT_KEYS = (
    "backup_id",
    "documents_written",
    "documents_skipped",
    "documents_failed",
    "auth_users",
    "dry_run",
    "duration_s",
)


def check_target(project: str, mode: str) -> None:
    """A restore needs a target project and one of the modes: UsageError in one line otherwise."""
    if not project:
        raise UsageError("restore: no target project; pass --project")
    if mode not in MODES:
        raise UsageError(f"restore: unknown mode {mode!r}; use one of {', '.join(MODES)}")


@dataclass
class RestoreRequest:
    """What to restore where; the CLI's restore options."""

    backup_id: str
    project: str
    database: str = "(default)"
    collections: list[str] | None = None
    mode: str = "overwrite"
    include_auth: bool = False
    dry_run: bool = False
    keep_references: bool = False  # default: references into the source database follow the data
    allow_unencrypted: bool = False  # with a key: read a backup that turns out unencrypted (format.md: no downgrade)

    def __post_init__(self) -> None:
        check_target(self.project, self.mode)
        self.database = self.database or "(default)"
        if self.collections is not None:
            self.collections = [c.strip() for c in self.collections if c.strip()] or None


@dataclass
class RestoreResult:
    """The CLI's `restore --json` object (to_dict), plus the first errors for the human report."""

    backup_id: str
    documents_written: int = 0
    documents_skipped: int = 0
    documents_failed: int = 0
    auth_users: int = 0
    dry_run: bool = False
    duration_s: float = 0.0
    auth_users_failed: int = 0
    auth_users_skipped: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.documents_failed == 0 and self.auth_users_failed == 0

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in RESULT_KEYS}
        if self.auth_users_failed:
            d["auth_users_failed"] = self.auth_users_failed
        if self.auth_users_skipped:
            d["auth_users_skipped"] = self.auth_users_skipped
        return d


@dataclass
class RestoreTask:
    """One unit of restore work: one document chunk of one backup into one target database."""

    backup_id: str
    chunk_id: str
    project: str
    database: str = "(default)"
    source_database: str = ""  # projects/P/databases/D the backup was taken from
    mode: str = "overwrite"
    collections: list[str] | None = None
    dry_run: bool = False
    keep_references: bool = False


