"""`firebackup ...`: the command line (contract: shared/design/cli.md).

stdout carries the result (exactly one JSON object with --json); messages and progress bars
go to stderr. Exit status: 0 success, 1 the operation ran and failed, 2 bad usage or input.
Settings (location URL, key file) are read here, once, and passed down.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any, Sequence

from firebackup import __version__
from firebackup.errors import BadKey, FireBackupError, UsageError

if TYPE_CHECKING:  # imported where used: the CLI's other commands start without the engine's imports
    from firebackup.engine.repository import Repository
    from firebackup.progress import NoProgress, TerminalProgress

PROG = "firebackup"


# -- output ------------------------------------------------------------------------------


def _one_line(text: Any) -> str:
    return " ".join(str(text).split()) or "error"


def say(msg: str = "") -> None:
    """Human text: always stderr, so stdout stays the result."""
    print(msg, file=sys.stderr, flush=True)


def emit_json(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=False, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(o: Any) -> Any:
    if isinstance(o, (dt.datetime, dt.date)):
        return o.isoformat()
    if isinstance(o, (bytes, bytearray)):
        return o.hex()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if hasattr(o, "to_dict"):
        return o.to_dict()
    return str(o)


def _human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover


def _contract_order(out: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The contract's keys first, in order (None where missing), then whatever else the engine gave."""
    ordered = {k: out.get(k) for k in keys}
    ordered.update({k: v for k, v in out.items() if k not in ordered})
    return ordered


# -- argument parsing --------------------------------------------------------------------


