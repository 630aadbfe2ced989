"""The receiver's socket limits, probed as an attacker would over real sockets on 127.0.0.1:
oversize headers, half-sent requests, idle keep-alive connections, too many connections."""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from archiver.listeners import FD_RESERVE, fit_open_files, make_servers
from core.config import Settings
from core.errors import ConfigError
from receiver.app import create_app
from tests.conftest import make_settings
from tests.servers import Listening, wait_until
from tests.test_receiver import STORY, signed

POST = b"POST /webhooks/instagram HTTP/1.1\r\nHost: x\r\n"
TIMEOUT = 0.5  # REQUEST_TIMEOUT_SECONDS here: slow requests are cut after half a second
HEADER_CAP = 8 * 1024


def limited(sqlite_url: str, redis_url: str, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "max_header_bytes": HEADER_CAP,
        "request_timeout_seconds": TIMEOUT,
        "keepalive_timeout_seconds": 1,
    }
    return make_settings(sqlite_url, redis_url, **(base | overrides))


@pytest.fixture
def running(sqlite_url: str, redis_url: str) -> Iterator[Listening]:
    settings = limited(sqlite_url, redis_url)
    with Listening(create_app(settings), settings) as servers:
        yield servers


def connect(servers: Listening) -> socket.socket:
    return socket.create_connection(("127.0.0.1", servers.settings.port), timeout=5)


def until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset counts as closed); fails the test
    if the connection is still open after the socket's timeout."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open; it sent {received[:80]!r}")
    return received


def send_quietly(sock: socket.socket, data: bytes) -> None:
    """Send until done or until the server hangs up (what a refused sender sees)."""
    with contextlib.suppress(OSError):
        sock.sendall(data)


def deliver(servers: Listening) -> httpx.Response:
    body = json.dumps(STORY).encode()
    with httpx.Client(base_url=servers.url, timeout=5) as client:
        return client.post("/webhooks/instagram", content=body, headers=signed(body))


def test_a_header_over_the_cap_gets_431(running: Listening) -> None:
    """Headers one KiB over MAX_HEADER_BYTES: 431 and the connection closed."""
    with connect(running) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (HEADER_CAP + 1024))
        answer = until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert deliver(running).status_code == 200


def test_a_huge_header_is_cut_quickly_while_a_delivery_is_served(running: Listening) -> None:
    """A 1 MiB header is refused or cut within a second; a genuine delivery sent meanwhile on
    another connection is stored within a second."""
    with connect(running) as sock:
        sock.sendall(POST + b"X-Big: ")
        sender = threading.Thread(target=send_quietly, args=(sock, b"a" * (1 << 20)))
        started = time.monotonic()
        sender.start()
        delivery = deliver(running)
        answer = until_closed(sock)
        cut_after = time.monotonic() - started
        sender.join(timeout=5)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ")
    assert cut_after < 1.0
    assert delivery.status_code == 200
    assert delivery.elapsed.total_seconds() < 1.0


@pytest.mark.parametrize(
    ("sent", "answer"),
    [
        (b"", b""),  # a connection that never says anything is just closed
        (POST + b"Content-Le", b"HTTP/1.1 408 "),
        (POST + b"Content-Length: 100\r\n\r\n{", b"HTTP/1.1 408 "),
    ],
    ids=["nothing", "half-sent headers", "half-sent body"],
)  # fmt: skip
def test_a_half_sent_request_is_closed_by_the_timeout(
    running: Listening, sent: bytes, answer: bytes
) -> None:
    """Headers or body that stop arriving: 408 (or a plain close) after REQUEST_TIMEOUT_SECONDS."""
    with connect(running) as sock:
        started = time.monotonic()
        sock.sendall(sent)
        received = until_closed(sock)
        waited = time.monotonic() - started
    assert received.startswith(answer) if answer else received == b""
    assert TIMEOUT * 0.8 <= waited < TIMEOUT + 1.5


