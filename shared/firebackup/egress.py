"""The one egress guard: a call to a host a tenant chose never reaches the platform's own network.

Tenants name hosts: a destination's endpoint_url, a webhook URL, the token endpoint of a
service-account key. Without a guard each is a server-side request forgery: the metadata server
(169.254.169.254, metadata.google.internal) hands out the platform's tokens, and loopback or VPC
addresses reach services that trust their network. EgressGuard refuses, at creation and again
when the call is made:

- schemes other than https (http only with allow_http, for development);
- user:password@ in a URL, and the metadata server's and other internal names;
- every address that is not globally routable unicast: loopback, link-local, private (RFC 1918,
  100.64/10, fc00::/7), unspecified, multicast, reserved, documentation and benchmark ranges, and
  IPv6 forms carrying such an IPv4 address (mapped, compatible, 6to4, NAT64, Teredo);
- names that resolve to any of those, every resolved address checked. Spellings such as
  2130706433, 0x7f.1 or 0177.0.0.1 go through getaddrinfo like any name and are refused by the
  address they resolve to.

DNS rebinding: a name checked at creation may resolve elsewhere later. For calls made with
requests, `EgressGuard.session()` checks the peer of every connection after it is made and before
a byte is sent. boto3 and google-cloud-storage make their own connections: their endpoints are
checked each time a destination is opened (services/storage_opener.py states the window left).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from requests import PreparedRequest, Response, Session
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from firebackup.errors import EgressRefused

Resolver = Callable[[str, int], Sequence[str]]
"""(host, port) -> every address the name resolves to; raises OSError when it resolves to none."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
# Key files issued before 2019 name the older spelling of the same endpoint.
_GOOGLE_TOKEN_URIS = frozenset({GOOGLE_TOKEN_URI, "https://accounts.google.com/o/oauth2/token"})
GOOGLE_UNIVERSE_DOMAIN = "googleapis.com"

_INTERNAL_NAMES = frozenset({"metadata", "metadata.goog", "metadata.google.internal", "localhost"})
_INTERNAL_SUFFIXES = (".internal", ".localhost")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def system_resolver(host: str, port: int) -> list[str]:
    """Every address getaddrinfo gives for host (numeric spellings of an address included)."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def address_refusal(address: str) -> str | None:
    """Why a call to `address` is refused, or None for a globally routable unicast address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone ("%eth0") names no address
    except ValueError:
        return "not an IP address"
    for candidate in (*_embedded_ipv4(ip), ip):  # the IPv4 inside first: it names the reason best
        reason = _refusal(candidate)
        if reason:
            return reason
    return None


