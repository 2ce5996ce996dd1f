"""Firebase Auth users: export every user (with password hash and salt), import them back.

Records (kind "auth" chunks) are one JSON object per user, UTF-8, in the field names of
`firebase auth:export` / the Identity Toolkit REST API:

    localId, email, emailVerified, passwordHash, salt, displayName, photoUrl, phoneNumber,
    disabled, customAttributes (the claims as a JSON string), createdAt, lastSignedInAt,
    lastRefreshAt (milliseconds since the epoch, strings), validSince (seconds, string),
    tenantId, providerUserInfo [{providerId, rawId, email, displayName, photoUrl, phoneNumber}],
    mfaInfo [{mfaEnrollmentId, displayName, phoneInfo, enrolledAt}]

passwordHash and salt are kept exactly as the API returned them (base64 on Firebase) and
sent back verbatim on import, so nothing is decoded and re-encoded on the way.

Password-hash parameters (stored in the manifest, encrypted with it), from the Identity
Toolkit admin API `GET v2/projects/P/config` -> signIn.hashConfig:

    {"algorithm": "SCRYPT", "signerKey": b64, "saltSeparator": b64, "rounds": int, "memoryCost": int}

The Auth emulator has no hashConfig (its config holds only signIn.allowDuplicateEmails,
blockingFunctions, emailPrivacyConfig) and does not hash: it stores
"fakeHash:salt=<salt>:password=<password>" and compares that string literally at sign-in
(firebase-tools src/emulator/auth/operations.ts, hashPassword). For it we store
{"algorithm": EMULATOR_HASH}; such hashes import back into an emulator (which ignores the
declared algorithm) and are refused, per user, for a real project where they would be garbage.

The Auth emulator is named by the emulator_host argument, never read from the environment
here. firebase_admin itself has no parameter for it and reads FIREBASE_AUTH_EMULATOR_HOST
from the environment: the composition root applies client_environment(host) so the library
and this module agree. Calls are retried under a RetryPolicy (transient errors only); note
that firebase_admin's HTTP client also retries inside each call (connection errors once,
HTTP 500/503 up to four times), which its public API does not let us switch off.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, TypeVar

from firebackup.errors import (
    FireBackupError,
    SourceAccessDenied,
    SourceError,
    SourceUnavailable,
    TransientError,
    UsageError,
    source_error_class,
    status_of_http,
)
from firebackup.retry import RetryPolicy

EMULATOR_ENV = "FIREBASE_AUTH_EMULATOR_HOST"
EMULATOR_HASH = "FIREBASE_AUTH_EMULATOR"
IMPORT_BATCH = 1000  # accounts:batchCreate limit
LIST_PAGE = 1000  # accounts:batchGet limit
AUTH_HOST = "identitytoolkit.googleapis.com"
DEFAULT_RETRY = RetryPolicy(attempts=5, base_delay=0.4, max_delay=10.0, deadline=120.0)
_log = logging.getLogger(__name__)
T = TypeVar("T")

_apps_lock = threading.Lock()


def _host(emulator_host: str | None) -> str | None:
    """The emulator's host:port ("http://" dropped, as firebase_admin wants it), or None."""
    host = (emulator_host or "").strip()
    if "://" in host:
        host = host.split("://", 1)[1]
    return host or None


def client_environment(emulator_host: str | None) -> dict[str, str]:
    """The environment firebase_admin needs to reach the Auth emulator (it reads nothing else)."""
    host = _host(emulator_host)
    return {EMULATOR_ENV: host} if host else {}


