"""The sandbox's CONNECT proxy, over real sockets: what it lets through, what it refuses and why.

Destinations are real servers on 127.0.0.1 (allowed by listing ``127.0.0.1`` or ``localhost``
explicitly, which is exactly what the SSRF rule permits); names that must look public are given
addresses by an injected resolver, so no test depends on the internet or on /etc/hosts.
"""

from __future__ import annotations

import http.server
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backend.sandbox.proxy import AllowList, ConnectProxy, ProxyEvent, is_public
from tests.support import wait_for

TIMEOUT = 10.0


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the path and the headers it was given, one per line."""

    def do_GET(self) -> None:
        body = f"path={self.path}\n".encode() + b"".join(
            f"{name.lower()}: {value}\n".encode() for name, value in self.headers.items())
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet: the test output is for the tests."""


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def web_port() -> Iterator[int]:
    """A real HTTP server on 127.0.0.1."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(TIMEOUT)


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A real TCP echo server on 127.0.0.1: what a tunnel carries is not HTTP."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(TIMEOUT)


class Proxies:
    """Starts proxies on sockets under a temporary directory and records their events."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.events: list[ProxyEvent] = []
        self.started: list[ConnectProxy] = []

    def __call__(self, hosts: list[str], **options: object) -> ConnectProxy:
        proxy = ConnectProxy(hosts, self.events.append, **options)  # type: ignore[arg-type]
        proxy.start(self.directory / f"proxy{len(self.started)}.sock")
        self.started.append(proxy)
        return proxy

    def kinds(self) -> list[tuple[str, str, int]]:
        return [(e.kind, e.host, e.port) for e in self.events]


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[Proxies]:
    proxies = Proxies(tmp_path)
    yield proxies
    for proxy in proxies.started:
        proxy.close()
        assert proxy.active_threads == 0


def fixed_resolver(table: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    """A resolver that knows only ``table`` (and says so, like DNS would, for anything else)."""

    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"unknown name {host}")
        return table[host]

    return resolve


def dial(proxy: ConnectProxy) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    assert proxy.socket_path is not None
    try:
        sock.connect(str(proxy.socket_path))
    except OSError:
        sock.close()
        raise
    return sock


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def ask(proxy: ConnectProxy, request: str) -> bytes:
    """Send one request to the proxy and read its whole answer."""
    with dial(proxy) as sock:
        sock.sendall(request.encode())
        return read_all(sock)


