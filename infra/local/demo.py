"""`make run`: the main job on embedded defaults, end to end on the local emulators.

Starts the Firestore and Auth emulators, seeds a demo dataset (every Firestore value type,
subcollections, a subcollection under a missing parent, Auth users with passwords), backs it up
encrypted into ./.local/backups with the `firebackup` CLI, verifies it, restores it into a second
database (and the Auth users into a second project), compares source and copy document by
document, and prints a short summary. Exit 0 only if the copy matches exactly.

    python -m infra.local.demo [--workdir DIR] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import struct
import subprocess
import sys
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from infra.local import stack

SOURCE_PROJECT = "demo-firebackup"
SOURCE_DATABASE = "(default)"
# The emulator serves named databases, so the copy goes to another database; Auth has no
# databases, so its users go to a second project (same database name there).
TARGET_PROJECT = "demo-firebackup-restored"
TARGET_DATABASE = "restored"

REPO_ROOT = stack.REPO_ROOT


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- seed

def seed_firestore(project: str, database: str) -> int:
    """Write the demo dataset; return the number of documents written."""
    from google.cloud import firestore
    from google.cloud.firestore_v1.vector import Vector

    db = firestore.Client(project=project, database=database)
    batch = db.batch()
    count = 0

    def put(path: str, data: dict[str, Any]) -> None:
        nonlocal batch, count
        batch.set(db.document(path), data)
        count += 1
        if count % 400 == 0:
            batch.commit()
            batch = db.batch()

    base = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    cities = ["Lisbon", "Nairobi", "Osaka", "Lima", "Oslo", "Perth"]
    for i in range(60):
        uid = f"user{i:03d}"
        put(f"users/{uid}", {
            "name": f"User {i}",
            "email": f"user{i}@example.com",
            "age": 18 + i % 60,
            "score": i * 1.25,
            "active": i % 3 != 0,
            "nickname": None if i % 4 == 0 else f"u{i}",
            "joined": base + dt.timedelta(days=i, microseconds=i * 17),
            "home": firestore.GeoPoint(-33.0 + i / 10, 151.0 - i / 7),
            "avatar": bytes(range(i % 256)) * 2,
            "tags": ["a", "b", i, {"nested": True}],
            "address": {"city": cities[i % len(cities)], "zip": f"{10000 + i}",
                        "geo": {"lat": 1.5, "lng": -2.25, "levels": [1, 2, {"deep": {"deeper": i}}]}},
            "embedding": Vector([i / 10, 0.5, -1.0]),
            "best_friend": db.document(f"users/user{(i + 1) % 60:03d}"),
        })
        for j in range(i % 4):
            put(f"users/{uid}/orders/o{j}", {
                "total": 9.99 * (j + 1), "items": [{"sku": f"sku-{j}", "qty": j + 1}],
                "placed": base + dt.timedelta(hours=j), "product": db.document(f"products/p{j:03d}"),
            })
            put(f"users/{uid}/orders/o{j}/events/e0", {"kind": "placed", "at": base})
    for k in range(30):
        put(f"products/p{k:03d}", {"title": f"Product {k}", "price": 1000 + k, "stock": k % 7,
                                    "categories": ["demo", f"cat{k % 5}"], "photo": b"\x89PNG\r\n" + bytes([k])})
    # Every value type and the awkward edges in one document.
    put("types/all", {
        "null": None, "true": True, "false": False,
        "int_min": -(2 ** 63), "int_max": 2 ** 63 - 1, "zero": 0,
        "double": 3.141592653589793, "neg_zero": -0.0, "nan": math.nan, "inf": math.inf, "ninf": -math.inf,
        "ts_first": dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc),
        "ts_last": dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone.utc),
        "string": "héllo wörld ✓ 日本", "empty_string": "",
        "bytes": b"\x00\x01\xfe\xff", "empty_bytes": b"",
        "geopoint": firestore.GeoPoint(90.0, -180.0),
        "reference": db.document("products/p000"),
        "vector": Vector([0.0, -1.5, 1e-9]),
        "array": [1, "two", 3.0, None, {}, {"x": [1, {"y": 2}]}],
        "map": {"a": {"b": {"c": {"d": "deep"}}}, "empty": {}},
        "field with spaces": 1, "dotted.name": 2, "`backticks`": 3, "ünïcødé": 4,
    })
    # Subcollection under documents that do not exist ("missing" parents).
    for n in range(3):
        put(f"orphans/ghost/items/i{n}", {"n": n})
    put("orphans/ghost/items/i0/deeper/x", {"ok": True})
    batch.commit()
    db.close()
    return count


def seed_auth(project: str) -> int:
    """Create Auth users with passwords in the Auth emulator; return how many."""
    import firebase_admin
    from firebase_admin import auth

    app = firebase_admin.initialize_app(options={"projectId": project}, name=f"seed-{project}")
    try:
        n = 0
        for i in range(8):
            auth.create_user(uid=f"auth{i:02d}", email=f"person{i}@example.com", password=f"password-{i}!",
                             display_name=f"Person {i}", disabled=(i == 7), app=app)
            if i % 2 == 0:
                auth.set_custom_user_claims(f"auth{i:02d}", {"role": "admin" if i == 0 else "member"}, app=app)
            n += 1
        return n
    finally:
        firebase_admin.delete_app(app)


# ----------------------------------------------------------------------------- compare

def _norm(value: Any, db_path: str) -> Any:
    """A comparable form of a client value: floats by bit pattern, references by relative path."""
    from google.cloud.firestore_v1.base_document import BaseDocumentReference
    from google.cloud.firestore_v1.vector import Vector

    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return ("double", struct.pack(">d", value).hex())
    if isinstance(value, dict):
        return {k: _norm(v, db_path) for k, v in value.items()}
    if isinstance(value, list):
        return [_norm(v, db_path) for v in value]
    if isinstance(value, Vector):
        return ("vector", [struct.pack(">d", x).hex() for x in value.to_map_value()["value"]])
    if isinstance(value, BaseDocumentReference):
        # Restore remaps references into the target database; the client only decodes a
        # reference that points into its own database, so the relative path is what to compare.
        return ("ref", value.path)
    if isinstance(value, dt.datetime):
        return ("ts", value.isoformat(), getattr(value, "nanosecond", 0))
    return value


def dump_firestore(project: str, database: str) -> dict[str, Any]:
    """Every document of a database (all depths, missing parents walked through) by relative path."""
    from google.cloud import firestore

    db = firestore.Client(project=project, database=database)
    out: dict[str, Any] = {}

    def walk(collection) -> None:
        refs = list(collection.list_documents())  # includes missing parents
        for snap in db.get_all(refs):
            if snap.exists:
                out[snap.reference.path] = _norm(snap.to_dict(), database)
        for ref in refs:
            for sub in ref.collections():
                walk(sub)

    try:
        for coll in db.collections():
            walk(coll)
    finally:
        db.close()
    return out


def dump_auth(project: str) -> dict[str, Any]:
    import firebase_admin
    from firebase_admin import auth

    app = firebase_admin.initialize_app(options={"projectId": project}, name=f"dump-{project}")
    try:
        users = {}
        for u in auth.list_users(app=app).iterate_all():
            users[u.uid] = {
                "email": u.email, "display_name": u.display_name, "disabled": u.disabled,
                "claims": u.custom_claims, "providers": sorted(p.provider_id for p in u.provider_data),
                "password_hash": u.password_hash, "password_salt": u.password_salt,
            }
        return users
    finally:
        firebase_admin.delete_app(app)


def diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    problems = [f"missing in copy: {k}" for k in sorted(a.keys() - b.keys())]
    problems += [f"extra in copy: {k}" for k in sorted(b.keys() - a.keys())]
    problems += [f"differs: {k}" for k in sorted(a.keys() & b.keys()) if a[k] != b[k]]
    return problems


# ----------------------------------------------------------------------------- CLI

def firebackup(*args: str, env: dict[str, str], expect_json: bool = True) -> dict[str, Any]:
    """Run the `firebackup` CLI; return its --json object (its progress text goes to our stderr)."""
    argv = [sys.executable, "-m", "firebackup.cli", *args] + (["--json"] if expect_json else [])
    proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=None, text=True, cwd=REPO_ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"demo: `firebackup {args[0]}` failed with exit {proc.returncode}")
    return json.loads(proc.stdout) if expect_json else {}


def run(workdir: Path) -> dict[str, Any]:
    t0 = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    backups = workdir / "backups"
    backups.mkdir(exist_ok=True)
    key = workdir / "demo.key"
    location = backups.resolve().as_uri()

    say("starting the Firestore and Auth emulators ...")
    # Both at once: the Auth emulator (node) takes the longest, the Firestore one starts beside it.
    with ThreadPoolExecutor(1) as pool:
        fs_future = pool.submit(stack.start_firestore_emulator)
        try:
            au = stack.start_auth_emulator(SOURCE_PROJECT)
        except BaseException:
            fs_future.result().stop()
            raise
        try:
            fs = fs_future.result()
        except BaseException:
            au.stop()
            raise
    with fs, au:
        env = {**os.environ, **fs.env, **au.env}
        os.environ.update(fs.env)
        os.environ.update(au.env)
        say(f"  firestore {fs.host}, auth {au.host}")

        docs = seed_firestore(SOURCE_PROJECT, SOURCE_DATABASE)
        users = seed_auth(SOURCE_PROJECT)
        say(f"seeded {docs} documents and {users} Auth users into {SOURCE_PROJECT}/{SOURCE_DATABASE}")

        if not key.exists():
            firebackup("keygen", "--out", str(key), env=env, expect_json=False)
            say(f"new key in {key}")

        backup = firebackup("backup", "--project", SOURCE_PROJECT, "--database", SOURCE_DATABASE,
                            "--to", location, "--include-auth", "--key-file", str(key), env=env)
        bid = backup["backup_id"]
        verify = firebackup("verify", bid, "--from", location, "--key-file", str(key), env=env)
        restore = firebackup("restore", bid, "--from", location, "--project", TARGET_PROJECT,
                             "--database", TARGET_DATABASE, "--include-auth", "--key-file", str(key), env=env)

        src, dst = dump_firestore(SOURCE_PROJECT, SOURCE_DATABASE), dump_firestore(TARGET_PROJECT, TARGET_DATABASE)
        doc_problems = diff(src, dst)
        src_users, dst_users = dump_auth(SOURCE_PROJECT), dump_auth(TARGET_PROJECT)
        auth_problems = diff(src_users, dst_users)

    match = (not doc_problems and not auth_problems and bool(verify.get("ok"))
             and len(src) == docs and len(src_users) == users)
    return {
        "match": match,
        "backup_id": bid,
        "location": location,
        "encrypted": backup.get("encrypted"),
        "documents_seeded": docs,
        "documents_backed_up": backup.get("documents"),
        "documents_restored": restore.get("documents_written"),
        "documents_compared": len(src),
        "auth_users_seeded": users,
        "auth_users_restored": restore.get("auth_users"),
        "auth_users_compared": len(src_users),
        "verify_ok": verify.get("ok"),
        "bytes_raw": backup.get("bytes_raw"),
        "bytes_stored": backup.get("bytes_stored"),
        "source": f"{SOURCE_PROJECT}/{SOURCE_DATABASE}",
        "target": f"{TARGET_PROJECT}/{TARGET_DATABASE}",
        "problems": (doc_problems + auth_problems)[:20],
        "duration_s": round(time.monotonic() - t0, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m infra.local.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=REPO_ROOT / ".local",
                    help="where backups/ and demo.key live (default: ./.local)")
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    args = ap.parse_args(argv)
    # SIGTERM ends the demo through the normal exit path, so the emulators are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        s = run(args.workdir)
    except stack.StackError as e:
        say(f"demo: {e}")
        return 2
    if args.json:
        print(json.dumps(s), flush=True)
    else:
        print(
            f"\nFireBackup demo: {s['source']} -> {s['target']}\n"
            f"  seeded      {s['documents_seeded']} documents, {s['auth_users_seeded']} Auth users\n"
            f"  backup      {s['backup_id']} ({'encrypted' if s['encrypted'] else 'NOT encrypted'}): "
            f"{s['documents_backed_up']} documents, {s['bytes_raw']} -> {s['bytes_stored']} bytes\n"
            f"              in {s['location']}\n"
            f"  verify      {'ok' if s['verify_ok'] else 'FAILED'}\n"
            f"  restore     {s['documents_restored']} documents, {s['auth_users_restored']} Auth users\n"
            f"  compare     {s['documents_compared']} documents, {s['auth_users_compared']} Auth users: "
            f"{'exact match' if s['match'] else 'MISMATCH'}\n"
            f"  took        {s['duration_s']} s", flush=True)
        for p in s["problems"]:
            print(f"  - {p}", flush=True)
    return 0 if s["match"] else 1


if __name__ == "__main__":
    sys.exit(main())
