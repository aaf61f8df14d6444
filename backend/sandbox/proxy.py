"""A small CONNECT proxy: the only way out for an agent sandboxed with ``--unshare-net``.

Setting ``sandbox_network: allow`` gives the sandbox a list of host names it may reach (package
registries for installs, for example). The sandbox has no network of its own, so the proxy listens
on a unix socket that is bound into the sandbox; inside, ``socat TCP-LISTEN:PORT,bind=127.0.0.1,fork
UNIX-CONNECT:SOCK`` turns it into ``http://127.0.0.1:PORT`` for ``HTTPS_PROXY``/``HTTP_PROXY``.

It speaks exactly two things: ``CONNECT host:port`` (HTTPS and anything tunnelled) and the
absolute-form ``GET http://host/...`` plain-HTTP clients send to a proxy. Every decision, allowed or
refused, is handed to ``on_event`` so it lands in the run's log with the host name.

Why the address check: an allowed *pattern* (``*.example.org``) says nothing about where its names
point, and anyone who controls a matching name can point it at 127.0.0.1 or a private network, so a
name that resolves to a loopback, private, link-local or otherwise non-global address is refused
unless the name itself is listed. The proxy connects to the very addresses it checked (no second
lookup an attacker could answer differently).

Threads, one per connection, bounded by ``max_connections``; every wait polls a stop pipe as
well, so ``close()`` ends them all within moments.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import math
import os
import re
import select
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

MAX_HEAD_BYTES = 16 * 1024
CHUNK = 64 * 1024
# Hop-by-hop headers of the client's request to the proxy; the proxy speaks its own to the server.
_HOP_HEADERS = {b"proxy-connection", b"proxy-authorization", b"connection", b"keep-alive", b"host"}
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


@dataclass(frozen=True)
class ProxyEvent:
    """One decision of the proxy, for the run's log: ``connect`` (let through) or ``refused``."""

    kind: Literal["connect", "refused"]
    host: str
    port: int
    reason: str
    ts: float


@dataclass(frozen=True)
class Decision:
    """What the allow-list says about one host and port; ``addresses`` are what to connect to."""

    allowed: bool
    reason: str
    addresses: tuple[str, ...] = ()


class ProxyError(Exception):
    """A request the proxy answers itself, with an HTTP status and a one-line reason."""

    def __init__(self, status: int, reason: str, host: str = "", port: int = 0) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.host = host
        self.port = port


def system_resolver(host: str, port: int) -> list[str]:
    """The host's own name resolution: every address of ``host``, in the order to try them."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def normalise_host(host: str) -> str:
    """Lower case, no brackets around IPv6, no trailing dot: the form names are compared in."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host[:-1] if host.endswith(".") else host


def ip_literal(host: str) -> IPAddress | None:
    """The address ``host`` spells, or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_host_name(host: str) -> bool:
    """Whether ``host`` is a plain DNS name (ASCII labels); anything else is refused unread."""
    return 0 < len(host) <= 253 and all(_LABEL.fullmatch(label) for label in host.split("."))


def is_public(address: str) -> bool:
    """Whether ``address`` is globally routable: not loopback, private, link-local, CGNAT, etc."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class AllowList:
    """Which hosts the sandbox may reach: exact names, ``*.suffix`` wildcards and IP literals.

    Names match case-insensitively and without a trailing dot; ``*.example.org`` matches any name
    ending in ``.example.org`` (``a.example.org``, ``a.b.example.org``) but not ``example.org``
    itself nor ``evil-example.org``.
    """

    def __init__(self, hosts: Iterable[str], ports: Iterable[int] = (80, 443),
                 resolver: Resolver | None = None) -> None:
        self.names: set[str] = set()
        self.suffixes: set[str] = set()
        self.addresses: set[IPAddress] = set()
        for entry in hosts:
            self.add(entry)
        self.ports = frozenset(int(port) for port in ports)
        self.resolver = resolver or system_resolver

    def add(self, entry: str) -> None:
        """Add one allow-list entry; a malformed one is refused with a sentence naming it."""
        host = normalise_host(entry)
        address = ip_literal(host)
        if address is not None:
            self.addresses.add(address)
        elif host.startswith("*.") and is_host_name(host[2:]) and "." in host[2:]:
            self.suffixes.add(host[1:])
        elif is_host_name(host):
            self.names.add(host)
        else:
            raise ValueError(f"{entry!r} is not a host name, a *.domain wildcard or an IP address")

    def check(self, raw_host: str, port: int) -> Decision:
        """Decide about one destination, resolving the name when the SSRF rule needs it."""
        host = normalise_host(raw_host)
        if port not in self.ports:
            allowed = ", ".join(str(p) for p in sorted(self.ports))
            return Decision(False, f"port {port} is not allowed (allowed: {allowed})")
        address = ip_literal(host)
        if address is not None:
            if address in self.addresses:
                return Decision(True, "IP address is listed", (str(address),))
            return Decision(False, f"IP address {host} is not on the allow-list")
        if not is_host_name(host):
            return Decision(False, "not a valid host name")
        explicit = host in self.names
        if not explicit and not any(host.endswith(suffix) for suffix in self.suffixes):
            return Decision(False, f"{host} is not on the allow-list")
        try:
            found = tuple(self.resolver(host, port))
        except (OSError, UnicodeError) as err:
            return Decision(False, f"{host} does not resolve ({err})")
        if not found:
            return Decision(False, f"{host} does not resolve")
        if explicit:
            return Decision(True, "host is listed", found)
        local = [a for a in found if not is_public(a)]
        if local:
            return Decision(False, f"{host} resolves to the non-public address {local[0]};"
                                   f" list {host} itself to allow it")
        return Decision(True, "host matches a wildcard", found)