def status_and_body(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body.decode()


def test_connect_tunnels_bytes_to_an_allowed_host(start_proxy: Proxies, echo_port: int) -> None:
    proxy = start_proxy(["127.0.0.1"], allowed_ports=[echo_port])
    with dial(proxy) as sock:
        sock.sendall(f"CONNECT 127.0.0.1:{echo_port} HTTP/1.1\r\nHost: 127.0.0.1:{echo_port}\r\n\r\n".encode())
        assert read_head(sock).startswith(b"HTTP/1.1 200 ")
        for message in (b"ping\n", b"\x00\x16\x03 not http at all"):
            sock.sendall(message)
            got = b""
            while len(got) < len(message):
                got += sock.recv(4096)
            assert got == message
    assert start_proxy.kinds() == [("connect", "127.0.0.1", echo_port)]
    assert start_proxy.events[0].reason == "IP address is listed"
    assert abs(start_proxy.events[0].ts - time.time()) < 60


def test_absolute_form_get_is_forwarded_in_origin_form(start_proxy: Proxies, web_port: int) -> None:
    proxy = start_proxy(["localhost"], allowed_ports=[web_port])
    answer = ask(proxy, f"GET http://LocalHost.:{web_port}/simple/pkg/?q=1 HTTP/1.1\r\n"
                        f"Host: localhost:{web_port}\r\nProxy-Connection: keep-alive\r\n"
                        "Proxy-Authorization: Basic c2VjcmV0\r\nAccept: */*\r\n\r\n")
    status, body = status_and_body(answer)
    assert status == 200
    assert "path=/simple/pkg/?q=1\n" in body
    assert "accept: */*\n" in body and "connection: close\n" in body
    assert "proxy-connection" not in body and "proxy-authorization" not in body
    assert start_proxy.kinds() == [("connect", "localhost", web_port)]


def test_an_unlisted_host_is_refused_with_403_without_being_looked_up(start_proxy: Proxies) -> None:
    looked_up: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return ["1.1.1.1"]

    proxy = start_proxy(["pypi.org"], resolver=resolver)
    status, body = status_and_body(ask(proxy, "CONNECT example.com:443 HTTP/1.1\r\n\r\n"))
    assert status == 403
    assert body == "proxy refused example.com:443: example.com is not on the allow-list\n"
    status, body = status_and_body(ask(proxy, "GET http://example.com/x HTTP/1.1\r\n\r\n"))
    assert (status, body.count("\n")) == (403, 1)
    assert start_proxy.kinds() == [("refused", "example.com", 443), ("refused", "example.com", 80)]
    assert start_proxy.events[0].reason == "example.com is not on the allow-list"
    assert looked_up == []


def test_a_wildcard_matches_subdomains_only() -> None:
    allow = AllowList(["*.Example.org"], resolver=fixed_resolver({
        "a.example.org": ["1.1.1.1"], "a.b.example.org": ["1.1.1.1"],
        "example.org": ["1.1.1.1"], "evil-example.org": ["1.1.1.1"], "aexample.org": ["1.1.1.1"]}))
    assert allow.check("a.example.org", 443).allowed
    assert allow.check("A.B.EXAMPLE.ORG.", 443).allowed
    for host in ("example.org", "evil-example.org", "aexample.org", "example.org.evil.net"):
        decision = allow.check(host, 443)
        assert not decision.allowed and decision.reason.endswith("is not on the allow-list"), host


def test_the_suffix_trick_is_refused_through_the_proxy(start_proxy: Proxies) -> None:
    proxy = start_proxy(["*.example.org"], resolver=fixed_resolver({"evil-example.org": ["1.1.1.1"]}))
    status, body = status_and_body(ask(proxy, "CONNECT evil-example.org:443 HTTP/1.1\r\n\r\n"))
    assert status == 403 and "evil-example.org is not on the allow-list" in body
    assert start_proxy.kinds() == [("refused", "evil-example.org", 443)]


def test_a_wildcard_name_pointing_at_loopback_is_refused_unless_listed(
        start_proxy: Proxies, web_port: int) -> None:
    table = {"internal.example.org": ["127.0.0.1"]}
    proxy = start_proxy(["*.example.org"], allowed_ports=[web_port], resolver=fixed_resolver(table))
    status, body = status_and_body(ask(proxy, f"GET http://internal.example.org:{web_port}/ HTTP/1.1\r\n\r\n"))
    assert status == 403
    assert "internal.example.org resolves to the non-public address 127.0.0.1" in body
    assert "list internal.example.org itself" in body

    listed = start_proxy(["*.example.org", "internal.example.org"], allowed_ports=[web_port],
                         resolver=fixed_resolver(table))
    status, body = status_and_body(ask(listed, f"GET http://internal.example.org:{web_port}/ok HTTP/1.1\r\n\r\n"))
    assert status == 200 and "path=/ok\n" in body
    assert f"host: internal.example.org:{web_port}\n" in body
    assert start_proxy.kinds() == [("refused", "internal.example.org", web_port),
                                   ("connect", "internal.example.org", web_port)]


def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    allow = AllowList(["*.example.org"], resolver=fixed_resolver({"mixed.example.org": ["1.1.1.1", "10.0.0.7"]}))
    decision = allow.check("mixed.example.org", 443)
    assert not decision.allowed and "10.0.0.7" in decision.reason


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.1", "10.1.2.3", "172.16.0.1", "192.168.1.1",
                                     "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1", "::1",
                                     "fe80::1", "fd00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1"])
def test_local_addresses_are_not_public(address: str) -> None:
    assert not is_public(address)