def test_a_trickled_request_is_still_cut_at_its_deadline(running: Listening) -> None:
    """A byte every tenth of a second does not extend the time a request gets."""
    with connect(running) as sock:
        started = time.monotonic()
        received = b""
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            send_quietly(sock, bytes([byte]))
            sock.settimeout(0.1)  # the pace of the trickle: wait that long for an answer
            try:
                received = sock.recv(65536)
                break  # answered (or closed): the trickle is over
            except TimeoutError:
                continue
        sock.settimeout(5)
        received += until_closed(sock)
        waited = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 408 ")
    assert TIMEOUT * 0.8 <= waited < TIMEOUT + 1.5


def read_response(sock: socket.socket) -> bytes:
    """One response to GET /healthz (body "ok") on a connection kept open."""
    received = b""
    while not received.endswith(b"\r\n\r\nok"):
        chunk = sock.recv(4096)
        assert chunk, f"closed after {received!r}"
        received += chunk
    return received


def test_an_idle_keep_alive_connection_is_closed(running: Listening) -> None:
    """Idle between requests, the connection lives KEEPALIVE_TIMEOUT_SECONDS (longer than the
    request timeout, which runs only while a request arrives), then it is closed."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with connect(running) as sock:
        sock.sendall(request)
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(TIMEOUT + 0.2)  # idle past the request timeout, within keep-alive
        sock.sendall(request)
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        idle_from = time.monotonic()
        assert until_closed(sock) == b""
        idle = time.monotonic() - idle_from
    assert 0.8 <= idle < 2.5


def test_connections_over_the_limit_get_503_and_the_service_recovers(
    sqlite_url: str, redis_url: str
) -> None:
    """MAX_CONNECTIONS held open by idle sockets: the next request gets 503; once the request
    timeout has closed them, requests are served again."""
    settings = limited(sqlite_url, redis_url, max_connections=4, request_timeout_seconds=1.5)
    with Listening(create_app(settings), settings) as servers:
        state = servers.servers[0].server_state
        idle = [connect(servers) for _ in range(4)]
        try:
            wait_until(lambda: len(state.connections) >= 4, timeout=5)
            with httpx.Client(base_url=servers.url, timeout=5) as client:
                refused = client.get("/healthz").status_code
            wait_until(lambda: not state.connections, timeout=5)
            recovered = deliver(servers).status_code
        finally:
            for sock in idle:
                sock.close()
    assert refused == 503
    assert recovered == 200


def test_the_open_file_limit_is_fitted_to_max_connections(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The soft open-file limit is raised to MAX_CONNECTIONS plus a reserve, up to the hard
    limit; past the hard limit a warning says what to change."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard == resource.RLIM_INFINITY or hard >= 600, "the test needs a hard limit >= 600"
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert fit_open_files(500) == 500 + FD_RESERVE
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 500 + FD_RESERVE
        assert "open-file limit" not in caplog.text
        if hard != resource.RLIM_INFINITY:
            assert fit_open_files(hard) == hard
            assert f"the open-file limit ({hard}) is below MAX_CONNECTIONS" in caplog.text
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize(
    ("name", "value"),
    [("max_header_bytes", 100), ("request_timeout_seconds", 0), ("keepalive_timeout_seconds", 0),
     ("max_connections", 1), ("metrics_port", 70000)],
)  # fmt: skip
def test_limits_out_of_range_are_refused_by_name(sqlite_url: str, name: str, value: int) -> None:
    """A limit out of its range stops the start with the variable's name."""
    with pytest.raises(ConfigError, match=name.upper()):
        make_settings(sqlite_url, None, **{name: value})


def test_the_ops_listener_may_not_take_the_webhook_port(sqlite_url: str) -> None:
    """METRICS_PORT equal to PORT on the same host is refused before anything listens."""
    settings = make_settings(sqlite_url, None, port=8123, metrics_port=8123)
    with pytest.raises(ConfigError, match="METRICS_PORT 8123 is also PORT"):
        make_servers(create_app(settings), settings)
