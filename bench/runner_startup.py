"""Start-up cost of one run of each agent CLI under the runner.

Runs each pinned CLI (Claude Code, Codex, Gemini CLI, opencode) against the
in-process scripted model server N times (default 5) with a one-turn answer
and prints, per run and as min/median/max per agent:

* start -> first event: from ``Runner.run()`` to the first event it reports,
* start -> result: a whole trivial run,
* peak RSS of the agent's whole process tree, sampled every 10 ms.

The first run of each agent is a warm-up on a fresh home and is reported
apart (opencode pays about 10 s there once).

Usage: .venv/bin/python bench/runner_startup.py [--runs 5] [--agent codex ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.runners.core import AgentEvent, Runner, RunRequest
from backend.runners.registry import AGENT_NAMES, make_runner
from tests.fakes.fixtures import CLAUDE_BIN, agent_bin, hermetic_agent_environ, hermetic_environ
from tests.fakes.model_server import ModelServer, text


def tree_peak_rss(stop: threading.Event, peak: list[int]) -> None:
    """Sample the summed RSS of our children's process trees until stopped."""
    me = psutil.Process()
    while not stop.is_set():
        total = 0
        for child in me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                continue
        peak[0] = max(peak[0], total)
        stop.wait(0.01)


def runner_for(agent: str, server: ModelServer, home: Path) -> Runner:
    if agent == "claude":
        env = hermetic_environ({
            "ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": "test-key",
            "IS_SANDBOX": "1", "CLAUDE_CONFIG_DIR": str(home / "claude-config"),
            "CLAUDE_CODE_MAX_RETRIES": "1", "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        })
        return make_runner("claude", str(CLAUDE_BIN), env)
    return make_runner(agent, agent_bin(agent), hermetic_agent_environ(agent, server, home))


def one_run(runner: Runner, prompt: str, cwd: Path, state: Path) -> tuple[float, float, float]:
    first: list[float] = []
    started = time.perf_counter()

    def on_event(_event: AgentEvent) -> None:
        if not first:
            first.append(time.perf_counter() - started)

    peak = [0]
    stop = threading.Event()
    sampler = threading.Thread(target=tree_peak_rss, args=(stop, peak), daemon=True)
    sampler.start()
    result = runner.run(RunRequest(prompt=prompt, cwd=cwd, state_dir=state), on_event=on_event)
    total = time.perf_counter() - started
    stop.set()
    sampler.join()
    assert result.ok, result.reason
    return first[0], total, peak[0] / 2**20


def spread(values: list[float], scale: float = 1.0, unit: str = "") -> str:
    return (f"{min(values) * scale:.0f}/{statistics.median(values) * scale:.0f}/"
            f"{max(values) * scale:.0f}{unit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--agent", action="append", choices=AGENT_NAMES)
    args = parser.parse_args()
    agents = args.agent or list(AGENT_NAMES)
    summary = []
    with ModelServer() as server, tempfile.TemporaryDirectory() as tmp:
        server.default([text("ready")])
        for agent in agents:
            home = Path(tmp) / f"home-{agent}"
            cwd = Path(tmp) / f"work-{agent}"
            cwd.mkdir()
            runner = runner_for(agent, server, home)
            warm = one_run(runner, f"startup bench {agent} warm-up", cwd, Path(tmp) / "state")
            print(f"{agent:9s} warm-up: first event {warm[0] * 1000:6.0f} ms, "
                  f"result {warm[1] * 1000:6.0f} ms, peak RSS {warm[2]:5.0f} MB")
            firsts, totals, rss = [], [], []
            for i in range(args.runs):
                first, total, peak = one_run(runner, f"startup bench {agent} {i}", cwd,
                                             Path(tmp) / "state")
                firsts.append(first)
                totals.append(total)
                rss.append(peak)
                print(f"{agent:9s} run {i + 1:2d}: first event {first * 1000:6.0f} ms, "
                      f"result {total * 1000:6.0f} ms, peak RSS {peak:5.0f} MB")
            summary.append(f"{agent:9s} first event {spread(firsts, 1000, ' ms'):>18s}   "
                           f"whole run {spread(totals, 1000, ' ms'):>18s}   "
                           f"peak RSS {spread(rss, 1, ' MB'):>14s}")
    print(f"\nmin/median/max over {args.runs} runs per agent (after one warm-up):")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