@pytest.mark.parametrize("address", ["1.1.1.1", "151.101.0.223", "2a04:4e42::223"])
def test_internet_addresses_are_public(address: str) -> None:
    assert is_public(address)


def test_ip_literals_are_refused_unless_listed(start_proxy: Proxies, web_port: int) -> None:
    proxy = start_proxy(["localhost", "::1"], allowed_ports=[web_port])
    status, body = status_and_body(ask(proxy, f"CONNECT 127.0.0.1:{web_port} HTTP/1.1\r\n\r\n"))
    assert status == 403 and "IP address 127.0.0.1 is not on the allow-list" in body
    assert proxy.allow.check("[::1]", web_port).allowed
    assert not proxy.allow.check("::2", web_port).allowed


def test_only_the_allowed_ports_are_reachable(start_proxy: Proxies) -> None:
    proxy = start_proxy(["localhost"])
    status, body = status_and_body(ask(proxy, "CONNECT localhost:22 HTTP/1.1\r\n\r\n"))
    assert status == 403 and "port 22 is not allowed (allowed: 80, 443)" in body
    assert start_proxy.kinds() == [("refused", "localhost", 22)]


def test_requests_the_proxy_does_not_speak_get_400(start_proxy: Proxies) -> None:
    proxy = start_proxy(["localhost"])
    for request in ("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "GET https://localhost/ HTTP/1.1\r\n\r\n",
                    "CONNECT localhost:99999 HTTP/1.1\r\n\r\n", "hello\r\n\r\n"):
        status, body = status_and_body(ask(proxy, request))
        assert status == 400 and body.count("\n") == 1, request
    assert [e.kind for e in start_proxy.events] == ["refused"] * 4