class _ArgumentError(UsageError):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that fails with one line (and exit 2 via UsageError) instead of usage + text."""

    def error(self, message: str):  # noqa: D401 - argparse API
        message = message.replace(f"argument {PUBLIC_COMMANDS}: ", "")
        message = message.replace(f"{PUBLIC_COMMANDS}", "a command")
        message = message.replace(", 'cat', 'demo-storage'", "")
        raise _ArgumentError(f"{self.prog}: {message} (see '{self.prog} --help')")


def _csv_list(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"expected names separated by commas, got {value!r}")
    return items


def _non_negative_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {n}")
    return n


def _positive_int(value: str) -> int:
    n = _non_negative_int(value)
    if n == 0:
        raise argparse.ArgumentTypeError("expected a number > 0, got 0")
    return n


from firebackup.compression import CODECS  # noqa: E402 - after the helpers it needs none of

COMPRESSIONS = tuple(CODECS)
PUBLIC_COMMANDS = "{keygen,backup,restore,history,diff,verify,list,show}"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Consistent, lossless, encrypted backups of Firestore and Firebase Auth "
                    "into storage you own.",
    )
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar=PUBLIC_COMMANDS, parser_class=_Parser)
    sub.required = True

    def json_flag(sp):
        sp.add_argument("--json", action="store_true",
                        help="print exactly one JSON object on stdout (messages go to stderr)")

    def key_flag(sp, what: str):
        keys = sp.add_mutually_exclusive_group()
        keys.add_argument("--key-file", metavar="FILE", help=what)
        keys.add_argument("--kms-key", metavar="NAME",
                          help="instead of --key-file: a Cloud KMS key, projects/P/locations/L/keyRings/R/cryptoKeys/K "
                               "(Application Default Credentials need roles/cloudkms.cryptoKeyEncrypterDecrypter)")

    def unencrypted_flag(sp):
        sp.add_argument("--allow-unencrypted", action="store_true",
                        help="with --key-file, also read a backup that turns out NOT to be encrypted (refused by "
                             "default: an unencrypted backup could have been swapped in under the same id)")

    sp = sub.add_parser("keygen", help="write a new 256-bit key (base64, one line)",
                        description="Write a new 256-bit key (base64, one line) to FILE "
                                    "(mode 0600, never overwriting) or to stdout.")
    sp.add_argument("--out", metavar="FILE", help="write the key here (refuses to overwrite)")
    sp.set_defaults(func=cmd_keygen)

    sp = sub.add_parser("backup", help="back up a Firestore database (and Auth users)")
    sp.add_argument("--project", required=True, metavar="ID", help="Google Cloud project id")
    sp.add_argument("--database", default="(default)", metavar="NAME",
                    help="Firestore database (default: %(default)s)")
    sp.add_argument("--to", required=True, metavar="URL", help="backup location (file://, s3://, gs://, spaces://)")
    sp.add_argument("--collections", type=_csv_list, metavar="a,b,...",
                    help="root collections to back up, each with all its subcollections (default: all)")
    sp.add_argument("--include-auth", action="store_true", help="also back up Firebase Auth users")
    sp.add_argument("--compression", choices=COMPRESSIONS, help="codec (default: the format's default)")
    sp.add_argument("--level", type=_non_negative_int, metavar="N", help="compression level")
    key_flag(sp, "encrypt with this key (from 'firebackup keygen'); without it the backup is NOT encrypted")
    json_flag(sp)
    sp.set_defaults(func=cmd_backup)

    sp = sub.add_parser("restore", help="restore a backup, or the state at an instant (--at), into a Firestore database")
    sp.add_argument("backup_id", metavar="BACKUP_ID", nargs="?",
                    help="the backup to restore; with --at, leave it out: the base backup is chosen for you")
    sp.add_argument("--at", metavar="INSTANT",
                    help="point in time (RFC 3339, e.g. 2026-11-29T10:15:00Z): the newest backup read at or "
                         "before it plus the captured changes up to it, read from the location's pitr/ segments")
    sp.add_argument("--source-project", metavar="ID",
                    help="with --at: the project whose backups and changes to use (default: --project)")
    sp.add_argument("--source-database", metavar="NAME",
                    help="with --at: the database whose backups and changes to use (default: --database)")
    sp.add_argument("--scope", metavar="PATH",
                    help="with --at: a collection path (with its subcollections) or a document path "
                         "(default: the whole database)")
    sp.add_argument("--from", dest="location", required=True, metavar="URL", help="backup location")
    sp.add_argument("--project", required=True, metavar="ID", help="target project id")
    sp.add_argument("--database", default="(default)", metavar="NAME",
                    help="target database (default: %(default)s)")
    sp.add_argument("--collections", type=_csv_list, metavar="a,b,...",
                    help="root collections to restore, each with all its subcollections (default: all)")
    sp.add_argument("--mode", choices=("overwrite", "skip", "merge"), default="overwrite",
                    help="what to do with documents and Auth users that exist: replace them, leave them, or "
                         "(documents only) replace just the backed-up fields; an Auth user is one record, "
                         "so merge replaces it (default: %(default)s)")
    sp.add_argument("--include-auth", action="store_true", help="also import the backed-up Auth users")
    sp.add_argument("--dry-run", action="store_true", help="report what would be written; write nothing")
    sp.add_argument("--keep-references", action="store_true",
                    help="leave references that point into the source database as they are "
                         "(default: remap them to the target)")
    key_flag(sp, "the key the backup was made with")
    unencrypted_flag(sp)
    json_flag(sp)
    sp.set_defaults(func=cmd_restore)

    for name, what in (("history", "list one document's versions in the backups and captured changes"),
                       ("diff", "compare one document's fields at two instants")):
        sp = sub.add_parser(name, help=what)
        sp.add_argument("path", metavar="PATH", help="document path, e.g. users/u1/orders/o7")
        sp.add_argument("--from", dest="location", required=True, metavar="URL", help="backup location")
        sp.add_argument("--project", required=True, metavar="ID", help="the project the document lives in")
        sp.add_argument("--database", default="(default)", metavar="NAME",
                        help="its database (default: %(default)s)")
        if name == "diff":
            sp.add_argument("--at", action="append", default=[], required=True, metavar="INSTANT",
                            help="an instant (RFC 3339); pass it twice")
        key_flag(sp, "the key the backups and segments were made with")
        json_flag(sp)
        sp.set_defaults(func=cmd_history if name == "history" else cmd_diff)

    sp = sub.add_parser("verify", help="read every chunk of a backup and check it")
    sp.add_argument("backup_id", metavar="BACKUP_ID")
    sp.add_argument("--from", dest="location", required=True, metavar="URL", help="backup location")
    key_flag(sp, "the key the backup was made with")
    unencrypted_flag(sp)
    json_flag(sp)
    sp.set_defaults(func=cmd_verify)

    sp = sub.add_parser("list", help="list the complete backups at a location (no key needed)")
    sp.add_argument("--from", dest="location", required=True, metavar="URL", help="backup location")
    json_flag(sp)
    sp.set_defaults(func=cmd_list)

    sp = sub.add_parser("show", help="show one backup's manifest")
    sp.add_argument("backup_id", metavar="BACKUP_ID")
    sp.add_argument("--from", dest="location", required=True, metavar="URL", help="backup location")
    key_flag(sp, "the key the backup was made with (without it only the public summary is shown)")
    unencrypted_flag(sp)
    json_flag(sp)
    sp.set_defaults(func=cmd_show)

    # Not in the contract: read a backup's documents back as JSON lines (demos, spot checks).
    sp = sub.add_parser("cat", description="Print a backup's documents on stdout, one JSON object per "
                                           "line ({name, fields} in Firestore's REST JSON form).")
    sp.add_argument("backup_id", metavar="BACKUP_ID")
    sp.add_argument("--from", dest="location", required=True, metavar="URL", help="backup location")
    sp.add_argument("--limit", type=_non_negative_int, metavar="N", help="stop after N documents")
    key_flag(sp, "the key the backup was made with")
    unencrypted_flag(sp)
    sp.set_defaults(func=cmd_cat)

    # Not in the contract: backs up generated documents without Firestore (demos, tests, benchmarks).
    sp = sub.add_parser("demo-storage", description="Back up N generated Firestore documents "
                                                    "into a location, without Firestore.")
    sp.add_argument("--to", required=True, metavar="URL", help="backup location")
    sp.add_argument("--docs", type=_non_negative_int, default=10_000, metavar="N",
                    help="documents to generate (default: %(default)s)")
    sp.add_argument("--chunk-docs", type=_positive_int, default=5_000, metavar="N",
                    help="documents per chunk (default: %(default)s)")
    sp.add_argument("--collections", type=_csv_list, default=["users", "orders"], metavar="a,b,...",
                    help="root collection names to spread documents over (default: users,orders)")
    sp.add_argument("--project", default="demo-firebackup", metavar="ID")
    sp.add_argument("--database", default="(default)", metavar="NAME")
    sp.add_argument("--compression", choices=COMPRESSIONS)
    sp.add_argument("--level", type=_non_negative_int, metavar="N")
    sp.add_argument("--seed", type=int, default=0, help="generator seed (same seed, same documents)")
    key_flag(sp, "encrypt with this key; without it the backup is NOT encrypted")
    json_flag(sp)
    sp.set_defaults(func=cmd_demo_storage)
    return p


# -- edge: settings read once ------------------------------------------------------------


def open_repository(url: str):
    return _adapters().repository(url)


_CLI: list[Any] = []


def _adapters():
    """The composition root's CLI adapters, built once from the settings main() read."""
    if not _CLI:
        from firebackup import bootstrap
        from firebackup.settings import Settings

        _CLI.append(bootstrap.cli(Settings.from_env()))
    return _CLI[0]


