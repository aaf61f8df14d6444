"""The CLI's client for a running Shipyard server: the same API the browser uses."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
from httpx_sse import connect_sse

from backend.auth import read_state_server, token_for_url
from backend.config import ConfigError, Settings, load_settings


class ClientError(Exception):
    """Something the user should read: an API error sentence or a connection problem."""


def resolve_server(environ: dict[str, str] | None = None) -> tuple[str, str | None]:
    """(base URL, token) of the server to talk to.

    ``SHIPYARD_URL`` names the server (its token then comes from
    ``SHIPYARD_TOKEN``, or from the file that server wrote in this user's
    runtime directory); otherwise the current project's running server is found
    through its state directory's ``server.json``. The token never has to be
    typed: the server wrote it where only this user can read it.
    """
    env = os.environ if environ is None else environ
    url = env.get("SHIPYARD_URL")
    token = env.get("SHIPYARD_TOKEN") or env.get("SHIPYARD_ACCESS_TOKEN")
    if url:
        return url.rstrip("/"), token or token_for_url(url, env)
    settings = _project_settings(env)
    found_url, found_token = server_for_settings(settings, env)
    return found_url, token or found_token


def _project_settings(env: dict[str, str]) -> Settings:
    for require_git in (True, False):
        try:
            return load_settings(environ=dict(env), require_git=require_git)
        except ConfigError:
            continue
    return Settings()


def server_for_settings(settings: Settings, environ: dict[str, str] | None = None) -> tuple[str, str | None]:
    """(URL, token) of the running server of the project ``settings`` describe."""
    running = read_state_server(settings.state_path)
    if running is not None:
        return running["url"].rstrip("/"), running.get("token")
    # no server of this project is running: a server answering at the default address belongs to
    # another project, so its token is not taken (the request is then refused, not misdirected)
    return settings.url, settings.access_token or token_for_url(settings.url, environ, settings.project_dir)


class Client:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise ClientError(f"no Shipyard server is running at {self.base_url}: start one with "
                              "'shipyard serve' in your project (or set SHIPYARD_URL).") from exc
        except httpx.HTTPError as exc:
            raise ClientError(f"talking to {self.base_url} failed: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except (json.JSONDecodeError, AttributeError):
                detail = response.text[:300]
            raise ClientError(f"{detail} (HTTP {response.status_code})")
        return response.json()

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.request("PATCH", path, **kwargs)

    def pages(self, path: str, params: dict[str, Any], limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Page after page of a list (``/agent/tasks``, ``/agent/plans``), following ``next_cursor``.

        Stops after ``limit`` items when given; the first page's ``total`` tells how many match.
        """
        query = {k: v for k, v in params.items() if v is not None}
        seen = 0
        while True:
            if limit is not None:
                query["limit"] = max(1, min(500, limit - seen))
            page = self.get(path, params=query)
            seen += len(page["items"])
            yield page
            if not page.get("next_cursor") or (limit is not None and seen >= limit):
                return
            query["cursor"] = page["next_cursor"]

    def events(self, types: str | None = None, after: int | None = None) -> Iterator[dict[str, Any]]:
        """Follow the server's event stream (blocking iterator of event dicts)."""
        params: dict[str, Any] = {}
        if types:
            params["types"] = types
        if after is not None:
            params["after"] = after
        try:
            with connect_sse(self.http, "GET", "/agent/events", params=params,
                             timeout=httpx.Timeout(30.0, read=None)) as source:
                for sse in source.iter_sse():
                    if not sse.data:
                        continue
                    if sse.event == "hello":  # the stream is open: nothing from now on is missed
                        yield {"type": "hello", **json.loads(sse.data)}
                        continue
                    yield json.loads(sse.data)
        except httpx.ConnectError as exc:
            raise StreamLost(f"no Shipyard server is running at {self.base_url}.") from exc
        except httpx.TransportError as exc:  # the server died mid-stream (reset, half a chunk)
            raise StreamLost(f"the connection to {self.base_url} was lost.") from exc
        raise StreamLost(f"the server at {self.base_url} closed the event stream.")

    def wait_until_back(self, seconds: float) -> bool:
        """Whether the server answers again within ``seconds`` (asked twice a second)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.http.get("/agent/health", timeout=2)
                return True
            except httpx.HTTPError:
                pass
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)


class StreamLost(ClientError):
    """The event stream ended: the server stopped, restarted or dropped us."""
