"""Tiny raw-socket HTTP/1.1 helpers for load generation (a thousand httpx clients would
measure the client, not the server). Benchmarks only."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


def request_bytes(url: str, path: str, headers: dict[str, str]) -> bytes:
    host = urlsplit(url).netloc
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Connection: close", "Accept: application/json"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def fetch(url: str, path: str, headers: dict[str, str]) -> tuple[int, int]:
    """One GET on a fresh connection; returns (status, bytes read)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request_bytes(url, path, headers))
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, len(data)
