"""Reading an agent's output without losing any of it and without memory growth.

* **stdout goes to an unlinked temporary file, not a pipe** (:class:`StdoutCapture`).
  Measured on Claude Code 2.1.197: a CLI that writes more than the pipe buffer
  holds just before it exits loses the rest. Writes to a regular file are
  synchronous, so nothing is lost; the runner tails the file with ``pread`` in
  64 KiB chunks and punches holes behind itself so disk use stays flat as well.
* **Bounded lines** (:class:`LineSplitter`): lines are split as chunks arrive;
  a line longer than ``max_line`` is never held whole: a head and a tail are
  kept, the middle is dropped, and when the big part was one JSON string the
  object is still recovered from head and tail (:func:`salvage`).
* **stderr** is drained by a thread that keeps only a tail (:class:`StderrTail`),
  so a chatty child never blocks on a full pipe.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

#: Bytes read from the stdout file (or the stderr pipe) at a time.
CHUNK = 64 * 1024
#: Bytes kept from the start and from the end of a line that is too long.
OVERSIZE_HEAD = 64 * 1024
OVERSIZE_TAIL = 64 * 1024
#: Bytes of stderr kept (its end: the best clue when a run fails).
STDERR_TAIL = 8 * 1024
#: Free the stdout file's blocks once this much more has been read.
PUNCH_EVERY = 32 * 1024 * 1024


@dataclass
class Line:
    """One stdout line: whole, or only its head and tail when it was too long."""

    data: bytes
    size: int
    tail: bytes = b""
    truncated: bool = False


class LineSplitter:
    """Split a byte stream into lines without ever holding more than ``max_line`` bytes."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._over = False
        self._head = b""
        self._tail = b""
        self._size = 0

    def feed(self, chunk: bytes) -> Iterator[Line]:
        pos = 0
        while True:
            nl = chunk.find(b"\n", pos)
            end = len(chunk) if nl == -1 else nl
            self._add(chunk[pos:end])
            if nl == -1:
                return
            yield self._finish()
            pos = nl + 1

    def flush(self) -> Line | None:
        """The unterminated last line at end of stream, if any."""
        if self._over or self._buf:
            return self._finish()
        return None

    def _add(self, piece: bytes) -> None:
        if not piece:
            return
        if self._over:
            self._size += len(piece)
            self._tail = (self._tail + piece)[-OVERSIZE_TAIL:]
            return
        self._buf += piece
        if len(self._buf) > self.max_line:
            self._over = True
            self._size = len(self._buf)
            self._head = bytes(self._buf[:OVERSIZE_HEAD])
            self._tail = bytes(self._buf[-OVERSIZE_TAIL:])
            self._buf = bytearray()

    def _finish(self) -> Line:
        if self._over:
            line = Line(data=self._head, size=self._size, tail=self._tail, truncated=True)
            self._over = False
            self._head = self._tail = b""
            self._size = 0
        else:
            line = Line(data=bytes(self._buf), size=len(self._buf))
            self._buf = bytearray()
        return line


def salvage(head: bytes, tail: bytes, omitted: int) -> dict[str, Any] | None:
    """Rebuild a JSON object whose middle was dropped, if the middle was one string.

    That is the usual shape of a huge stream-json line: one giant answer, file
    body or tool output inside otherwise small JSON. The string is closed with
    a marker saying how much was cut. Returns None when that does not parse.
    """
    head_text = head.decode("utf-8", "replace")
    in_string = escaped = False
    for ch in head_text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = in_string
        elif ch == '"':
            in_string = not in_string
    if not in_string:
        return None
    if escaped:
        head_text = head_text[:-1]
    tail_text = tail.decode("utf-8", "replace").rstrip()
    marker = f" …[{omitted} bytes truncated]… "
    quotes = [m.start() for m in re.finditer('"', tail_text)][:20]
    for trim in range(7):  # the head may end inside a \\uXXXX escape
        base = head_text[: len(head_text) - trim] if trim else head_text
        if trim and base.endswith("\\") and not base.endswith("\\\\"):
            continue
        for q in quotes:
            run = 0
            while q - run - 1 >= 0 and tail_text[q - run - 1] == "\\":
                run += 1
            if run % 2:
                continue
            try:
                value = json.loads(base + marker + tail_text[q:])
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
        if not trim:
            quotes = quotes[:1]
    return None