def auth_app(project_id: str, app: Any = None, *, emulator_host: str | None = None) -> Any:
    """The firebase_admin App for project_id and emulator host (created once per process).

    The library routes its calls to the Auth emulator when FIREBASE_AUTH_EMULATOR_HOST is in the
    environment when the app's auth service is made (see client_environment), and keeps that for
    the app's life: one app per host. Credentials load lazily (ADC).
    """
    if app is not None:
        return app
    if not project_id:
        raise UsageError("no Firebase project given for Auth users; pass --project")
    import firebase_admin

    name = f"firebackup-auth-{project_id}-{_host(emulator_host) or 'google'}"
    with _apps_lock:
        try:
            return firebase_admin.get_app(name)
        except ValueError:
            # Credentials load lazily (ADC); the emulator needs none.
            return firebase_admin.initialize_app(options={"projectId": project_id}, name=name)


def _status(e: Exception) -> str | None:
    """The canonical status name of a firebase_admin / requests / google.auth error, if it has one."""
    import google.auth.exceptions
    import requests

    code = getattr(e, "code", None)  # firebase_admin.exceptions.FirebaseError: "UNAVAILABLE", ...
    if isinstance(code, str) and code.isupper():
        return code
    if isinstance(e, (requests.exceptions.ConnectionError, google.auth.exceptions.TransportError)):
        return "UNAVAILABLE"
    if isinstance(e, requests.exceptions.Timeout):
        return "DEADLINE_EXCEEDED"
    if isinstance(e, google.auth.exceptions.DefaultCredentialsError):
        return "UNAUTHENTICATED"
    return None


def _translate(e: Exception, what: str, project_id: str, emulator_host: str | None) -> SourceError:
    """One line for a person, of the class errors.source_error_class gives the status."""
    host = _host(emulator_host) or AUTH_HOST
    code = _status(e)
    kind = source_error_class(code)
    text = " ".join(str(e).split())[:300]
    if kind is SourceUnavailable:
        message = (
            f"cannot reach Firebase Auth at {host} ({what} for {project_id}: {text}); check the network "
            "(or that the Auth emulator runs there), or retry later"
        )
    elif kind is SourceAccessDenied:
        message = (
            f"Firebase Auth {what} for project {project_id} at {host}: permission denied ({text}); grant the "
            "credentials the Firebase Authentication Admin role"
        )
    else:
        message = f"Firebase Auth {what} for project {project_id} at {host} failed: {text}"
    return kind(message, grpc_code=code)


@dataclass(frozen=True)
class _Target:
    """One project's Auth: where it is and how calls to it are retried."""

    project_id: str
    emulator_host: str | None
    retry: RetryPolicy

    def call(self, fn: Callable[[], T], what: str) -> T:
        """fn() under the retry policy; its vendor errors become ours (one line) on each try."""

        def attempt() -> T:
            try:
                return fn()
            except Exception as e:  # firebase_admin / requests errors stay inside this module
                raise _translate(e, what, self.project_id, self.emulator_host) from None

        return self.retry.call(attempt)


# -- export ------------------------------------------------------------------------------------


def _ms(value: Any) -> str | None:
    return None if value is None else str(int(value))


