"""Start-up cost of one Claude Code run under the runner.

Runs the pinned CLI against the in-process scripted model server N times
(default 10) with a one-turn answer and prints, per run and as medians:

* start -> first event: from ``ClaudeCodeRunner.run()`` to the ``init`` event,
* start -> result: to the ``result`` event (a whole trivial run),
* peak RSS of the ``claude`` process, sampled every 10 ms.

Usage: .venv/bin/python bench/runner_startup.py [--runs 10]
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

from backend.runners.claude_code import AgentEvent, ClaudeCodeRunner, RunRequest
from tests.fakes.fixtures import CLAUDE_BIN, hermetic_environ
from tests.fakes.model_server import ModelServer, text


def child_peak_rss(stop: threading.Event, peaks: dict[int, int]) -> None:
    """Sample the RSS of our direct children (the claude process) until stopped."""
    me = psutil.Process()
    while not stop.is_set():
        for child in me.children():
            try:
                rss = child.memory_info().rss
            except psutil.Error:
                continue
            peaks[child.pid] = max(peaks.get(child.pid, 0), rss)
        stop.wait(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with ModelServer() as server, tempfile.TemporaryDirectory() as tmp:
        server.script("startup bench", [text("ready")])
        env = hermetic_environ({
            "ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": "test-key",
            "IS_SANDBOX": "1", "CLAUDE_CONFIG_DIR": str(Path(tmp) / "config"),
            "CLAUDE_CODE_MAX_RETRIES": "1", "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        })
        runner = ClaudeCodeRunner(str(CLAUDE_BIN), base_env=env)
        firsts: list[float] = []
        totals: list[float] = []
        rss: list[float] = []
        for i in range(args.runs):
            first: list[float] = []
            started = time.perf_counter()

            def on_event(event: AgentEvent, first: list[float] = first,
                         started: float = started) -> None:
                if not first:
                    first.append(time.perf_counter() - started)

            peaks: dict[int, int] = {}
            stop = threading.Event()
            sampler = threading.Thread(target=child_peak_rss, args=(stop, peaks), daemon=True)
            sampler.start()
            result = runner.run(RunRequest(prompt=f"startup bench {i}", cwd=Path(tmp)),
                                on_event=on_event)
            total = time.perf_counter() - started
            stop.set()
            sampler.join()
            assert result.ok, result.reason
            peak_mb = max(peaks.values(), default=0) / 2**20
            firsts.append(first[0])
            totals.append(total)
            rss.append(peak_mb)
            print(f"run {i + 1:2d}: first event {first[0] * 1000:6.0f} ms, "
                  f"result {total * 1000:6.0f} ms, claude peak RSS {peak_mb:5.0f} MB")
        print(f"median over {args.runs} runs: first event {statistics.median(firsts) * 1000:.0f} ms,"
              f" whole run {statistics.median(totals) * 1000:.0f} ms,"
              f" claude peak RSS {statistics.median(rss):.0f} MB (max {max(rss):.0f} MB)")


if __name__ == "__main__":
    main()
