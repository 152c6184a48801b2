"""The fetch connects only to addresses it checked (no DNS rebinding), refuses IPv4 hidden in
IPv6, and ends every download by its total deadline, name lookup included. Real sockets on 127.0.0.1; the DNS is an
injected resolver function, the one thing a test cannot get from a real server."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from api.services.fetch import FetchError, FetchPolicy, PinnedClient, check_host, fetch_image, refusal
from tests.api.services.net_servers import LoopbackServer

JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 200
PUBLIC = "93.184.215.14"
"""A public address; nothing answers it from the test machine, which is fine: the point is that
the fetch connects to it (and nowhere else), not that it gets an image."""


class RebindingResolver:
    """A DNS server that answers a public address first and 127.0.0.1 afterwards."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    def __call__(self, host: str, port: int) -> list[str]:
        if host != self.name:
            return [host]  # literal addresses resolve to themselves
        self.calls += 1
        return [PUBLIC] if self.calls == 1 else ["127.0.0.1"]


@pytest.fixture
def loopback() -> Iterator[LoopbackServer]:
    server = LoopbackServer(JPEG)
    yield server
    server.close()


def policy(**overrides: object) -> FetchPolicy:
    values: dict[str, object] = {
        "max_bytes": 100_000,
        "connect_timeout_s": 0.3,
        "read_timeout_s": 1.0,
        "retries": 2,
        "backoff_s": 0.01,
        "deadline_s": 5.0,
    }
    values.update(overrides)
    return FetchPolicy(**values)  # type: ignore[arg-type]


def test_dns_rebinding_never_reaches_loopback(loopback: LoopbackServer) -> None:
    resolver = RebindingResolver("rebind.test")
    with pytest.raises(FetchError) as caught:
        fetch_image(loopback.url(host="rebind.test"), policy(resolver=resolver))
    # The check's public answer was pinned and connected to (it does not answer here); the retry
    # re-checked the name, got 127.0.0.1 and refused it. The loopback server saw nobody.
    assert caught.value.code == "url_forbidden"
    assert resolver.calls == 2
    time.sleep(0.2)
    assert loopback.connections == 0


def test_dns_rebinding_through_a_redirect_never_reaches_loopback(loopback: LoopbackServer) -> None:
    resolver = RebindingResolver("rebind.test")
    redirector = LoopbackServer(
        b"", status="302 Found", headers={"Location": loopback.url(host="rebind.test")}
    )
    try:
        # The redirector is a trusted internal host; where it redirects to is checked as usual.
        trusted = frozenset({f"127.0.0.1:{redirector.port}"})
        with pytest.raises(FetchError) as caught:
            fetch_image(redirector.url(), policy(resolver=resolver, trusted_hosts=trusted))
        assert caught.value.code == "url_forbidden"
        assert redirector.connections >= 2  # the first attempt and the retry both started there
    finally:
        redirector.close()
    time.sleep(0.2)
    assert loopback.connections == 0


def test_pinned_address_is_used_with_the_original_host_header(loopback: LoopbackServer) -> None:
    resolver = RebindingResolver("unused")  # "images.test" is not its name: resolves to itself...

    def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"] if host == "images.test" else resolver(host, port)

    data = fetch_image(loopback.url(host="images.test"), policy(resolver=resolve, allow_private=True))
    assert data == JPEG
    assert loopback.hosts == [f"images.test:{loopback.port}"]


def test_the_transport_never_resolves_a_name_itself(loopback: LoopbackServer) -> None:
    # A client used outside fetch_image has no pins: it refuses to connect rather than resolve.
    with PinnedClient(policy()) as client, pytest.raises(httpx.ConnectError, match="not checked"):
        client.get(loopback.url())
    assert loopback.connections == 0


def test_a_plain_httpx_client_is_refused() -> None:
    with httpx.Client() as client, pytest.raises(TypeError):
        fetch_image("http://example.com/a.jpg", policy(), client)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "address",
    [
        "::7f00:1",  # IPv4-compatible ::127.0.0.1
        "::a00:1",  # IPv4-compatible ::10.0.0.1
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of the metadata address
        "64:ff9b:1::5db8:d70e",  # local-use NAT64, whatever it embeds
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
        "::1",
        "fe80::1",
        "fc00::1",
        "127.0.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "224.0.0.1",
    ],
)
def test_addresses_that_hide_a_private_one_are_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is not None
    with pytest.raises(FetchError) as caught:
        check_host("host.test", 80, allow_private=False, resolver=lambda h, p: [address])
    assert caught.value.code == "url_forbidden"


@pytest.mark.parametrize(
    "address",
    [PUBLIC, "2606:4700::6810:84e5", "::ffff:93.184.215.14", "64:ff9b::5db8:d70e", "2002:5db8:d70e::1"],
)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None
    (pinned,) = check_host("host.test", 80, allow_private=False, resolver=lambda h, p: [address])
    assert ipaddress.ip_address(pinned) in (ipaddress.ip_address(address), ipaddress.ip_address(PUBLIC))


def test_one_private_answer_among_public_ones_is_refused() -> None:
    with pytest.raises(FetchError):
        check_host("host.test", 80, allow_private=False, resolver=lambda h, p: [PUBLIC, "10.1.2.3"])


def test_a_trickling_server_is_cut_off_by_the_total_deadline() -> None:
    # One byte every 0.2 s never trips the 1 s read timeout; only the total deadline ends it.
    trickle = LoopbackServer(JPEG, trickle_s=0.2)
    try:
        start = time.monotonic()
        with pytest.raises(FetchError) as caught:
            fetch_image(trickle.url(), policy(allow_private=True, deadline_s=1.5, retries=3))
        elapsed = time.monotonic() - start
    finally:
        trickle.close()
    assert caught.value.code == "url_timeout"
    assert "deadline" in caught.value.message
    assert 1.4 <= elapsed < 2.5, elapsed
    assert trickle.connections == 1  # no retry was started after the deadline had passed


class StuckResolver:
    """A DNS server that never answers (until the test lets it): the lookup blocks its thread."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.release = threading.Event()
        self.answered = threading.Event()

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.set()
        self.release.wait(60)
        self.answered.set()
        return ["127.0.0.1"]


def test_a_resolver_that_never_answers_is_given_up_on_at_the_deadline(loopback: LoopbackServer) -> None:
    resolver = StuckResolver()
    try:
        with pytest.raises(FetchError) as caught:
            fetch_image(
                loopback.url(host="stuck.test"),
                policy(resolver=resolver, allow_private=True, deadline_s=1.0, retries=3),
            )
        # The fetch returned while the lookup was still blocked: it did not wait for the resolver.
        assert resolver.asked.is_set() and not resolver.answered.is_set()
    finally:
        resolver.release.set()
    assert caught.value.code == "url_timeout"
    assert "deadline" in caught.value.message
    assert loopback.connections == 0  # and nothing was fetched once the answer came late


def test_lookups_stuck_on_one_name_leave_the_caller_threads_free(loopback: LoopbackServer) -> None:
    resolver = StuckResolver()
    outcomes: list[str] = []

    def fetch_stuck() -> None:
        try:
            fetch_image(loopback.url(host="stuck.test"), policy(resolver=resolver, deadline_s=1.0))
        except FetchError as exc:
            outcomes.append(exc.code)

    callers = [threading.Thread(target=fetch_stuck) for _ in range(8)]
    try:
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(30)
        # Every caller's thread came back with its error while the lookups were still blocked.
        assert not any(caller.is_alive() for caller in callers)
        assert not resolver.answered.is_set()
    finally:
        resolver.release.set()
    assert outcomes == ["url_timeout"] * 8
