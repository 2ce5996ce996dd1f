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
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from firebackup.errors import FireBackupError, SourceError, SourceUnavailable, UsageError

EMULATOR_ENV = "FIREBASE_AUTH_EMULATOR_HOST"
EMULATOR_HASH = "FIREBASE_AUTH_EMULATOR"
IMPORT_BATCH = 1000  # accounts:batchCreate limit
LIST_PAGE = 1000  # accounts:batchGet limit
_MAX_ATTEMPTS = 5
_log = logging.getLogger(__name__)

_apps_lock = threading.Lock()


def _emulator_host() -> str | None:
    host = os.environ.get(EMULATOR_ENV, "").strip()
    if "://" in host:
        host = host.split("://", 1)[1]
    return host or None


def auth_app(project_id: str, app: Any = None) -> Any:
    """The firebase_admin App for project_id (created once per process; emulator honoured)."""
    if app is not None:
        return app
    if not project_id:
        raise UsageError("no Firebase project given for Auth users; pass --project")
    import firebase_admin

    name = f"firebackup-auth-{project_id}"
    with _apps_lock:
        try:
            return firebase_admin.get_app(name)
        except ValueError:
            # Credentials load lazily (ADC); the emulator needs none.
            return firebase_admin.initialize_app(options={"projectId": project_id}, name=name)


def _translate(e: Exception, what: str, project_id: str) -> FireBackupError:
    import requests

    host = _emulator_host() or "identitytoolkit.googleapis.com"
    cause = getattr(e, "cause", None) or e.__cause__
    unreachable = (
        isinstance(e, requests.exceptions.ConnectionError)
        or isinstance(cause, requests.exceptions.ConnectionError)
        or str(getattr(e, "code", "")).upper() == "UNAVAILABLE"
    )
    if unreachable:
        return SourceUnavailable(
            f"cannot reach Firebase Auth at {host} ({what} for {project_id}); check "
            f"{EMULATOR_ENV} for the emulator, or the network"
        )
    text = " ".join(str(e).split())[:300]
    return SourceError(f"Firebase Auth {what} for project {project_id} at {host} failed: {text}")


def _transient(e: Exception) -> bool:
    code = str(getattr(e, "code", "")).upper()
    return any(c in code for c in ("UNAVAILABLE", "INTERNAL", "DEADLINE", "RESOURCE_EXHAUSTED", "ABORTED"))


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


def iter_user_records(project_id: str, *, app: Any = None, page_size: int = LIST_PAGE) -> Iterator[bytes]:
    """Every user of the project as one JSON record (bytes), paging through accounts:batchGet."""
    from firebase_admin import auth

    app = auth_app(project_id, app)
    token = None
    while True:
        page = _with_retries(lambda: auth.list_users(page_token=token, max_results=page_size, app=app),
                             "listing users", project_id)
        for user in page.users:
            yield encode_record(user_to_record(user))
        token = page.next_page_token
        if not token:
            return


def get_hash_config(project_id: str, *, app: Any = None) -> dict[str, Any] | None:
    """The project's password-hash parameters (signIn.hashConfig), EMULATOR_HASH on the emulator.

    None when the project has none configured. Raises SourceError when the config cannot
    be read (it needs firebaseauth.configs.get on real projects).
    """
    host = _emulator_host()
    if host:
        return {"algorithm": EMULATOR_HASH}
    import google.auth.transport.requests

    app = auth_app(project_id, app)
    try:
        creds = app.credential.get_credential()
        if hasattr(creds, "with_scopes") and getattr(creds, "requires_scopes", False):
            creds = creds.with_scopes(["https://www.googleapis.com/auth/cloud-platform"])
        session = google.auth.transport.requests.AuthorizedSession(creds)
        resp = session.get(
            f"https://identitytoolkit.googleapis.com/admin/v2/projects/{project_id}/config", timeout=60
        )
    except Exception as e:
        raise _translate(e, "reading the password-hash config", project_id) from None
    if resp.status_code != 200:
        raise SourceError(
            f"cannot read the password-hash config of project {project_id} (HTTP {resp.status_code}); "
            "grant the credentials firebaseauth.configs.get (role Firebase Authentication Admin)"
        )
    hc = (resp.json().get("signIn") or {}).get("hashConfig")
    if not hc:
        return None
    return {k: hc[k] for k in ("algorithm", "signerKey", "saltSeparator", "rounds", "memoryCost") if k in hc}