def load_kek(args: argparse.Namespace) -> Any:
    """The key-encryption key from --kms-key or --key-file, or None (unencrypted)."""
    if getattr(args, "kms_key", None):
        return _adapters().kms_key(args.kms_key)
    return load_key(args.key_file)


def load_key(path: str | None):
    """The key-encryption key from --key-file, or None (unencrypted)."""
    if path is None:
        return None
    from firebackup.crypto.keys import LocalKey

    from firebackup.crypto.keys import key_file_is_private

    if not os.path.exists(path):
        raise BadKey(f"key file not found: {path}; pass the right --key-file, "
                     f"or create one with 'firebackup keygen --out {path}'")
    key = LocalKey.from_file(path)
    try:
        if not key_file_is_private(path):
            say(f"warning: key file {path} can be read by other users; run 'chmod 600 {path}'")
    except OSError:
        pass
    return key


def _progress(label: str) -> TerminalProgress | NoProgress:
    from firebackup.progress import progress_for

    return progress_for(label)


def _close_repo(repo: Repository) -> None:
    try:
        repo.storage.close()
    except Exception:  # closing is best effort; the result is already decided
        pass


# -- commands ----------------------------------------------------------------------------


def cmd_keygen(args) -> int:
    from firebackup.crypto.keys import LocalKey, write_key_file

    text = LocalKey.generate_text()
    if not text.endswith("\n"):
        text += "\n"
    if args.out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    # Never overwrites (losing a key loses every backup made with it); mode 0600.
    write_key_file(args.out, text)
    key_id = _key_id(args.out)
    say(f"wrote a new key to {args.out} (mode 0600{', key id ' + key_id if key_id else ''}); "
        f"keep a copy somewhere safe: backups made with it cannot be read without it")
    return 0


