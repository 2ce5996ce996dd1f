"""The ID token verifier asks Firebase again (revoked? disabled?) once its short cache of a token runs out."""

from __future__ import annotations

import time
from typing import Any

import pytest

from firebackup.services.errors import Unauthenticated
from firebackup.services.ports import FirebaseIdTokenVerifier
from firebackup.settings import Settings
from firebackup.errors import UsageError


class CountingVerifier(FirebaseIdTokenVerifier):
    """Firebase's answer replaced by a script: each token's claims, or refused once `revoked`."""

    def __init__(self, **kw: Any) -> None:
        self.now = 1000.0
        super().__init__("demo-test", clock=lambda: self.now, **kw)
        self.asked: list[str] = []
        self.revoked: set[str] = set()

    def check(self, token: str) -> dict[str, Any]:
        self.asked.append(token)
        if token in self.revoked:
            raise Unauthenticated("this sign-in was revoked or the account is disabled; sign in again")
        return {"uid": "u-" + token, "exp": time.time() + 3600}


def test_a_verified_token_is_believed_for_the_cache_time_then_checked_again() -> None:
    v = CountingVerifier(cache_seconds=60)
    assert v.verify("t1")["uid"] == "u-t1"
    v.now += 59
    assert v.verify("t1")["uid"] == "u-t1"
    assert v.asked == ["t1"]
    v.revoked.add("t1")  # the user is disabled or signed out everywhere
    v.now += 2
    with pytest.raises(Unauthenticated):
        v.verify("t1")
    assert v.asked == ["t1", "t1"]


def test_a_refused_token_is_not_cached_so_every_call_asks_again() -> None:
    v = CountingVerifier(cache_seconds=60)
    v.revoked.add("bad")
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            v.verify("bad")
    assert v.asked == ["bad", "bad"]


def test_a_cache_time_of_zero_asks_firebase_on_every_call() -> None:
    v = CountingVerifier(cache_seconds=0)
    v.verify("t1")
    v.verify("t1")
    assert v.asked == ["t1", "t1"]


def test_the_cache_is_bounded_and_forgets_the_least_recently_used_token_first() -> None:
    v = CountingVerifier(cache_seconds=60, cache_size=2)
    for token in ("a", "b", "a", "c"):  # "a" was used after "b": "b" goes when "c" comes
        v.verify(token)
    v.asked.clear()
    for token in ("a", "c", "b"):
        v.verify(token)
    assert v.asked == ["b"]
    assert len(v._cache) == 2


def test_the_cache_keeps_a_hash_of_the_token_never_the_token_itself() -> None:
    v = CountingVerifier(cache_seconds=60)
    v.verify("secret-id-token")
    assert all("secret-id-token" not in key for key in v._cache)


def test_a_token_is_never_served_from_the_cache_past_its_own_expiry() -> None:
    class Expiring(CountingVerifier):
        def check(self, token: str) -> dict[str, Any]:
            self.asked.append(token)
            return {"uid": "u", "exp": time.time() + 5}

    v = Expiring(cache_seconds=60)
    v.verify("t")
    v.now += 10
    v.verify("t")
    assert v.asked == ["t", "t"]


def test_the_cache_time_comes_from_its_setting_and_zero_is_allowed_but_not_a_negative() -> None:
    assert Settings.from_env({}).id_token_cache_seconds == 60
    assert Settings.from_env({"FIREBACKUP_ID_TOKEN_CACHE_SECONDS": "0"}).id_token_cache_seconds == 0
    with pytest.raises(UsageError, match="FIREBACKUP_ID_TOKEN_CACHE_SECONDS"):
        Settings.from_env({"FIREBACKUP_ID_TOKEN_CACHE_SECONDS": "-1"})
    with pytest.raises(UsageError, match="FIREBACKUP_LOCAL_TICK_SECONDS"):
        Settings.from_env({"FIREBACKUP_LOCAL_TICK_SECONDS": "0"})  # zero stays refused where it means nothing


def test_the_composition_root_builds_the_verifier_from_the_settings() -> None:
    from firebackup import bootstrap

    settings = Settings(id_token_cache_seconds=7, auth_emulator_host="127.0.0.1:9099", master_key=bytes(32))
    ports = bootstrap.ports(settings)
    assert isinstance(ports.verifier, FirebaseIdTokenVerifier)
    assert ports.verifier.cache_seconds == 7 and ports.verifier.emulator_host == "127.0.0.1:9099"