@dataclass
class Request:
    """A parsed request head: where to, and for plain HTTP the head to send the server."""

    host: str
    port: int
    tunnel: bool
    head: bytes
    rest: bytes


def parse_authority(authority: str, default_port: int) -> tuple[str, int]:
    """``host:port`` (IPv6 in brackets) → host and port; a malformed one is a 400."""
    host, port_text = authority, ""
    if authority.startswith("["):
        host, _, after = authority[1:].partition("]")
        port_text = after[1:] if after.startswith(":") else after
    elif authority.count(":") == 1:
        host, _, port_text = authority.partition(":")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ProxyError(400, f"bad port in {authority!r}", host)
    return host, int(port_text)


def parse_request(data: bytes) -> Request:
    """The proxy's request: ``CONNECT host:port`` or an absolute-form ``http://`` request."""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ProxyError(400, "not an HTTP/1.x request line")
    method, target, version = parts
    if method == "CONNECT":
        host, port = parse_authority(target, 443)
        return Request(normalise_host(host), port, True, b"", rest)
    url = urlsplit(target)
    if url.scheme != "http" or not url.netloc:
        raise ProxyError(400, "only CONNECT and absolute http:// URLs go through this proxy")
    authority = url.netloc.rpartition("@")[2]  # user:password@ is for the server's eyes only
    host, port = parse_authority(authority, 80)
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    kept = [line for line in lines[1:] if line.split(b":", 1)[0].strip().lower() not in _HOP_HEADERS]
    out = [f"{method} {path} {version}".encode("latin-1"), b"Host: " + authority.encode("latin-1"),
           *kept, b"Connection: close"]
    return Request(normalise_host(host), port, False, b"\r\n".join(out) + b"\r\n\r\n", rest)


def ready(readers: list[socket.socket | int], writers: list[socket.socket], timeout: float | None
          ) -> tuple[set[int], set[int]]:
    """The descriptors among ``readers`` and ``writers`` ready within ``timeout`` seconds.

    poll, not select: the service may hold more than 1024 descriptors, which select cannot watch.
    """
    poller = select.poll()
    fds: dict[int, int] = {}
    for item in readers:
        fd = item if isinstance(item, int) else item.fileno()
        fds[fd] = fds.get(fd, 0) | select.POLLIN
    for sock in writers:
        fds[sock.fileno()] = fds.get(sock.fileno(), 0) | select.POLLOUT
    for fd, mask in fds.items():
        poller.register(fd, mask)
    events = poller.poll(None if timeout is None else max(0, math.ceil(timeout * 1000)))
    hangup = select.POLLHUP | select.POLLERR
    readable = {fd for fd, ev in events if ev & (select.POLLIN | hangup) and fds[fd] & select.POLLIN}
    writable = {fd for fd, ev in events if ev & (select.POLLOUT | hangup) and fds[fd] & select.POLLOUT}
    return readable, writable


