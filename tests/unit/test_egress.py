"""The egress guard: which hosts a tenant-chosen URL may reach, decided without sending anything.

Names are resolved by a table here (a Resolver, as EgressGuard takes one); numeric spellings of an
address go through the system's getaddrinfo, which answers them without asking DNS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from firebackup.egress import (GOOGLE_TOKEN_URI, EgressGuard, address_refusal, check_service_account_key,
                               google_key_info)
from firebackup.errors import EgressRefused

PUBLIC = "93.184.216.34"


def table(names: Mapping[str, Sequence[str]]):
    """A resolver answering from `names`; any other name does not resolve."""

    def resolve(host: str, port: int) -> Sequence[str]:
        if host not in names:
            raise OSError(f"{host} does not resolve")
        return names[host]

    return resolve


def never(host: str, port: int) -> Sequence[str]:
    raise AssertionError(f"{host} should have been refused before resolving it")


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.9.9.9", "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.169.254",
    "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "198.18.0.1", "192.0.2.1",
    "::1", "::", "fe80::1", "fe80::1%eth0", "fc00::1", "fd12:3456::1", "ff02::1",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "::127.0.0.1", "64:ff9b::a9fe:a9fe",
    "2002:a9fe:a9fe::1", "2002:7f00:1::", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
])
def test_every_address_that_is_not_public_unicast_is_refused(address: str) -> None:
    assert address_refusal(address) is not None


@pytest.mark.parametrize("address", [PUBLIC, "1.1.1.1", "2606:4700::1111", "2a00:1450:4001:80b::200e"])
def test_public_unicast_addresses_pass(address: str) -> None:
    assert address_refusal(address) is None


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/", "https://169.254.169.254/latest/meta-data/", "https://[::1]:9000/",
    "https://[::ffff:169.254.169.254]/", "https://[::ffff:7f00:1]/",
    # Other spellings of 127.0.0.1 and 0.0.0.0 that getaddrinfo accepts: decimal, hex, octal, short.
    "https://2130706433/", "https://0x7f000001/", "https://0177.0.0.1/", "https://127.1/", "https://0x7f.1/",
    "https://0/",
])
def test_addresses_and_their_numeric_spellings_are_refused(url: str) -> None:
    with pytest.raises(EgressRefused) as e:
        EgressGuard().check_url(url, what="endpoint_url")
    assert str(e.value).startswith("endpoint_url host ") and "\n" not in str(e.value)


@pytest.mark.parametrize("url", [
    "https://metadata.google.internal/computeMetadata/v1/", "https://METADATA.google.internal./",
    "https://metadata/", "https://metadata.goog/", "https://db.corp.internal/", "https://localhost:9000/",
    "https://api.localhost/",
])
def test_internal_names_are_refused_without_resolving_them(url: str) -> None:
    with pytest.raises(EgressRefused, match="internal name"):
        EgressGuard(resolver=never).check_url(url)


def test_a_name_is_refused_if_any_address_it_resolves_to_is_refused() -> None:
    guard = EgressGuard(resolver=table({"mixed.example": [PUBLIC, "10.1.2.3"], "ok.example": [PUBLIC],
                                        "v6.example": ["::ffff:127.0.0.1"]}))
    guard.check_url("https://ok.example/")
    for host in ("mixed.example", "v6.example"):
        with pytest.raises(EgressRefused, match=host):
            guard.check_url(f"https://{host}/")


def test_a_name_that_does_not_resolve_is_refused_since_nothing_can_be_checked() -> None:
    with pytest.raises(EgressRefused, match="does not resolve"):
        EgressGuard(resolver=table({})).check_url("https://nowhere.example/")


@pytest.mark.parametrize("url, reason", [
    ("http://ok.example/", "must use https"),
    ("ftp://ok.example/", "must use https"),
    ("https://user:pw@ok.example/", "credentials"),
    ("https:///path-only", "no host"),
    ("https://[::1/", "not a valid URL"),
    ("https://ok.example:99999/", "not a valid URL"),
    ("https://bücher.example/", "ASCII"),
])
def test_urls_of_the_wrong_shape_are_refused_in_one_line(url: str, reason: str) -> None:
    with pytest.raises(EgressRefused, match=reason) as e:
        EgressGuard(resolver=table({"ok.example": [PUBLIC]})).check_url(url)
    assert "\n" not in str(e.value)


def test_the_development_switches_let_loopback_and_plain_http_through() -> None:
    EgressGuard(allow_private=True, allow_http=True, resolver=never).check_url("http://127.0.0.1:9000/")
    with pytest.raises(EgressRefused, match="https"):
        EgressGuard(allow_private=True, resolver=never).check_url("http://127.0.0.1:9000/")
    EgressGuard(allow_http=True, resolver=table({"ok.example": [PUBLIC]})).check_url("http://ok.example/")


def test_a_session_ignores_the_environments_proxies_and_refuses_a_proxy_it_is_given(monkeypatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    session = EgressGuard().session()
    assert session.trust_env is False
    session.proxies = {"https": "http://proxy.example:3128"}
    with pytest.raises(EgressRefused, match="proxy"):
        session.get(f"https://{PUBLIC}/")


def test_a_session_refuses_an_internal_name_or_address_before_connecting() -> None:
    session = EgressGuard().session()
    for url in ("https://metadata.google.internal/", "https://169.254.169.254/", "http://93.184.216.34/"):
        with pytest.raises(EgressRefused):
            session.get(url)


KEY = {"type": "service_account", "client_email": "b@p.iam.gserviceaccount.com", "private_key": "k"}


@pytest.mark.parametrize("extra", [
    {"token_uri": "https://attacker.example/token"},
    {"token_uri": "http://169.254.169.254/computeMetadata/v1/"},
    {"token_uri": "https://oauth2.googleapis.com.attacker.example/token"},
    {"universe_domain": "attacker.example"},
])
def test_a_service_account_key_may_only_use_googles_token_endpoint(extra: dict[str, str]) -> None:
    with pytest.raises(EgressRefused, match="upload the key file as Google issued it"):
        check_service_account_key({**KEY, **extra})


def test_googles_token_endpoint_is_pinned_whatever_spelling_the_key_carries() -> None:
    for extra in ({}, {"token_uri": GOOGLE_TOKEN_URI}, {"token_uri": "https://accounts.google.com/o/oauth2/token"},
                  {"universe_domain": "googleapis.com"}):
        assert google_key_info({**KEY, **extra})["token_uri"] == GOOGLE_TOKEN_URI