def _key_id(path: str) -> str | None:
    try:
        return load_key(path).key_id
    except Exception:
        return None


def _unencrypted_note(encrypted: bool, *, made_now: bool = True) -> None:
    if not encrypted:
        why = " (no --key-file or --kms-key)" if made_now else ""
        say(f"note: this backup is NOT encrypted{why}; anyone who can read the location can read it")


def cmd_backup(args) -> int:
    # lazily: the CLI's other commands start without the engine's imports
    from firebackup.engine.backup import BackupRequest, run_backup

    request = BackupRequest(project=args.project, database=args.database, collections=args.collections,
                            include_auth=args.include_auth, compression=args.compression, level=args.level)
    kek = load_kek(args)
    cli = _adapters()
    repo = cli.repository(args.to)
    progress = _progress("backup")
    started = time.monotonic()
    try:
        source = cli.source(args.project, args.database)
        try:
            result = run_backup(request, source=source, repo=repo, kek=kek,
                                auth=cli.auth() if args.include_auth else None, progress=progress)
        finally:
            source.close()
    finally:
        progress.close()
        _close_repo(repo)
    out = result.to_dict()
    out["duration_s"] = round(time.monotonic() - started, 3)
    _report_backup(out, args)
    return 0


def _report_backup(out: dict[str, Any], args) -> None:
    chunks = out.get("chunks")
    n_chunks = len(chunks) if isinstance(chunks, list) else chunks
    auth = f", {out.get('auth_users')} auth users" if out.get("auth_users") else ""
    say(f"backup {out.get('backup_id')}: {out.get('documents')} documents{auth} in {n_chunks} chunks, "
        f"{_human_bytes(out.get('bytes_raw'))} -> {_human_bytes(out.get('bytes_stored'))} "
        f"({out.get('compression')}), {out.get('duration_s')} s, "
        f"{'encrypted' if out.get('encrypted') else 'NOT encrypted'}")
    _unencrypted_note(bool(out.get("encrypted")))
    if args.json:
        emit_json(out)
    else:
        print(out.get("backup_id"), flush=True)


def cmd_restore(args) -> int:
    from firebackup.engine.repository import check_backup_id

    if args.at is not None or args.backup_id is None:
        return cmd_restore_at(args)
    if args.scope or args.source_project or args.source_database:
        raise UsageError("restore: --scope, --source-project and --source-database go with --at")
    check_backup_id(args.backup_id)
    # lazily: the CLI's other commands start without the engine's imports
    from firebackup.engine.restore import RESULT_KEYS, RestoreRequest, run_restore

    request = RestoreRequest(backup_id=args.backup_id, project=args.project, database=args.database,
                             collections=args.collections, mode=args.mode, include_auth=args.include_auth,
                             dry_run=args.dry_run, keep_references=args.keep_references,
                             allow_unencrypted=args.allow_unencrypted)
    kek = load_kek(args)
    cli = _adapters()
    repo = cli.repository(args.location)
    progress = _progress("restore")
    started = time.monotonic()
    try:
        # The backup is checked (found, key right, not downgraded) before the target is touched.
        repo.read_manifest(args.backup_id, kek, allow_unencrypted=args.allow_unencrypted)
        target = cli.firestore(args.project, args.database)
        try:
            result = run_restore(request, target=target, repo=repo, kek=kek,
                                 auth=cli.auth() if args.include_auth else None, progress=progress)
        finally:
            target.close()
    finally:
        progress.close()
        _close_repo(repo)
    out = result.to_dict()
    out["duration_s"] = round(time.monotonic() - started, 3)
    ordered = _contract_order(out, RESULT_KEYS)
    failed = ordered.get("documents_failed") or 0
    verb = "would write" if ordered["dry_run"] else "wrote"
    say(f"restore {args.backup_id} -> {args.project}/{args.database}: {verb} "
        f"{ordered.get('documents_written')} documents, skipped {ordered.get('documents_skipped')}, "
        f"failed {failed}, auth users {ordered.get('auth_users')}"
        f"{' (skipped ' + str(ordered['auth_users_skipped']) + ')' if ordered.get('auth_users_skipped') else ''}"
        f", {ordered['duration_s']} s")
    if args.json:
        emit_json(ordered)
    auth_failed = ordered.get("auth_users_failed") or 0
    for line in result.errors:
        say(f"  {line}")
    if failed or auth_failed:
        what = [f"{failed} documents were not written"] if failed else []
        what += [f"{auth_failed} Auth users were not imported"] if auth_failed else []
        say(f"restore failed: {', '.join(what)}")
        return 1
    return 0