def export_users(project_id: str, *, source: Any = None, app: Any = None) -> tuple[Iterator[bytes], dict | None]:
    """(user records, hash config) for the backup engine; `source` may be a firebase_admin App."""
    app = auth_app(project_id, app or source)
    return iter_user_records(project_id, app=app), get_hash_config(project_id, app=app)


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


def _import_hash(hash_config: dict | None, emulator: bool):
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


def _with_retries(call: Callable[[], Any], what: str, project_id: str) -> Any:
    """call(), retried on transient errors; others become our errors (one line)."""
    for attempt in range(1, _MAX_ATTEMPTS + 1):
        try:
            return call()
        except Exception as e:  # firebase_admin / requests errors stay inside this module
            if attempt < _MAX_ATTEMPTS and _transient(e):
                time.sleep(0.2 * 2 ** attempt)
                continue
            raise _translate(e, what, project_id) from None


def _existing_uids(uids: list[str], app: Any, project_id: str) -> set[str]:
    """Which of uids are users in the target already (get_users: 100 identifiers a call)."""
    from firebase_admin import auth

    found: set[str] = set()
    for i in range(0, len(uids), 100):
        ids = [auth.UidIdentifier(u) for u in uids[i : i + 100]]
        res = _with_retries(lambda: auth.get_users(ids, app=app), "looking users up", project_id)
        found.update(u.uid for u in res.users)
    return found


def _delete_users(uids: list[str], app: Any, project_id: str) -> None:
    """Delete users the Auth emulator would refuse to import over (Firebase replaces them in place)."""
    from firebase_admin import auth

    res = _with_retries(lambda: auth.delete_users(uids, app=app), "replacing existing users", project_id)
    if res.failure_count:  # their import then fails and is reported per user
        _log.warning("auth: %d existing users could not be replaced", res.failure_count)


def _import_record_class():
    from firebase_admin import auth

    class VerbatimImportUserRecord(auth.ImportUserRecord):
        """ImportUserRecord that sends the stored hash, salt, MFA and timestamps as they were exported."""

        def __init__(self, rec: dict[str, Any], *, with_password: bool):
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

        def to_dict(self):
            payload = super().to_dict()
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
    hash_config: dict | None,
    *,
    app: Any = None,
    dry_run: bool = False,
    mode: str = "overwrite",
    batch_size: int = IMPORT_BATCH,
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
    """
    from firebase_admin import auth

    if mode not in ("overwrite", "skip", "merge"):
        raise UsageError(f"unknown restore mode {mode!r}; use one of overwrite, skip, merge")
    Record = _import_record_class()
    emulator = _emulator_host() is not None
    hash_alg, no_password_reason = _import_hash(hash_config, emulator)
    out = ImportOutcome()
    look_up = mode == "skip" or (emulator and not dry_run)
    app = auth_app(project_id, app) if look_up or not dry_run else None
    batch: list[Any] = []

    def send() -> None:
        if not batch:
            return
        if look_up:
            existing = _existing_uids([u.uid for u in batch], app, project_id)
            if existing and mode == "skip":
                out.skipped += len(existing)
                batch[:] = [u for u in batch if u.uid not in existing]
            elif existing:
                _delete_users(sorted(existing), app, project_id)
        if dry_run or not batch:
            out.imported += len(batch)
            batch.clear()
            return
        uses_hash = any(u._with_password and u._rec.get("passwordHash") for u in batch)
        try:
            res = _with_retries(lambda: auth.import_users(batch, hash_alg=hash_alg if uses_hash else None, app=app),
                                "importing users", project_id)
        except SourceUnavailable:
            raise
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