def answer(status: int, reason: str) -> bytes:
    """A complete response the proxy gives itself: a status and a one-line body saying why."""
    title = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway", 503: "Service Unavailable",
             504: "Gateway Timeout"}.get(status, "Error")
    body = f"{reason}\n".encode()
    return (f"HTTP/1.1 {status} {title}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


class ConnectProxy:
    """The proxy on one unix socket: ``start(path)``, then ``close()``.

    ``allowed_ports`` defaults to 80 and 443; ``idle_timeout`` ends a connection (or a request
    head) with nothing moving either way; ``max_connections`` more are answered 503 at once.
    ``resolver`` (host, port) → addresses replaces the system's lookup (tests, a pinned DNS).
    """

    def __init__(self, allowed_hosts: Iterable[str], on_event: Callable[[ProxyEvent], None] | None = None,
                 *, allowed_ports: Iterable[int] = (80, 443), max_connections: int = 64,
                 idle_timeout: float = 120.0, connect_timeout: float = 10.0,
                 resolver: Resolver | None = None) -> None:
        self.allow = AllowList(allowed_hosts, allowed_ports, resolver)
        self.on_event = on_event
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.socket_path: Path | None = None
        self._listener: socket.socket | None = None
        self._stop_r, self._stop_w = -1, -1
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()  # running their target
        self._spawned: list[threading.Thread] = []  # started and maybe not yet exited: what to join
        self._sockets: set[socket.socket] = set()
        self._closed = False
        self._released = False

    def start(self, socket_path: Path) -> None:
        """Listen on ``socket_path`` (a stale socket there is replaced) and serve in threads."""
        if self._listener is not None or self._closed:
            raise RuntimeError("the proxy can be started once")
        socket_path = Path(socket_path)
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(socket_path.lstat().st_mode):
                raise FileExistsError(f"{socket_path} exists and is not a socket")
            socket_path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(socket_path))
            socket_path.chmod(0o600)  # the service's own user (the sandbox's too) and no one else
            listener.listen(128)
        except OSError:
            listener.close()
            raise
        self._listener, self.socket_path = listener, socket_path
        self._stop_r, self._stop_w = os.pipe()
        self._spawn(self._accept_loop, name="proxy-accept")

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, end every connection, remove the socket; returns within ``timeout``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sockets = list(self._sockets)
        if self._stop_w >= 0:
            os.write(self._stop_w, b"x")  # never drained: every poll sees it from now on
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in send or recv
        deadline = time.monotonic() + timeout
        me = threading.current_thread()
        while True:
            with self._lock:
                lingering = [t for t in self._spawned if t is not me and t.is_alive()]
            if not lingering or time.monotonic() >= deadline:
                break
            lingering[0].join(max(0.0, deadline - time.monotonic()))
        if self.socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
        with self._lock:
            busy = len(self._threads)
        if busy:
            # A thread still runs (stuck in a name lookup, or close() was called from on_event): the
            # last one to end releases the descriptors, as closing them under it could hand their
            # numbers to someone else's file.
            log.info("proxy: %d threads still ending after close", busy)
            return
        self._release()

    def _release(self) -> None:
        """Close the listener and the stop pipe, once, when no thread can use them any more."""
        with self._lock:
            if self._released:
                return
            self._released = True
        if self._listener is not None:
            self._listener.close()
        for fd in (self._stop_r, self._stop_w):
            if fd >= 0:
                os.close(fd)

    def __enter__(self) -> ConnectProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def active_threads(self) -> int:
        """How many of the proxy's threads are alive (the accept loop and one per connection)."""
        with self._lock:
            return sum(1 for t in self._spawned if t.is_alive())

    def _spawn(self, target: Callable[..., None], *args: object, name: str) -> None:
        thread = threading.Thread(target=self._run_thread, args=(target, *args), name=name, daemon=True)
        with self._lock:
            self._threads.add(thread)
            self._spawned = [t for t in self._spawned if t.is_alive()] + [thread]
        thread.start()

    def _run_thread(self, target: Callable[..., None], *args: object) -> None:
        try:
            target(*args)
        except Exception:
            log.exception("proxy: a connection thread failed")
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())
                last = self._closed and not self._threads
            if last:
                self._release()

    def _track(self, sock: socket.socket) -> bool:
        """Remember ``sock`` so close() can wake its thread; False once the proxy is closing."""
        with self._lock:
            if self._closed:
                return False
            self._sockets.add(sock)
            return True

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        sock.close()

    def _emit(self, kind: Literal["connect", "refused"], host: str, port: int, reason: str) -> None:
        event = ProxyEvent(kind, host, port, reason, time.time())
        log.info("proxy %s %s:%d: %s", kind, host, port, reason)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("proxy: the event handler failed")

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while True:
            readable, _ = ready([self._listener, self._stop_r], [], None)
            if self._stop_r in readable:
                return
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            with self._lock:
                busy = len(self._threads) - 1 >= self.max_connections
            if busy:
                reason = f"too many open connections through the proxy (limit {self.max_connections})"
                self._emit("refused", "", 0, reason)
                with contextlib.suppress(OSError):
                    client.settimeout(1.0)
                    client.sendall(answer(503, reason))
                client.close()
            elif self._track(client):
                self._spawn(self._serve, client, name="proxy-conn")
            else:
                client.close()

    def _wait(self, sock: socket.socket, deadline: float, write: bool = False) -> bool:
        """Wait until ``sock`` is ready; False on stop or when the deadline passes."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        readable, writable = ready([self._stop_r] + ([] if write else [sock]), [sock] if write else [], left)
        return self._stop_r not in readable and bool(readable or writable)

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        host, port = "", 0
        try:
            client.settimeout(self.idle_timeout)
            request = parse_request(self._read_head(client))
            host, port = request.host, request.port
            decision = self.allow.check(host, port)
            if not decision.allowed:
                raise ProxyError(403, decision.reason, host, port)
            upstream = self._connect(host, port, decision.addresses)
            self._emit("connect", host, port, decision.reason)
            client.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n" if request.tunnel else b"")
            upstream.sendall(request.head + request.rest)
            self._relay(client, upstream)
        except ProxyError as err:
            host, port = err.host or host, err.port or port
            self._emit("refused", host, port, err.reason)
            line = f"proxy refused {host}:{port}: {err.reason}" if err.status == 403 else err.reason
            with contextlib.suppress(OSError):
                client.sendall(answer(err.status, line))
        except OSError:
            pass  # the client or the server went away; nothing to tell anyone
        finally:
            if upstream is not None:
                self._forget(upstream)
            self._forget(client)

    def _read_head(self, client: socket.socket) -> bytes:
        data = b""
        deadline = time.monotonic() + self.idle_timeout
        while b"\r\n\r\n" not in data:
            if len(data) > MAX_HEAD_BYTES:
                raise ProxyError(400, f"request head over {MAX_HEAD_BYTES} bytes")
            if not self._wait(client, deadline):
                raise OSError("no request in time, or the proxy is closing")
            chunk = client.recv(CHUNK)
            if not chunk:
                raise OSError("client closed before its request was complete")
            data += chunk
        return data

    def _connect(self, host: str, port: int, addresses: tuple[str, ...]) -> socket.socket:
        """Connect to the first of ``addresses`` that answers (the ones the allow-list checked)."""
        failure = "no address"
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            if not self._track(sock):
                sock.close()
                raise OSError("the proxy is closing")
            sock.setblocking(False)
            code = sock.connect_ex((address, port))
            if code in (errno.EINPROGRESS, errno.EAGAIN):
                deadline = time.monotonic() + self.connect_timeout
                if self._wait(sock, deadline, write=True):
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                else:
                    code = -1
            if code == 0:
                sock.settimeout(self.idle_timeout)
                return sock
            failure = "timed out" if code == -1 else os.strerror(code)
            self._forget(sock)
        raise ProxyError(502, f"could not reach {host}:{port} ({failure})", host, port)

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        """Copy bytes both ways until both sides are done, one goes away, or nothing moves."""
        peers = {client: upstream, upstream: client}
        reading = [client, upstream]
        while reading:
            readable, _ = ready([*reading, self._stop_r], [], self.idle_timeout)
            if not readable or self._stop_r in readable:
                return
            for sock in [s for s in reading if s.fileno() in readable]:
                data = sock.recv(CHUNK)
                if data:
                    peers[sock].sendall(data)
                    continue
                reading.remove(sock)  # one side finished: pass the half-close on
                with contextlib.suppress(OSError):
                    peers[sock].shutdown(socket.SHUT_WR)
