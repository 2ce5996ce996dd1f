"""The CLI on real object-store servers: S3 (moto) and GCS (fake-gcs-server) on 127.0.0.1."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

FIREBACKUP = str(Path(sys.executable).parent / "firebackup")


def fb(env: dict[str, str], *args: str, expect: int = 0) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "FIREBACKUP_DEBUG"}
    full.update(env)
    proc = subprocess.run([FIREBACKUP, *args], capture_output=True, text=True, env=full, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == expect, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def round_trip(env: dict[str, str], url: str, key: Path) -> None:
    made = json.loads(fb(env, "demo-storage", "--to", url, "--docs", "700", "--chunk-docs", "200",
                         "--key-file", str(key), "--json").stdout)
    listed = json.loads(fb(env, "list", "--from", url, "--json").stdout)
    assert [b["backup_id"] for b in listed["backups"]] == [made["backup_id"]]
    report = json.loads(fb(env, "verify", made["backup_id"], "--from", url, "--key-file", str(key),
                           "--json").stdout)
    assert (report["ok"], report["documents"], report["chunks_checked"]) == (True, 700, 4)


def test_demo_list_verify_on_s3(s3_server, tmp_path):
    import boto3

    bucket = f"fb-{secrets.token_hex(4)}"
    env = dict(s3_server.env)
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
                 aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                 aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=bucket)
    key = tmp_path / "k.key"
    fb(env, "keygen", "--out", str(key))
    round_trip(env, f"s3://{bucket}/team/backups", key)


def test_a_missing_s3_bucket_exits_2_with_one_line(s3_server):
    proc = fb(dict(s3_server.env), "list", "--from", f"s3://no-such-{secrets.token_hex(4)}/x", expect=2)
    assert proc.stderr.count("\n") == 1


def test_demo_list_verify_on_gcs(gcs_server, tmp_path):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    bucket = f"fb-{secrets.token_hex(4)}"
    env = dict(gcs_server.env)
    client = storage.Client(project="test", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": env["STORAGE_EMULATOR_HOST"]})
    client.create_bucket(bucket)
    key = tmp_path / "k.key"
    fb(env, "keygen", "--out", str(key))
    round_trip(env, f"gs://{bucket}/prefix", key)
