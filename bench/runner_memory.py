"""Memory of the supervising process while an agent CLI floods its stdout with ~500 MB.

The goal (issue 11): the Shipyard process that runs an agent grows by at most
50 MB while any agent (Claude Code, Codex, Gemini CLI, opencode) writes 500 MB
of output. The flood comes from the scripted model: one long answer, which
each CLI prints in its own way:

* Claude Code with ``--include-partial-messages`` prints the answer three times
  (stream events, one ``assistant`` line, one ``result`` line), so the answer is
  ``total/3`` bytes and two of its lines are ~167 MB each.
* Codex prints each answer message as one ``agent_message`` line. Its SSE
  reader slows down badly on one event of tens of MB (a single 20 MB message
  took 224 s under load), so its flood is 1 MB messages: ~500 lines of 1 MB.
* Gemini CLI prints one ``message`` delta line per streamed chunk (1 MiB each).
* opencode prints one ``text`` line of ``total`` when the answer ends.

The scripted model server runs in a child process here, so the figures are the
runner's own: this process's RSS growth over the run (baseline after a warm-up
run and ``gc``), sampled every 5 ms. Also printed: the bytes the runner read,
the longest line, wall time, and the agent's process-tree peak RSS.

Usage: .venv/bin/python bench/runner_memory.py [--total-mb 500] [--runs 3] [--agent codex ...]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.runners.capture import Line, LineSplitter
from backend.runners.core import AgentEvent, Runner, RunRequest
from backend.runners.registry import AGENT_NAMES, make_runner
from tests.fakes.dialects import PIECE
from tests.fakes.fixtures import CLAUDE_BIN, agent_bin, hermetic_agent_environ, hermetic_environ
from tests.fakes.model_server import ModelServer, message, text

GOAL_MB = 50


@dataclass
class ServerAddress:
    """What the agents' environments need of the scripted server (it lives in a child)."""

    url: str
    port: int


def noise(size: int) -> str:
    """``size`` characters that never repeat (Gemini CLI stops an answer it sees looping)."""
    return base64.b64encode(os.urandom(size * 3 // 4 + 3)).decode()[:size]


def serve(conn: Connection, floods: dict[str, int]) -> None:
    """The child: a scripted model that answers ``flood bench <agent>`` with that many bytes."""
    with ModelServer() as server:
        for agent, size in floods.items():
            if agent == "codex":  # one message per MB (see the module docstring)
                blocks = [noise(min(PIECE, size - start)) for start in range(0, size, PIECE)]
                server.script(f"flood bench {agent}", [message(*blocks)])
            else:
                server.script(f"flood bench {agent}", [text(noise(size))])
        server.default([text("ok")])
        conn.send((server.url, server.port))
        conn.recv()  # until the parent is done


def runner_for(agent: str, server: ServerAddress, home: Path) -> Runner:
    if agent == "claude":
        env = hermetic_environ({
            "ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": "test-key",
            "IS_SANDBOX": "1", "CLAUDE_CONFIG_DIR": str(home / "claude-config"),
            "CLAUDE_CODE_MAX_RETRIES": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1",
        })
        return make_runner("claude", str(CLAUDE_BIN), env)
    return make_runner(agent, agent_bin(agent), hermetic_agent_environ(agent, server, home))  # type: ignore[arg-type]


def flood_bytes(agent: str, total: int) -> int:
    """The answer size that makes ``agent`` print about ``total`` bytes."""
    return total // 3 if agent == "claude" else total


@dataclass
class Figures:
    ok: bool
    reason: str | None
    read_mb: float
    longest_mb: float
    wall_s: float
    growth_mb: float
    agent_peak_mb: float


def one_flood(runner: Runner, agent: str, run: int, cwd: Path, state: Path, model_pid: int,
              read_bytes: list[int]) -> Figures:
    gc.collect()
    me = psutil.Process()
    baseline = me.memory_info().rss
    peaks = {"self": baseline, "agent": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peaks["self"] = max(peaks["self"], me.memory_info().rss)
            total = 0
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if child.pid != model_pid and child.ppid() != model_pid:
                        total += child.memory_info().rss
            peaks["agent"] = max(peaks["agent"], total)
            stop.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    biggest = [0]

    def on_event(event: AgentEvent) -> None:
        if event.data.get("truncated"):
            biggest[0] = max(biggest[0], int(event.data["line_bytes"]))

    read_bytes[0] = 0
    extra = ["--include-partial-messages"] if agent == "claude" else []
    started = time.perf_counter()
    result = runner.run(RunRequest(prompt=f"flood bench {agent} run {run}", cwd=cwd, state_dir=state,
                                   log_path=cwd.parent / f"flood-{agent}-{run}.jsonl",
                                   extra_args=extra, timeout_s=1800),
                        on_event=on_event)
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    return Figures(result.ok, result.reason, read_bytes[0] / 1e6, biggest[0] / 1e6, wall,
                   (peaks["self"] - baseline) / 2**20, peaks["agent"] / 2**20)


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-mb", type=float, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--agent", action="append", choices=AGENT_NAMES)
    args = parser.parse_args()
    agents = args.agent or list(AGENT_NAMES)
    total = int(args.total_mb * 1e6)

    read_bytes = [0]
    original_feed = LineSplitter.feed

    def counting_feed(self: LineSplitter, chunk: bytes) -> Iterator[Line]:
        read_bytes[0] += len(chunk)
        return original_feed(self, chunk)

    LineSplitter.feed = counting_feed  # type: ignore[method-assign]
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(target=serve, args=(child_end, {a: flood_bytes(a, total) for a in agents}),
                        daemon=True)
    child.start()
    url, port = parent_end.recv()
    server = ServerAddress(url, port)
    summary = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for agent in agents:
                cwd = Path(tmp) / f"work-{agent}"
                cwd.mkdir()
                state = Path(tmp) / "state"
                runner = runner_for(agent, server, Path(tmp) / f"home-{agent}")
                warm = runner.run(RunRequest(prompt=f"warm up {agent}", cwd=cwd, state_dir=state))
                if not warm.ok:
                    print(f"{agent:9s} warm-up failed: {warm.reason}")
                    continue
                runs: list[Figures] = []
                for i in range(args.runs):
                    f = one_flood(runner, agent, i, cwd, state, child.pid or 0, read_bytes)
                    runs.append(f)
                    print(f"{agent:9s} run {i + 1}: ok={f.ok} read {f.read_mb:5.0f} MB "
                          f"(longest line {f.longest_mb:4.0f} MB) in {f.wall_s:5.1f} s; "
                          f"runner RSS growth {f.growth_mb:5.1f} MB; agent peak RSS {f.agent_peak_mb:5.0f} MB"
                          + ("" if f.ok else f"; reason: {f.reason}"), flush=True)
                growth = [f.growth_mb for f in runs]
                verdict = "within" if max(growth) <= GOAL_MB else "OVER"
                summary.append(
                    f"{agent:9s} read {spread([f.read_mb for f in runs]):>13s} MB   "
                    f"runner RSS growth {spread(growth, '{:.1f}'):>16s} MB ({verdict} {GOAL_MB} MB)   "
                    f"agent peak RSS {spread([f.agent_peak_mb for f in runs]):>14s} MB   "
                    f"wall {spread([f.wall_s for f in runs], '{:.1f}'):>14s} s")
    finally:
        parent_end.send("stop")
        child.join(timeout=10)
    print(f"\nmin/median/max over {args.runs} runs per agent, {args.total_mb:g} MB of agent output each:")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
