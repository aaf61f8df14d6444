"""What the bubblewrap sandbox adds to a run's start: ``true`` and a real Claude Code run, with and without.

Interleaved (plain, sandboxed, plain, sandboxed, ...) so a change in the
machine's load hits both sides alike, and reported as medians over N pairs
(default 10):

* ``true``: ``subprocess.run`` of ``/bin/true``, plain and through
  :func:`backend.sandbox.wrap` (network host, and network model with one
  bridged port, which adds the socat prelude and its readiness wait);
* Claude Code: a whole scripted one-turn run through the runner core against
  the in-process scripted model server, plain and with a sandbox spec (network
  model, the model's port bridged), from ``Runner.run()`` to its result;
* the model bridge itself: one HTTP request through the bridge (inside the
  sandbox's network namespace) against the same request made directly.

Target: the sandbox adds at most 50 ms to a Claude Code run.

Usage: .venv/bin/python bench/sandbox_startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.runners.claude_code import ClaudeCodeRunner
from backend.runners.core import RunRequest
from backend.sandbox import SandboxSpec, probe, wrap
from tests.fakes.fixtures import CLAUDE_BIN, hermetic_environ
from tests.fakes.model_server import ModelServer, text

#: One HTTP GET timed from inside the process (so interpreter start-up is not counted).
FETCH = """
import sys, time, urllib.request
def get():
    request = urllib.request.Request(sys.argv[1], method="HEAD")
    urllib.request.urlopen(request, timeout=10).read()
get()
started = time.perf_counter()
for _ in range(20):
    get()
print((time.perf_counter() - started) / 20)
"""


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run_wrapped(argv: list[str], spec: SandboxSpec | None) -> str:
    if spec is None:
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    wrapped = wrap(argv, {"PATH": "/usr/bin:/bin"}, spec)
    try:
        return subprocess.run(wrapped.argv, env=wrapped.env, check=True, capture_output=True, text=True).stdout
    finally:
        wrapped.close()


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    found = probe()
    if not found.network_model_ok:
        sys.exit(f"cannot measure: {found.reason or 'socat is not installed'} ({found.fix or 'apt-get install socat'})")
    with ModelServer() as server, tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        server.default([text("ready")])
        root = Path(tmp)
        repo, home, config = root / "repo", root / "home", root / "claude-config"
        for path in (repo, home, config):
            path.mkdir()
        host = SandboxSpec(rw_paths=(repo,), home=home, network="host")
        model = SandboxSpec(rw_paths=(repo, config), home=home, model_ports=(server.port,))
        figures: dict[str, list[float]] = {k: [] for k in (
            "true", "true sandboxed (host)", "true sandboxed (model)", "claude", "claude sandboxed",
            "request direct", "request bridged")}
        env = hermetic_environ({
            "ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": "test-key", "IS_SANDBOX": "1",
            "CLAUDE_CONFIG_DIR": str(config), "CLAUDE_CODE_MAX_RETRIES": "1", "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "PYENV_REHASH_TIMEOUT": "0"})
        runner = ClaudeCodeRunner(str(CLAUDE_BIN), base_env=env)

        def claude(spec: SandboxSpec | None, i: int) -> None:
            result = runner.run(RunRequest(prompt=f"sandbox bench {i}", cwd=repo, state_dir=root / "state",
                                           sandbox=spec))
            assert result.ok, (result.reason, result.stderr_tail)

        claude(None, -1)  # warm-ups: the first run of a fresh config pays for it
        claude(model, -2)
        url = f"http://127.0.0.1:{server.port}/"
        for i in range(args.runs):
            figures["true"].append(timed(lambda: run_wrapped(["/bin/true"], None)))
            figures["true sandboxed (host)"].append(timed(lambda: run_wrapped(["/bin/true"], host)))
            figures["true sandboxed (model)"].append(timed(lambda: run_wrapped(["/bin/true"], model)))
            figures["claude"].append(timed(lambda i=i: claude(None, i)))
            figures["claude sandboxed"].append(timed(lambda i=i: claude(model, i)))
            figures["request direct"].append(float(run_wrapped(["/usr/bin/python3", "-c", FETCH, url], None)))
            figures["request bridged"].append(float(run_wrapped(["/usr/bin/python3", "-c", FETCH, url], model)))
    print(f"medians over {args.runs} interleaved runs:")
    for name, values in figures.items():
        print(f"  {name:24s} {median_ms(values):8.1f} ms   (min {min(values) * 1000:.1f}, "
              f"max {max(values) * 1000:.1f})")
    added = median_ms(figures["claude sandboxed"]) - median_ms(figures["claude"])
    print(f"\nthe sandbox adds {added:+.0f} ms to a Claude Code run (target: at most +50 ms); "
          f"true: {median_ms(figures['true sandboxed (model)']) - median_ms(figures['true']):+.1f} ms")


if __name__ == "__main__":
    main()