class HolePuncher:
    """Frees disk blocks of the stdout file already read (Linux fallocate), best effort."""

    def __init__(self) -> None:
        self._fn: Any = None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fn = libc.fallocate
            fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
            fn.restype = ctypes.c_int
            self._fn = fn
        except (OSError, AttributeError):
            self._fn = None
        self.done = 0

    def punch(self, fd: int, upto: int) -> None:
        upto -= upto % 4096
        if self._fn is None or upto - self.done < PUNCH_EVERY:
            return
        # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        if self._fn(fd, 0x02 | 0x01, 0, upto) == 0:
            self.done = upto
        else:
            self._fn = None


def stderr_reader(stream: IO[bytes], tail: bytearray, lock: threading.Lock) -> None:
    """Drain stderr so the child never blocks on it; keep only the last few KB."""
    try:
        while True:
            chunk = stream.read1(CHUNK) if hasattr(stream, "read1") else stream.read(CHUNK)
            if not chunk:
                return
            with lock:
                tail += chunk
                if len(tail) > STDERR_TAIL:
                    del tail[: len(tail) - STDERR_TAIL]
    except (OSError, ValueError):
        return


def stdin_writer(stream: IO[bytes], data: bytes) -> None:
    """Send the prompt and close stdin; a child that exits early is not an error."""
    try:
        stream.write(data)
    except (BrokenPipeError, OSError, ValueError):
        pass
    finally:
        with contextlib.suppress(OSError, ValueError):
            stream.close()


class StderrTail:
    """A daemon thread draining a child's stderr; :meth:`text` is its last few KB."""

    def __init__(self, stream: IO[bytes], name: str) -> None:
        self.stream = stream
        self._tail = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=stderr_reader, args=(stream, self._tail, self._lock),
                                        name=name, daemon=True)
        self._thread.start()

    def text(self) -> str:
        with self._lock:
            return self._tail.decode("utf-8", "replace")

    def close(self) -> None:
        """Wait briefly for the reader; close the pipe unless the reader is stuck on it."""
        self._thread.join(timeout=2)
        if not self._thread.is_alive():
            self.stream.close()


def start_stdin_writer(stream: IO[bytes], data: bytes, name: str) -> threading.Thread:
    """Write ``data`` to a child's stdin from a daemon thread (a big prompt must not block the loop)."""
    thread = threading.Thread(target=stdin_writer, args=(stream, data), name=name, daemon=True)
    thread.start()
    return thread


class StdoutCapture:
    """The unlinked temporary file a child writes its stdout to, read as lines.

    :attr:`fd` is handed to the child (opened ``O_APPEND``); :meth:`read` gets
    what arrived since the last call, :meth:`drain` the rest once the child
    has exited (a regular file holds everything written before exit).
    """

    def __init__(self, prefix: str, max_line: int) -> None:
        fd, path = tempfile.mkstemp(prefix=prefix, suffix=".stdout")
        os.unlink(path)
        self.fd = fd
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
        except OSError:
            os.close(fd)
            raise
        self.offset = 0
        self.splitter = LineSplitter(max_line)
        self.puncher = HolePuncher()

    def read(self, on_line: Callable[[Line], None]) -> bool:
        """Hand every complete line of the next chunk to ``on_line``; False when nothing new arrived."""
        chunk = os.pread(self.fd, CHUNK, self.offset)
        if not chunk:
            return False
        self.offset += len(chunk)
        for line in self.splitter.feed(chunk):
            on_line(line)
        self.puncher.punch(self.fd, self.offset)
        return True

    def drain(self, on_line: Callable[[Line], None]) -> None:
        """Read to the end, including an unterminated last line (call once the child has exited)."""
        while chunk := os.pread(self.fd, CHUNK, self.offset):
            self.offset += len(chunk)
            for line in self.splitter.feed(chunk):
                on_line(line)
        last = self.splitter.flush()
        if last is not None:
            on_line(last)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
