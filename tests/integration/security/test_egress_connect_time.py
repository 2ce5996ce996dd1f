"""The egress guard's session checks the address it actually connected to (DNS rebinding), with real sockets.

A name that resolved to a public address when it was checked (the creation check: a resolver
answering 93.184.216.34 here) and to 127.0.0.1 when the call is made (the system resolver, given
2130706433, the decimal spelling of 127.0.0.1) must not get a single byte of the request.
"""

from __future__ import annotations

import pytest
import requests

from firebackup.egress import EgressGuard
from firebackup.errors import EgressRefused

pytestmark = pytest.mark.integration

OK = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def public(host: str, port: int) -> list[str]:
    return ["93.184.216.34"]


def test_a_name_that_rebinds_to_loopback_after_its_check_gets_no_byte_of_the_request(listener) -> None:
    internal = listener(OK)
    guard = EgressGuard(allow_http=True, resolver=public)
    url = f"http://2130706433:{internal.port}/hook"
    guard.check_url(url)  # at creation it looked public
    with pytest.raises(EgressRefused, match=r"2130706433 \(127\.0\.0\.1\) is a loopback address"):
        guard.session().post(url, data=b'{"event": "backup.completed", "secret": "s"}')
    assert internal.connections() == 1 and internal.received_when_closed() == b""


def test_the_same_call_reaches_the_listener_when_development_settings_allow_private_hosts(listener) -> None:
    internal = listener(OK)
    session = EgressGuard(allow_private=True, allow_http=True).session()
    r = session.post(f"http://2130706433:{internal.port}/hook", data=b"{}")
    assert r.status_code == 204 and internal.received_when_closed().startswith(b"POST /hook ")


@pytest.mark.timeout(15)
def test_a_call_that_sets_no_timeout_gets_the_guards_and_a_silent_host_releases_it(listener) -> None:
    stalled = listener(answer=None)
    session = EgressGuard(allow_private=True, allow_http=True, timeout=(1.0, 1.0)).session()
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.get(stalled.url)
    assert stalled.connections() == 1  # one try: no retry behind the caller's back


def test_a_webhook_delivery_reads_the_same_for_an_open_and_a_closed_internal_port(listener) -> None:
    import socket

    from firebackup.services.webhooks import guarded_post

    open_port = listener(OK)
    with socket.socket() as s:  # a port nothing listens on: bound, then released
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    post = guarded_post(EgressGuard(allow_http=True, resolver=public))
    lines = []
    for port in (open_port.port, closed):
        with pytest.raises(OSError) as e:
            post(f"http://2130706433:{port}/hook", b'{"event": "backup.failed"}', {})
        lines.append(str(e.value))
    assert lines[0] == lines[1] == "the receiver could not be reached"
    assert open_port.received_when_closed() == b""