def cmd_restore_at(args) -> int:
    """restore --at: base backup and captured changes read straight from the location with the key."""
    from firebackup.pitr.events import parse_instant
    from firebackup.pitr.restore import PointInTimeRequest
    from firebackup.pitr.storage_restore import restore_from_location

    if args.at is None:
        raise UsageError("restore: pass a BACKUP_ID, or --at INSTANT for a point-in-time restore")
    if args.backup_id is not None:
        raise UsageError("restore: pass a BACKUP_ID or --at, not both")
    if args.include_auth or args.collections:
        raise UsageError("restore --at restores documents: use --scope instead of --collections; "
                         "--include-auth restores a backup's users with BACKUP_ID")
    request = PointInTimeRequest(at=parse_instant(args.at), project=args.project, database=args.database,
                                 scope=args.scope, mode=args.mode, dry_run=args.dry_run,
                                 keep_references=args.keep_references)
    kek = load_key(args.key_file)
    cli = _adapters()
    repo = cli.repository(args.location)
    try:
        target = cli.firestore(args.project, args.database)
        try:
            result = restore_from_location(request, repo=repo, target=target, kek=kek,
                                           source_project=args.source_project or args.project,
                                           source_database=args.source_database or args.database)
        finally:
            target.close()
    finally:
        _close_repo(repo)
    out = result.to_dict()
    verb = "would write" if result.dry_run else "wrote"
    say(f"restore {args.project}/{args.database} to {out['at']} from backup {result.backup_id} and "
        f"{result.changes_applied} changed documents: {verb} {result.documents_written} documents, deleted "
        f"{result.documents_deleted}, skipped {result.documents_skipped}, failed {result.documents_failed}, "
        f"{out['duration_s']} s")
    for line in result.warnings:
        say(f"  warning: {line}")
    if args.json:
        emit_json(out)
    for line in result.errors:
        say(f"  {line}")
    if result.documents_failed:
        say(f"restore failed: {result.documents_failed} documents were not written")
        return 1
    return 0


def cmd_history(args) -> int:
    from firebackup.pitr.restore import check_scope
    from firebackup.pitr.storage_restore import document_history

    path = check_scope(args.path) or ""
    kek = load_key(args.key_file)
    repo = open_repository(args.location)
    try:
        versions = document_history(repo, kek, project=args.project, database=args.database, path=path)
    finally:
        _close_repo(repo)
    for v in versions:
        say(f"{v.to_dict()['at']}  {v.source:<26}  {v.operation}")
    say(f"{len(versions)} version(s) of {path}")
    if args.json:
        emit_json({"path": path, "versions": [v.to_dict() for v in versions]})
    return 0


