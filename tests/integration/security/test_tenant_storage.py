"""Tenant destinations, attacked through the API: the platform's identity, its network and its disk stay its own.

Each test reproduces an attack that once got through (issue 11: items 1, 3, 4, 14 and 18) and shows it
now fails to. Listeners on 127.0.0.1 play the hosts an attacker aims at; a listener that sees no
connection shows the platform never went there.
"""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from firebackup.db.models import StorageDestination, new_id

pytestmark = pytest.mark.integration

KEYS = {"access_key_id": "AKIDTENANT", "secret_access_key": "tenant-secret-access-key"}
# What a developer's machine or the local platform runs with; production runs with none of these.
DEVELOPMENT = {"allow_private_egress": True}


def _one_line_422(r) -> str:
    assert r.status_code == 422, r.get_data(as_text=True)
    message = r.get_json()["error"]["message"]
    assert message and "\n" not in message
    return message


def _service_account_key(**extra: str) -> dict[str, str]:
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return {"type": "service_account", "project_id": "tenant-p", "private_key_id": "k1", "private_key": pem.decode(),
            "client_email": "backup@tenant-p.iam.gserviceaccount.com", **extra}


def _test(t, dest_id: str) -> dict:
    r = t.post(f"/destinations/{dest_id}/test", None)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


# --- item 1: no confused deputy --------------------------------------------------------------------


def test_a_destination_without_credentials_of_its_own_is_refused_so_the_servers_identity_is_never_lent(
        tenant, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDPLATFORM")  # the platform's own, ambient identity
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "platform-secret")
    t = tenant()
    for body in ({"name": "operator's bucket", "kind": "s3", "url": "s3://operator-backups/x"},
                 {"name": "their bucket", "kind": "gcs", "url": "gs://another-customer/x"},
                 {"name": "spaces", "kind": "spaces", "url": "spaces://b/x", "region": "nyc3"}):
        assert "never used for tenant storage" in _one_line_422(t.post("/destinations", body))
    assert t.call("GET", "/destinations").get_json()["items"] == []