def _refusal(ip: IPAddress) -> str | None:
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (the metadata server's range)"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private or ip.is_reserved or not ip.is_global:
        return "a private or reserved address"
    return None


def _embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address reaches: mapped, compatible, NAT64, 6to4, Teredo."""
    if isinstance(ip, ipaddress.IPv4Address):
        return []
    out = [a for a in (ip.ipv4_mapped, ip.sixtofour) if a is not None]
    if ip.teredo:
        out.append(ip.teredo[1])
    if int(ip) >> 32 == 0 or ip in _NAT64:  # ::a.b.c.d and 64:ff9b::a.b.c.d carry it in the low bits
        out.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return out


def check_service_account_key(key: Mapping[str, Any]) -> None:
    """Refuse a service-account key whose token_uri or universe_domain is not Google's own.

    google-auth posts a signed assertion to the key's token_uri: a tenant-chosen one turns every
    token refresh into a request from the platform to wherever it points.
    """
    token_uri = key.get("token_uri")
    if token_uri is not None and token_uri not in _GOOGLE_TOKEN_URIS:
        raise EgressRefused(f"the service-account key's token_uri is not Google's token endpoint ({GOOGLE_TOKEN_URI});"
                            " upload the key file as Google issued it")
    universe = key.get("universe_domain")
    if universe is not None and universe != GOOGLE_UNIVERSE_DOMAIN:
        raise EgressRefused(f"the service-account key's universe_domain is not {GOOGLE_UNIVERSE_DOMAIN};"
                            " upload the key file as Google issued it")


def google_key_info(key: Mapping[str, Any]) -> dict[str, Any]:
    """The key for google-auth, checked, with Google's token endpoint pinned whatever the key says."""
    check_service_account_key(key)
    return {**key, "token_uri": GOOGLE_TOKEN_URI}


@dataclass(frozen=True)
class EgressGuard:
    """Checks URLs and connections to tenant-chosen hosts; built once from Settings, shared freely."""

    # Development only: local emulators on loopback or a private network, reached over plain http.
    allow_private: bool = False
    allow_http: bool = False
    resolver: Resolver = field(default=system_resolver, compare=False)
    # What a session's call waits at most (connect, read) when the caller sets no timeout.
    timeout: tuple[float, float] = (5.0, 10.0)

    def check_url(self, url: str, *, what: str = "URL") -> None:
        """Raise EgressRefused (one line naming `what`) unless url may be called now.

        Resolves the host and checks every address it resolves to.
        """
        host, port = self.check_shape(url, what=what)
        if self.allow_private:
            return
        try:
            addresses = list(self.resolver(host, port))
        except (OSError, UnicodeError):
            addresses = []
        if not addresses:
            raise EgressRefused(f"{what} host {host} does not resolve; check the name")
        for address in addresses:
            self.check_address(address, host, what=what)

    def check_shape(self, url: str, *, what: str = "URL") -> tuple[str, int]:
        """(host, port) of url after every check that needs no DNS: scheme, credentials, names, IP literals."""
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError:
            raise EgressRefused(f"{what} is not a valid URL; use https://host[:port]/path") from None
        scheme = parts.scheme.lower()
        if scheme != "https" and not (scheme == "http" and self.allow_http):
            raise EgressRefused(f"{what} must use https://")
        if "@" in parts.netloc:
            raise EgressRefused(f"{what} must not contain credentials (user:password@); send them separately")
        if not host:
            raise EgressRefused(f"{what} has no host; use https://host[:port]/path")
        host = host.rstrip(".")
        if not host.isascii():
            raise EgressRefused(f"{what} host must be written in ASCII (its xn-- form)")
        if not self.allow_private:
            if host in _INTERNAL_NAMES or host.endswith(_INTERNAL_SUFFIXES):
                raise EgressRefused(f"{what} host {host} is an internal name; use a public endpoint")
            if _is_ip(host):
                self.check_address(host, host, what=what)
        return host, port or (443 if scheme == "https" else 80)

    def check_address(self, address: str, host: str, *, what: str = "URL") -> None:
        """Raise EgressRefused if `host` (as resolved or connected) is `address` and that is refused."""
        if self.allow_private:
            return
        reason = address_refusal(address)
        if reason:
            shown = host if host == address else f"{host} ({address})"
            raise EgressRefused(f"{what} host {shown} is {reason}; use a public endpoint")

    def session(self) -> Session:
        """A requests Session whose every connection, redirects included, is checked after connect.

        No proxies or .netrc from the environment, one try, and self.timeout for calls that set none.
        Raises EgressRefused (not a requests exception) for a refused URL or peer.
        """
        s = Session()
        s.trust_env = False  # the server's proxies and .netrc credentials are not for tenant hosts
        adapter = _GuardedAdapter(self)
        s.mount("https://", adapter)
        s.mount("http://", adapter)
        return s


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_peer(guard: EgressGuard, sock: socket.socket, host: str) -> None:
    """The connected peer, not what DNS said a moment ago: closes the socket before anything is sent."""
    try:
        guard.check_address(str(sock.getpeername()[0]), host)
    except EgressRefused:
        sock.close()
        raise


def _pool_classes(guard: EgressGuard) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 pools whose connections check their peer (urllib3 builds connections from a class)."""

    class CheckedConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            _check_peer(guard, sock, self.host)
            return sock

    class CheckedTLSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()  # the TLS handshake comes after: nothing sent yet
            _check_peer(guard, sock, self.host)
            return sock

    class CheckedPool(HTTPConnectionPool):
        ConnectionCls = CheckedConnection

    class CheckedTLSPool(HTTPSConnectionPool):
        ConnectionCls = CheckedTLSConnection

    return {"http": CheckedPool, "https": CheckedTLSPool}


class _GuardedAdapter(HTTPAdapter):
    """requests' transport with the guard in front of every request and inside every connection."""

    def __init__(self, guard: EgressGuard) -> None:
        self._guard = guard  # before super().__init__, which builds the pool manager
        super().__init__(max_retries=0)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self._guard)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        # Through a proxy the peer is the proxy: the guard could not see where the call goes.
        raise EgressRefused("calls to tenant hosts do not go through a proxy")

    def send(self, request: PreparedRequest, stream: bool = False, timeout: Any = None, verify: Any = True,
             cert: Any = None, proxies: Mapping[str, str] | None = None) -> Response:
        self._guard.check_shape(request.url or "")
        return super().send(request, stream=stream, timeout=self._guard.timeout if timeout is None else timeout,
                            verify=verify, cert=cert, proxies=dict(proxies or {}))