def user_to_record(user: Any) -> dict[str, Any]:
    """An firebase_admin ExportedUserRecord as the auth:export JSON object (None fields left out)."""
    meta = user.user_metadata
    rec: dict[str, Any] = {
        "localId": user.uid,
        "email": user.email,
        "emailVerified": bool(user.email_verified),
        "passwordHash": user.password_hash or None,
        "salt": user.password_salt or None,
        "displayName": user.display_name,
        "photoUrl": user.photo_url,
        "phoneNumber": user.phone_number,
        "disabled": bool(user.disabled),
        "customAttributes": json.dumps(user.custom_claims, sort_keys=True) if user.custom_claims else None,
        "createdAt": _ms(meta.creation_timestamp) if meta else None,
        "lastSignedInAt": _ms(meta.last_sign_in_timestamp) if meta else None,
        "lastRefreshAt": _ms(meta.last_refresh_timestamp) if meta else None,
        "validSince": str(int(user.tokens_valid_after_timestamp // 1000)) if user.tokens_valid_after_timestamp else None,
        "tenantId": user.tenant_id,
    }
    providers = []
    for p in user.provider_data or ():
        providers.append({k: v for k, v in {
            "providerId": p.provider_id,
            "rawId": p.uid,
            "email": p.email,
            "displayName": p.display_name,
            "photoUrl": p.photo_url,
            "phoneNumber": p.phone_number,
        }.items() if v is not None})
    if providers:
        rec["providerUserInfo"] = providers
    mfa = getattr(user, "multi_factor", None)
    factors = getattr(mfa, "factors", None) or ()
    if factors:
        rec["mfaInfo"] = [{k: v for k, v in {
            "mfaEnrollmentId": f.uid,
            "displayName": f.display_name,
            "phoneInfo": getattr(f, "phone_number", None),
            "enrolledAt": _rfc3339_ms(f.enrollment_time) if f.enrollment_time else None,
        }.items() if v is not None} for f in factors]
    return {k: v for k, v in rec.items() if v is not None}


def _rfc3339_ms(ms: int) -> str:
    t = time.gmtime(ms // 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ms % 1000:03d}Z"


def encode_record(rec: dict[str, Any]) -> bytes:
    return json.dumps(rec, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def iter_user_records(
    project_id: str,
    *,
    emulator_host: str | None = None,
    app: Any = None,
    page_size: int = LIST_PAGE,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> Iterator[bytes]:
    """Every user of the project as one JSON record (bytes), paging through accounts:batchGet."""
    from firebase_admin import auth

    target = _Target(project_id, emulator_host, retry)
    app = auth_app(project_id, app, emulator_host=emulator_host)
    token = None
    while True:
        page = target.call(lambda: auth.list_users(page_token=token, max_results=page_size, app=app), "listing users")
        for user in page.users:
            yield encode_record(user_to_record(user))
        token = page.next_page_token
        if not token:
            return


def get_hash_config(
    project_id: str, *, emulator_host: str | None = None, app: Any = None, retry: RetryPolicy = DEFAULT_RETRY
) -> dict[str, Any] | None:
    """The project's password-hash parameters (signIn.hashConfig), EMULATOR_HASH on the emulator.

    None when the project has none configured. Raises SourceAccessDenied when the config
    may not be read (it needs firebaseauth.configs.get on real projects).
    """
    if _host(emulator_host):
        return {"algorithm": EMULATOR_HASH}
    import google.auth.transport.requests

    app = auth_app(project_id, app, emulator_host=emulator_host)

    def fetch() -> Any:
        creds = app.credential.get_credential()
        if hasattr(creds, "with_scopes") and getattr(creds, "requires_scopes", False):
            creds = creds.with_scopes(["https://www.googleapis.com/auth/cloud-platform"])
        session = google.auth.transport.requests.AuthorizedSession(creds)  # type: ignore[no-untyped-call]
        resp = session.get(f"https://{AUTH_HOST}/admin/v2/projects/{project_id}/config", timeout=60)
        if resp.status_code != 200:
            code = status_of_http(resp.status_code)
            raise source_error_class(code)(
                f"cannot read the password-hash config of project {project_id} (HTTP {resp.status_code}); "
                "grant the credentials firebaseauth.configs.get (role Firebase Authentication Admin)",
                grpc_code=code,
            )
        return resp.json()

    body = _Target(project_id, emulator_host, retry).call(fetch, "reading the password-hash config")
    hc = (body.get("signIn") or {}).get("hashConfig")
    if not hc:
        return None
    return {k: hc[k] for k in ("algorithm", "signerKey", "saltSeparator", "rounds", "memoryCost") if k in hc}


def export_users(
    project_id: str,
    *,
    emulator_host: str | None = None,
    source: Any = None,
    app: Any = None,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> tuple[Iterator[bytes], dict[str, Any] | None]:
    """(user records, hash config) for the backup engine; `source` may be a firebase_admin App."""
    app = auth_app(project_id, app or source, emulator_host=emulator_host)
    records = iter_user_records(project_id, emulator_host=emulator_host, app=app, retry=retry)
    return records, get_hash_config(project_id, emulator_host=emulator_host, app=app, retry=retry)


# -- import ------------------------------------------------------------------------------------


@dataclass
class ImportOutcome:
    """Users imported and failed; errors name the user and say why (first 100)."""

    imported: int = 0
    failed: int = 0
    skipped: int = 0  # already in the target, left as they are (mode "skip")
    errors: list[str] = field(default_factory=list)

    def fail(self, uid: str, why: str) -> None:
        self.failed += 1
        if len(self.errors) < 100:
            self.errors.append(f"auth user {uid}: {why}")


def _import_hash(hash_config: dict[str, Any] | None, emulator: bool) -> tuple[Any, str | None]:
    """(UserImportHash or None, reason password users cannot be imported or None)."""
    from firebase_admin import auth

    if not hash_config:
        return None, "the backup has no password-hash parameters for its project"
    algo = hash_config.get("algorithm")
    if algo == EMULATOR_HASH:
        if not emulator:
            return None, "its password hash was made by the Auth emulator and is meaningless to Firebase"
        # The emulator compares its fake hashes literally and ignores the declared algorithm.
        return auth.UserImportHash("HMAC_SHA256", {"signerKey": base64.urlsafe_b64encode(b"emulator").decode()}), None
    if algo == "SCRYPT":
        return auth.UserImportHash.scrypt(
            key=base64.b64decode(hash_config["signerKey"]),
            rounds=int(hash_config["rounds"]),
            memory_cost=int(hash_config["memoryCost"]),
            salt_separator=base64.b64decode(hash_config.get("saltSeparator") or ""),
        ), None
    data = {k: v for k, v in hash_config.items() if k != "algorithm"}
    return auth.UserImportHash(str(algo), data), None


def _existing_uids(uids: list[str], app: Any, target: _Target) -> set[str]:
    """Which of uids are users in the target already (get_users: 100 identifiers a call)."""
    from firebase_admin import auth

    found: set[str] = set()
    for i in range(0, len(uids), 100):
        ids = [auth.UidIdentifier(u) for u in uids[i : i + 100]]
        res = target.call(lambda: auth.get_users(ids, app=app), "looking users up")
        found.update(u.uid for u in res.users)
    return found


def _delete_users(uids: list[str], app: Any, target: _Target) -> None:
    """Delete users the Auth emulator would refuse to import over (Firebase replaces them in place)."""
    from firebase_admin import auth

    res = target.call(lambda: auth.delete_users(uids, app=app), "replacing existing users")
    if res.failure_count:  # their import then fails and is reported per user
        _log.warning("auth: %d existing users could not be replaced", res.failure_count)


def _import_record_class() -> Any:
    from firebase_admin import auth

    class VerbatimImportUserRecord(auth.ImportUserRecord):  # type: ignore[misc]  # firebase_admin is untyped
        """ImportUserRecord that sends the stored hash, salt, MFA and timestamps as they were exported."""

        def __init__(self, rec: dict[str, Any], *, with_password: bool) -> None:
            claims = json.loads(rec["customAttributes"]) if rec.get("customAttributes") else None
            providers = [
                auth.UserProvider(
                    uid=p["rawId"], provider_id=p["providerId"], email=p.get("email"),
                    display_name=p.get("displayName"), photo_url=p.get("photoUrl"),
                )
                for p in rec.get("providerUserInfo") or ()
                if p.get("providerId") not in ("password", "phone")  # implied by hash / phoneNumber
            ]
            super().__init__(
                uid=rec["localId"], email=rec.get("email"), email_verified=rec.get("emailVerified"),
                display_name=rec.get("displayName"), phone_number=rec.get("phoneNumber"),
                photo_url=rec.get("photoUrl"), disabled=rec.get("disabled"),
                provider_data=providers or None, custom_claims=claims,
            )
            self._rec = rec
            self._with_password = with_password

        def to_dict(self) -> dict[str, Any]:
            payload: dict[str, Any] = super().to_dict()
            rec = self._rec
            for k in ("createdAt", "lastLoginAt", "mfaInfo"):
                src = "lastSignedInAt" if k == "lastLoginAt" else k
                if rec.get(src) is not None:
                    payload[k] = rec[src]
            if self._with_password and rec.get("passwordHash"):
                payload["passwordHash"] = rec["passwordHash"]
                if rec.get("salt"):
                    payload["salt"] = rec["salt"]
            return payload

    return VerbatimImportUserRecord


def import_user_records(
    project_id: str,
    records: Iterable[bytes],
    hash_config: dict[str, Any] | None,
    *,
    emulator_host: str | None = None,
    app: Any = None,
    dry_run: bool = False,
    mode: str = "overwrite",
    batch_size: int = IMPORT_BATCH,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> ImportOutcome:
    """Import user records with auth.import_users in batches of 1,000; exact per-user outcome.

    mode: "overwrite" and "merge" replace a user whose uid is already in the target (a user
    is one record: there is nothing to merge field by field), which is what Firebase's
    import does; the Auth emulator refuses such a user instead, so there those users are
    deleted just before their batch is imported. "skip" looks the batch's uids up first
    and leaves the users already there as they are (counted skipped). A password user whose
    hash cannot be imported (no or foreign hash parameters) is counted failed with the
    reason; dry_run parses and checks every record and sends no write (in skip mode it
    still looks up which users exist, so its figures are what a real run would report).
    A target that stays unreachable or refuses access raises; a batch it rejects otherwise
    counts its users failed with the reason.
    """
    from firebase_admin import auth

    if mode not in ("overwrite", "skip", "merge"):
        raise UsageError(f"unknown restore mode {mode!r}; use one of overwrite, skip, merge")
    Record = _import_record_class()
    emulator = _host(emulator_host) is not None
    target = _Target(project_id, emulator_host, retry)
    hash_alg, no_password_reason = _import_hash(hash_config, emulator)
    out = ImportOutcome()
    look_up = mode == "skip" or (emulator and not dry_run)
    app = auth_app(project_id, app, emulator_host=emulator_host) if look_up or not dry_run else None
    batch: list[Any] = []

    def send() -> None:
        if not batch:
            return
        if look_up:
            existing = _existing_uids([u.uid for u in batch], app, target)
            if existing and mode == "skip":
                out.skipped += len(existing)
                batch[:] = [u for u in batch if u.uid not in existing]
            elif existing:
                _delete_users(sorted(existing), app, target)
        if dry_run or not batch:
            out.imported += len(batch)
            batch.clear()
            return
        uses_hash = any(u._with_password and u._rec.get("passwordHash") for u in batch)
        try:
            res = target.call(lambda: auth.import_users(batch, hash_alg=hash_alg if uses_hash else None, app=app),
                              "importing users")
        except (TransientError, SourceAccessDenied):
            raise  # every other batch would fail the same way; a queue may retry the task
        except FireBackupError as err:  # refused: every user of the batch, with the reason
            for u in batch:
                out.fail(u.uid, str(err))
            batch.clear()
            return
        bad = {}
        for info in res.errors:
            bad[info.index] = info.reason
        for i, u in enumerate(batch):
            if i in bad:
                out.fail(u.uid, " ".join(str(bad[i]).split()))
            else:
                out.imported += 1
        batch.clear()

    for raw in records:
        try:
            rec = json.loads(raw)
            uid = rec["localId"]
        except (ValueError, KeyError, TypeError) as e:
            out.fail("?", f"unreadable user record ({type(e).__name__})")
            continue
        has_password = bool(rec.get("passwordHash"))
        if has_password and hash_alg is None:
            out.fail(uid, f"password not importable: {no_password_reason}")
            continue
        try:
            batch.append(Record(rec, with_password=has_password))
        except (ValueError, KeyError, TypeError) as e:
            out.fail(uid, " ".join(str(e).split()))
            continue
        if len(batch) >= batch_size:
            send()
    send()
    return out
