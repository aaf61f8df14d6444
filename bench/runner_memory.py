"""Memory of the supervising process while Claude Code floods its stdout.

Claude Code shows the model only a 2 KB preview of large Bash output (the rest
goes to a file), so a Bash tool cannot flood stdout. The flood here comes from
the model instead: an answer of ``total/3`` bytes streamed with
``--include-partial-messages`` appears three times on stdout (as stream events,
in one ``assistant`` line, in one ``result`` line), so ``--total-mb 500`` gives
about 500 MB of output including two single lines of ~167 MB each.

Prints the bytes the runner read, wall time, this process's RSS growth (the
runner and the in-process model server), and the claude process's peak RSS.

Usage: .venv/bin/python bench/runner_memory.py [--total-mb 500]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.runners import claude_code as cc
from backend.runners.claude_code import AgentEvent, ClaudeCodeRunner, RunRequest
from tests.fakes.fixtures import CLAUDE_BIN, hermetic_environ
from tests.fakes.model_server import ModelServer, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-mb", type=float, default=500)
    args = parser.parse_args()
    answer_bytes = int(args.total_mb * 1e6 / 3)
    read_bytes = [0]
    original_feed = cc._LineSplitter.feed

    def counting_feed(self: cc._LineSplitter, chunk: bytes) -> Iterator[cc._Line]:
        read_bytes[0] += len(chunk)
        return original_feed(self, chunk)

    cc._LineSplitter.feed = counting_feed  # type: ignore[method-assign]
    with ModelServer() as server, tempfile.TemporaryDirectory() as tmp:
        server.script("flood bench", [text("z" * answer_bytes)])
        server.script("warm up", [text("ok")])
        env = hermetic_environ({
            "ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": "test-key",
            "IS_SANDBOX": "1", "CLAUDE_CONFIG_DIR": str(Path(tmp) / "config"),
            "CLAUDE_CODE_MAX_RETRIES": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        })
        runner = ClaudeCodeRunner(str(CLAUDE_BIN), base_env=env)
        runner.run(RunRequest(prompt="warm up", cwd=Path(tmp)))
        gc.collect()
        me = psutil.Process()
        baseline = me.memory_info().rss
        peaks = {"self": baseline, "claude": 0}
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peaks["self"] = max(peaks["self"], me.memory_info().rss)
                for child in me.children():
                    with contextlib.suppress(psutil.Error):
                        peaks["claude"] = max(peaks["claude"], child.memory_info().rss)
                stop.wait(0.005)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        biggest = [0]

        def on_event(event: AgentEvent) -> None:
            if event.data.get("truncated"):
                biggest[0] = max(biggest[0], int(event.data["line_bytes"]))

        log_path = Path(tmp) / "flood.jsonl"
        started = time.perf_counter()
        result = runner.run(RunRequest(prompt="flood bench", cwd=Path(tmp), log_path=log_path,
                                       extra_args=["--include-partial-messages"]),
                            on_event=on_event)
        wall = time.perf_counter() - started
        stop.set()
        sampler.join()
        print(f"result: ok={result.ok} outcome={result.outcome} reason={result.reason}")
        print(f"stdout read by the runner: {read_bytes[0] / 1e6:.0f} MB "
              f"(longest line {biggest[0] / 1e6:.0f} MB) in {wall:.1f} s "
              f"= {read_bytes[0] / 1e6 / wall:.0f} MB/s")
        print(f"supervising process RSS: baseline {baseline / 2**20:.0f} MB, "
              f"growth {(peaks['self'] - baseline) / 2**20:.1f} MB")
        print(f"claude process peak RSS: {peaks['claude'] / 2**20:.0f} MB")
        print(f"run log: {log_path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