def cmd_diff(args) -> int:
    from firebackup.pitr.events import format_ns
    from firebackup.pitr.history import diff, fields_json, parse_instants
    from firebackup.pitr.restore import check_scope
    from firebackup.pitr.storage_restore import document_at

    path = check_scope(args.path) or ""
    first, second = parse_instants(args.at)
    kek = load_key(args.key_file)
    repo = open_repository(args.location)
    try:
        docs = [document_at(repo, kek, project=args.project, database=args.database, path=path, at=at)
                for at in (first, second)]
    finally:
        _close_repo(repo)
    changes = diff(docs[0], docs[1])
    for c in changes:
        say(f"{c['change']:<8} {c['field']}: {json.dumps(c['before'])} -> {json.dumps(c['after'])}")
    say(f"{len(changes)} field(s) differ in {path} between {format_ns(first)} and {format_ns(second)}")
    if args.json:
        emit_json({"path": path, "at": [format_ns(first), format_ns(second)], "exists": [d is not None for d in docs],
                   "before": fields_json(docs[0]), "after": fields_json(docs[1]), "changes": changes})
    return 0


def cmd_verify(args) -> int:
    from firebackup.engine.repository import check_backup_id
    from firebackup.engine.verify import verify

    check_backup_id(args.backup_id)
    kek = load_kek(args)
    repo = open_repository(args.location)
    progress = _progress("verify")
    try:
        report = verify(repo, args.backup_id, kek, progress=progress, allow_unencrypted=args.allow_unencrypted)
    finally:
        progress.close()
        _close_repo(repo)
    out = report.to_dict()
    if report.ok:
        say(f"backup {report.backup_id}: OK, {report.chunks_checked} chunks, {report.documents} documents"
            f"{', ' + str(report.auth_users) + ' auth users' if report.auth_users else ''}, "
            f"{'encrypted' if report.encrypted else 'NOT encrypted'}")
    else:
        say(f"backup {report.backup_id}: {len(report.problems)} problem(s) in "
            f"{report.chunks_checked} chunks:")
        for problem in report.problems:
            say(f"  {problem}")
    if args.json:
        emit_json(out)
    return 0 if report.ok else 1


def cmd_list(args) -> int:
    repo = open_repository(args.location)
    try:
        listing = repo.scan()
    finally:
        _close_repo(repo)
    good = [b for b in listing.backups if b.problem is None]
    if args.json:
        emit_json({
            "backups": [b.to_dict() for b in good],
            "problems": listing.problems,
            "incomplete": listing.incomplete,
        })
    else:
        if good:
            print(f"{'BACKUP_ID':<26} {'READ_TIME':<32} {'DOCUMENTS':>10} {'STORED':>10}  ENCRYPTED")
            for b in good:
                print(f"{b.backup_id:<26} {str(b.read_time or '-'):<32} {b.documents if b.documents is not None else '?':>10} "
                      f"{_human_bytes(b.bytes_stored):>10}  {'yes' if b.encrypted else 'NO'}")
        sys.stdout.flush()
    say(f"{len(good)} complete backup(s) at {repo.url}"
        + (f"; {len(listing.incomplete)} incomplete (no manifest)" if listing.incomplete else ""))
    for problem in listing.problems:
        say(f"warning: {problem}")
    return 0


def cmd_show(args) -> int:
    from firebackup.engine.repository import check_backup_id

    check_backup_id(args.backup_id)
    kek = load_kek(args)
    repo = open_repository(args.location)
    try:
        summary = repo.read_summary(args.backup_id)
        manifest = None
        if kek is not None or not summary.get("encrypted"):
            manifest, _ = repo.read_manifest(args.backup_id, kek, allow_unencrypted=args.allow_unencrypted)
    finally:
        _close_repo(repo)
    out: dict[str, Any] = dict(summary)
    out["backup_id"] = args.backup_id
    out["encrypted"] = bool(summary.get("encrypted"))
    if manifest is not None:
        body = manifest.to_dict()
        if body.get("auth_hash_config"):
            body["auth_hash_config"] = redact_hash_config(body["auth_hash_config"])
        for k, v in body.items():
            out.setdefault(k, v)
        out["manifest"] = body
    else:
        out["manifest"] = None
    if args.json:
        emit_json(out)
    else:
        _print_show(out)
    if manifest is None:
        say("the backup is encrypted: pass --key-file or --kms-key to see its chunks and collections")
    _unencrypted_note(out["encrypted"], made_now=False)
    return 0


_SECRET_HASH_FIELDS = ("signerKey", "saltSeparator", "base64_signer_key", "base64_salt_separator", "key")