def test_the_servers_aws_endpoint_url_never_redirects_a_tenant_s3_destination(tenant, listener, monkeypatch) -> None:
    trap = listener()
    monkeypatch.setenv("AWS_ENDPOINT_URL", trap.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", trap.url)
    t = tenant()  # production settings, built with the variables set
    r = t.post("/destinations", {"name": "s3", "kind": "s3", "url": "s3://tenant-bucket/x", "credentials": KEYS})
    assert r.status_code == 201, r.get_json()
    out = _test(t, r.get_json()["id"])
    assert out["ok"] is False and out["message"].startswith("could not write a probe object: ")
    assert trap.connections() == 0


def test_the_servers_storage_emulator_host_never_redirects_a_tenant_gcs_destination(tenant, listener,
                                                                                     monkeypatch) -> None:
    trap = listener()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", trap.url)
    t = tenant()
    r = t.post("/destinations", {"name": "gcs", "kind": "gcs", "url": "gs://tenant-bucket/x",
                                 "credentials": {"service_account_key": _service_account_key()}})
    assert r.status_code == 201, r.get_json()
    out = _test(t, r.get_json()["id"])
    assert out["ok"] is False and out["message"].startswith("could not write a probe object: ")
    assert trap.connections() == 0


def test_in_development_a_destination_without_credentials_reaches_the_environments_s3(tenant, s3_server) -> None:
    env = s3_server.env
    bucket = f"fb-{new_id('b').lower().replace('_', '-')}"
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                 aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1").create_bucket(Bucket=bucket)
    t = tenant(allow_ambient_storage=True, s3_endpoint_url=env["AWS_ENDPOINT_URL"], **DEVELOPMENT)
    with pytest.MonkeyPatch.context() as mp:
        s3_server.apply(mp)  # the development machine's ambient keys
        r = t.post("/destinations", {"name": "moto", "kind": "s3", "url": f"s3://{bucket}/x"})
        assert r.status_code == 201, r.get_json()
        assert _test(t, r.get_json()["id"]) == {"ok": True, "message": "wrote and deleted a probe object"}


# --- item 3: no server-side request forgery ------------------------------------------------------------


def test_endpoints_on_the_platforms_own_network_are_refused_at_creation_and_never_contacted(tenant,
                                                                                              listener) -> None:
    trap = listener()
    t = tenant()
    endpoints = [trap.url, f"https://127.0.0.1:{trap.port}", f"https://localhost:{trap.port}",
                 f"https://2130706433:{trap.port}", f"https://0x7f000001:{trap.port}", f"https://[::1]:{trap.port}",
                 f"https://[::ffff:127.0.0.1]:{trap.port}", "https://169.254.169.254",
                 "https://metadata.google.internal", "https://10.0.0.1", "https://100.64.0.1"]
    for endpoint in endpoints:
        body = {"name": "s3c", "kind": "s3compat", "url": "s3://b/x", "endpoint_url": endpoint, "credentials": KEYS}
        assert _one_line_422(t.post("/destinations", body)).startswith("endpoint_url "), endpoint
    r = t.post("/destinations", {"name": "q", "kind": "s3", "url": f"s3://b/x?endpoint={trap.url}", "credentials": KEYS})
    _one_line_422(r)
    assert trap.connections() == 0


def test_a_stored_endpoint_that_now_points_inside_is_refused_when_the_destination_is_opened(tenant, listener) -> None:
    trap = listener()
    t = tenant()
    # Rows as an older release stored them, or whose name resolves elsewhere since they were made.
    rows = {"endpoint_url": ("s3compat", "s3://b/x", {"endpoint_url": f"https://2130706433:{trap.port}"}),
            "query": ("s3", f"s3://b/x?endpoint={trap.url}", {})}
    ids = {}
    with t.org.factory() as s, s.begin():
        for name, (kind, url, options) in rows.items():
            ids[name] = new_id("dst")
            s.add(StorageDestination(id=ids[name], org_id=t.org.id, name=name, kind=kind, url=url, options=options))
    for name, dest_id in ids.items():
        out = _test(t, dest_id)
        assert out["ok"] is False and out["message"].startswith("could not open the destination: "), out
    assert trap.connections() == 0


def test_a_service_account_key_pointing_its_token_endpoint_elsewhere_is_refused(tenant, listener) -> None:
    trap = listener()
    t = tenant()
    for extra in ({"token_uri": f"{trap.url}/token"}, {"universe_domain": "attacker.example"}):
        key = _service_account_key(**extra)
        r = t.post("/projects", {"name": "p", "gcp_project_id": "acme-prod", "service_account_key": key})
        assert "as Google issued it" in _one_line_422(r)
        r = t.post("/destinations", {"name": "g", "kind": "gcs", "url": "gs://b/x",
                                     "credentials": {"service_account_key": key}})
        assert "as Google issued it" in _one_line_422(r)
    assert trap.connections() == 0


def test_a_failed_probe_reports_our_words_not_the_remote_servers_page(tenant, listener) -> None:
    page = b"<html><body>SECRET-INTERNAL-PAGE: admin console</body></html>"
    internal = listener(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
                        b"Connection: close\r\n\r\n%s" % (len(page), page))
    t = tenant(**DEVELOPMENT)  # so the guard lets 127.0.0.1 through and the request reaches the page
    r = t.post("/destinations", {"name": "s3c", "kind": "s3compat", "url": "s3://b/x", "endpoint_url": internal.url,
                                 "credentials": KEYS})
    assert r.status_code == 201, r.get_json()
    r = t.post(f"/destinations/{r.get_json()['id']}/test", None)
    assert r.get_json() == {"ok": False, "message": "could not write a probe object: access denied"}
    assert internal.connections() == 1 and b"SECRET-INTERNAL-PAGE" not in r.get_data()


# --- item 4: bounded calls -------------------------------------------------------------------------


@pytest.mark.timeout(15)
def test_a_probe_of_a_host_that_never_answers_releases_the_request_within_seconds(tenant, listener) -> None:
    stalled = listener(answer=None)
    t = tenant(**DEVELOPMENT)
    r = t.post("/destinations", {"name": "s3c", "kind": "s3compat", "url": "s3://b/x", "endpoint_url": stalled.url,
                                 "credentials": KEYS})
    assert r.status_code == 201, r.get_json()
    out = _test(t, r.get_json()["id"])
    assert out == {"ok": False, "message": "could not write a probe object: no answer in time, or the service is "
                                           "unavailable"}
    assert stalled.connections() == 1  # it was reached, once: a bounded try, not a refusal


# --- item 14: clean names and URLs -----------------------------------------------------------------


def test_names_that_read_as_something_else_are_refused_everywhere(tenant) -> None:
    t = tenant()
    spoof = "invoice\u202efdp.exe"
    assert t.call("PATCH", "", {"name": spoof}).status_code == 422
    assert t.call("POST", "/tokens", {"name": "ci\u200b", "role": "viewer"}).status_code == 422
    r = t.post("/destinations", {"name": "\ufeffbackups", "kind": "s3", "url": "s3://b/x", "credentials": KEYS})
    assert r.status_code == 422
    r = t.post("/projects", {"name": "prod\u2066", "gcp_project_id": "acme-prod",
                             "service_account_key": _service_account_key()})
    assert r.status_code == 422
    assert t.call("GET", "").get_json()["name"] == "Acme"


def test_destination_urls_carrying_secrets_are_refused_without_echoing_them(tenant) -> None:
    t = tenant()
    for url in ("s3://b/x?X-Amz-Credential=AKIDLEAK&X-Amz-Signature=deadbeefsig", "s3://AKIDLEAK:deadbeefsig@b/x",
                "s3://b/x#deadbeefsig"):
        r = t.post("/destinations", {"name": "d", "kind": "s3", "url": url, "credentials": KEYS})
        message = _one_line_422(r)
        assert "AKIDLEAK" not in message and "deadbeefsig" not in message


# --- item 18: local folders stay under their root --------------------------------------------------


def test_local_destinations_need_a_configured_root(tenant, tmp_path) -> None:
    t = tenant(allow_local_storage=True)
    r = t.post("/destinations", {"name": "here", "kind": "local", "url": (tmp_path / "d").as_uri()})
    assert "FIREBACKUP_LOCAL_STORAGE_ROOT" in _one_line_422(r)


def test_local_destinations_cannot_leave_the_root_by_path_or_symlink(tenant, tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link-out")
    t = tenant(allow_local_storage=True, local_storage_root=str(root))
    for url in (outside.as_uri(), f"file://{root}/../outside", (root / "link-out").as_uri(), "file:///etc"):
        _one_line_422(t.post("/destinations", {"name": "d", "kind": "local", "url": url}))
    # Made inside, then swapped for a symlink that leads out: refused when opened, nothing written outside.
    r = t.post("/destinations", {"name": "d", "kind": "local", "url": (root / "dest").as_uri()})
    assert r.status_code == 201, r.get_json()
    os.symlink(outside, root / "dest")
    out = _test(t, r.get_json()["id"])
    assert out["ok"] is False and out["message"].startswith("could not open the destination: local folders must be")
    assert list(outside.iterdir()) == []
