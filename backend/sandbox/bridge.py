"""The outside half of the network "model" bridge: a unix socket that forwards to 127.0.0.1:port.

A sandbox with its own network namespace has an empty loopback; the model
(often a local proxy or Shipyard's own pass-through) is reached through a unix
socket bound into the sandbox, where socat turns it back into a TCP listener
on the same port. This side is a thread in Shipyard rather than a socat
process: it is listening the moment the constructor returns (no start-up to
wait for), costs no fork, and cannot outlive the server as an orphan.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

#: Bytes read per recv: an SSE stream of a model answer arrives in small pieces anyway.
_CHUNK = 64 * 1024


class Bridge:
    """Accepts connections on ``socket_path`` and pumps each to a new TCP connection to ``port``.

    One thread accepts; each connection gets two pump threads (one per
    direction), which end when either side closes. :meth:`close` stops
    accepting, cuts every open connection and removes the socket file.
    """

    def __init__(self, socket_path: Path, port: int, host: str = "127.0.0.1") -> None:
        self.socket_path = socket_path
        self.port = port
        self.host = host
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._listener.bind(str(socket_path))
            os.chmod(socket_path, 0o600)
            self._listener.listen(64)
        except OSError:
            self._listener.close()
            raise
        self._thread = threading.Thread(target=self._accept, name=f"sandbox-bridge-{port}", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                inside, _ = self._listener.accept()
            except OSError:
                return  # closed (shutdown wakes accept with EINVAL)
            try:
                outside = socket.create_connection((self.host, self.port), timeout=10)
                outside.settimeout(None)
            except OSError as exc:
                logger.info("sandbox bridge: cannot reach %s:%s: %s", self.host, self.port, exc)
                inside.close()
                continue
            with self._lock:
                if self._closed:
                    inside.close()
                    outside.close()
                    return
                self._open.update((inside, outside))
            done = threading.Semaphore(0)
            for src, dst in ((inside, outside), (outside, inside)):
                threading.Thread(target=self._pump, args=(src, dst, done), daemon=True,
                                 name=f"sandbox-bridge-{self.port}-pump").start()
            threading.Thread(target=self._reap, args=(inside, outside, done), daemon=True,
                             name=f"sandbox-bridge-{self.port}-reap").start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, done: threading.Semaphore) -> None:
        """Copy one direction until EOF, then pass the EOF on (half-close) so replies still flow."""
        try:
            while True:
                data = src.recv(_CHUNK)
                if not data:
                    break
                dst.sendall(data)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
        except OSError:  # a reset, or close() cutting the connection: end both directions
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        finally:
            done.release()

    def _reap(self, inside: socket.socket, outside: socket.socket, done: threading.Semaphore) -> None:
        """Close both sockets once both directions are done (not before: a half-closed side still reads)."""
        done.acquire()
        done.acquire()
        with self._lock:
            self._open.difference_update((inside, outside))
        inside.close()
        outside.close()

    def close(self) -> None:
        """Stop accepting, cut open connections, remove the socket file (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            still = list(self._open)
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=5)
        for sock in still:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