def test_an_unreachable_allowed_host_gets_502(start_proxy: Proxies) -> None:
    with socket.socket() as probe:  # a port nobody listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        proxy = start_proxy(["127.0.0.1"], allowed_ports=[port])
        status, body = status_and_body(ask(proxy, f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n"))
    assert status == 502 and f"could not reach 127.0.0.1:{port}" in body
    assert start_proxy.kinds() == [("refused", "127.0.0.1", port)]


def test_bad_allow_list_entries_are_refused_with_their_name() -> None:
    for entry in ("*", "*.org", "exa mple.com", "http://pypi.org", "pypi.org:443", ""):
        with pytest.raises(ValueError, match="is not a host name"):
            AllowList([entry])


def test_connections_beyond_the_limit_get_503(start_proxy: Proxies) -> None:
    proxy = start_proxy(["localhost"], max_connections=1)
    with dial(proxy) as first:
        wait_for(lambda: proxy.active_threads == 2, TIMEOUT, message="the first connection's thread")
        with dial(proxy) as second:  # answered at once, before it has said anything
            status, body = status_and_body(read_all(second))
        assert status == 503 and "limit 1" in body
        first.sendall(b"CONNECT localhost:22 HTTP/1.1\r\n\r\n")
        assert status_and_body(read_all(first))[0] == 403


def test_an_idle_client_is_dropped(start_proxy: Proxies) -> None:
    proxy = start_proxy(["localhost"], idle_timeout=0.3)
    with dial(proxy) as sock:
        started = time.monotonic()
        sock.sendall(b"CONNECT localhost:443 HTTP/1.1\r\n")  # and never the end of the head
        assert read_all(sock) == b""
        assert time.monotonic() - started < TIMEOUT
    wait_for(lambda: proxy.active_threads == 1, TIMEOUT, message="only the accept loop left")


def test_close_ends_every_connection_and_thread(start_proxy: Proxies, echo_port: int) -> None:
    proxy = start_proxy(["127.0.0.1"], allowed_ports=[echo_port])
    tunnel = dial(proxy)
    tunnel.sendall(f"CONNECT 127.0.0.1:{echo_port} HTTP/1.1\r\n\r\n".encode())
    assert read_head(tunnel).startswith(b"HTTP/1.1 200 ")
    silent = dial(proxy)
    wait_for(lambda: proxy.active_threads == 3, TIMEOUT, message="two connection threads")
    started = time.monotonic()
    proxy.close()
    assert time.monotonic() - started < 2.0
    assert proxy.active_threads == 0
    assert [t for t in threading.enumerate() if t.name.startswith("proxy-")] == []
    assert read_all(tunnel) == b"" and read_all(silent) == b""
    tunnel.close()
    silent.close()
    assert proxy.socket_path is not None and not proxy.socket_path.exists()
    with pytest.raises(OSError):
        dial(proxy)


def test_close_from_the_event_handler_returns_and_the_last_thread_cleans_up(
        tmp_path: Path, web_port: int) -> None:
    closed: list[float] = []
    proxy: ConnectProxy

    def on_event(event: ProxyEvent) -> None:
        started = time.monotonic()
        proxy.close(timeout=0.5)
        closed.append(time.monotonic() - started)

    proxy = ConnectProxy(["localhost"], on_event, allowed_ports=[web_port])
    proxy.start(tmp_path / "p.sock")
    # closed while deciding: the connection ends before anything is relayed
    assert ask(proxy, f"GET http://localhost:{web_port}/ HTTP/1.1\r\n\r\n") == b""
    wait_for(lambda: proxy.active_threads == 0, TIMEOUT, message="every thread ended")
    assert len(closed) == 1 and closed[0] < 2.0
    assert not (tmp_path / "p.sock").exists()


def test_start_replaces_a_stale_socket_but_not_a_file(tmp_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "stale.sock"))
    stale.close()
    with ConnectProxy(["localhost"]) as proxy:
        proxy.start(tmp_path / "stale.sock")
        assert (tmp_path / "stale.sock").stat().st_mode & 0o777 == 0o600
        assert ask(proxy, "CONNECT localhost:22 HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 403 ")
    (tmp_path / "file").write_text("mine")
    with pytest.raises(FileExistsError, match="is not a socket"):
        ConnectProxy(["localhost"]).start(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "mine"


INSIDE = """
socat TCP-LISTEN:8888,bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:"$SOCK" &
bridge=$!
tries=0
until socat -u /dev/null TCP:127.0.0.1:8888 2>/dev/null; do
  tries=$((tries + 1)); [ "$tries" -gt 500 ] && { echo "no listener"; exit 90; }
  sleep 0.02
done
echo "direct: $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1:$PORT/ ; echo " exit $?")"
echo "get: $(curl -sS --max-time 10 -x http://127.0.0.1:8888 http://127.0.0.1:$PORT/through-get | head -1)"
echo "tunnel: $(curl -sS --max-time 10 -p -x http://127.0.0.1:8888 http://127.0.0.1:$PORT/through-connect | head -1)"
echo "refused: $(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -x http://127.0.0.1:8888 http://pypi.org/)"
kill "$bridge"
"""


def test_a_sandbox_without_network_reaches_only_the_allow_list(
        start_proxy: Proxies, web_port: int, tmp_path: Path) -> None:
    sockdir = tmp_path / "sock"
    sockdir.mkdir()
    start_proxy.directory = sockdir
    proxy = start_proxy(["127.0.0.1"], allowed_ports=[web_port])
    assert proxy.socket_path is not None
    done = subprocess.run(
        ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
         "--bind", str(sockdir), str(sockdir), "--unshare-net", "--unshare-pid", "--die-with-parent",
         "--setenv", "SOCK", str(proxy.socket_path), "--setenv", "PORT", str(web_port),
         "sh", "-c", INSIDE],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert lines["direct"].startswith("000") and not lines["direct"].endswith(" exit 0"), lines
    assert lines["get"] == "path=/through-get"
    assert lines["tunnel"] == "path=/through-connect"
    assert lines["refused"] == "403"
    assert start_proxy.kinds() == [("connect", "127.0.0.1", web_port), ("connect", "127.0.0.1", web_port),
                                   ("refused", "pypi.org", 80)]