def redact_hash_config(config: dict[str, Any]) -> dict[str, Any]:
    """The password-hash parameters with the signer key and salt separator hidden (they are secrets)."""
    return {k: ("<redacted>" if (k in _SECRET_HASH_FIELDS or "key" in k.lower() or "salt" in k.lower())
                and v is not None else v)
            for k, v in config.items()}


def _print_show(out: dict[str, Any]) -> None:
    skip = {"manifest", "chunks"}
    for k, v in out.items():
        if k in skip or isinstance(v, (dict, list)) and len(json.dumps(v, default=str)) > 120:
            continue
        print(f"{k + ':':<18} {json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}")
    body = out.get("manifest") or {}
    chunks = body.get("chunks") or []
    if chunks:
        print(f"chunks:            {len(chunks)}")
        print(f"  {'CHUNK':<16} {'KIND':<5} {'RECORDS':>8} {'RAW':>10} {'STORED':>10}  SHA256")
        for c in chunks:
            print(f"  {c.get('chunk_id', '?'):<16} {c.get('kind', '?'):<5} {c.get('records', 0):>8} "
                  f"{_human_bytes(c.get('bytes_raw')):>10} {_human_bytes(c.get('bytes_stored')):>10}  "
                  f"{str(c.get('sha256', ''))[:16]}")
    sys.stdout.flush()


def cmd_cat(args) -> int:
    from google.protobuf.json_format import MessageToDict

    from firebackup.firestore.protos import Document

    from firebackup.engine.repository import check_backup_id

    check_backup_id(args.backup_id)
    kek = load_kek(args)
    repo = open_repository(args.location)
    parse = Document.FromString
    printed = 0
    try:
        manifest, data_key = repo.read_manifest(args.backup_id, kek, allow_unencrypted=args.allow_unencrypted)
        for entry in manifest.chunks:
            if entry.kind != "docs":
                continue  # auth records hold password hashes: never printed by a convenience command
            for record in repo.iter_records(args.backup_id, entry, data_key):
                if args.limit is not None and printed >= args.limit:
                    return 0
                doc = MessageToDict(parse(record))
                sys.stdout.write(json.dumps(doc, ensure_ascii=False, sort_keys=True) + "\n")
                printed += 1
    finally:
        sys.stdout.flush()
        _close_repo(repo)
        say(f"{printed} document(s) from backup {args.backup_id}")
    return 0


def cmd_demo_storage(args) -> int:
    from firebackup.engine import demo

    kek = load_kek(args)
    repo = open_repository(args.to)
    progress = _progress("demo-storage")
    progress.set_total(documents=args.docs)
    started = time.monotonic()
    try:
        result = demo.backup_generated(
            repo, documents=args.docs, chunk_docs=args.chunk_docs, collections=args.collections,
            project=args.project, database=args.database, compression=args.compression,
            level=args.level, kek=kek, seed=args.seed, progress=progress,
        )
    finally:
        progress.close()
        _close_repo(repo)
    out = result.to_dict()
    out["duration_s"] = round(time.monotonic() - started, 3)
    _report_backup(out, args)
    return 0


# -- entry point -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the exit status (0 ok, 1 failed, 2 bad usage or input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    want_json = "--json" in argv
    debug = False
    _CLI.clear()  # settings are read anew for every invocation
    try:
        debug = _adapters().settings.debug
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except FireBackupError as e:
        if debug:
            traceback.print_exc()
        message = _one_line(e)
        if not message.startswith(PROG):
            message = f"{PROG}: {message}"
        say(message)
        if want_json:
            emit_json({"error": _one_line(e), "exit_code": e.exit_code})
        return e.exit_code
    except KeyboardInterrupt:
        say(f"{PROG}: interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); nothing more to say to it.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1
    except Exception as e:  # a bug or an unexpected environment: one line unless debugging
        if debug:
            traceback.print_exc()
        say(f"{PROG}: unexpected error: {type(e).__name__}: {_one_line(e)}"
            + ("" if debug else " (set FIREBACKUP_DEBUG=1 to see the traceback)"))
        if want_json:
            emit_json({"error": f"{type(e).__name__}: {_one_line(e)}", "exit_code": 1})
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
