"""Token guessing: how many wrong access tokens a client gets answered per second.

Starts a real server with a configured token, then sends wrong tokens on one
keep-alive connection for a few seconds and counts the answers: a 401 is a
checked guess (the attacker learns "wrong"), a 429 is a refusal to check.
Prints checked guesses per second, min/median/max over the runs (each run a
fresh server, so the throttle starts empty). Issue 14 measured 4,634/s before.

    .venv/bin/python bench/token_guessing.py [--seconds 5] [--runs 3] [--root DIR]

``--root`` picks the Shipyard checkout whose server and test helpers are used
(to measure another branch, e.g. main, with this script).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

TOKEN = "bench-token-0123456789abcdef"


def one_run(root: Path, seconds: float) -> tuple[float, float, dict[int, int]]:
    import httpx

    from tests.support import ServerProcess, make_repo

    with tempfile.TemporaryDirectory(prefix="shipyard-guess-") as tmp:
        project = make_repo(Path(tmp) / "project")
        server = ServerProcess(project, {"SHIPYARD_DISPATCHER_AUTOSTART": "false",
                                         "SHIPYARD_ACCESS_TOKEN": TOKEN, "PYTHONPATH": str(root)})
        server.start()
        codes: dict[int, int] = {}
        try:
            with httpx.Client(base_url=server.url, timeout=10) as http:
                started = time.perf_counter()
                n = 0
                while time.perf_counter() - started < seconds:
                    code = http.get("/agent/plans", headers={"Authorization": f"Bearer guess-{n:024d}"}).status_code
                    codes[code] = codes.get(code, 0) + 1
                    n += 1
                elapsed = time.perf_counter() - started
        finally:
            server.stop()
    return codes.get(401, 0) / elapsed, n / elapsed, codes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args()
    root = args.root.resolve()
    sys.path.insert(0, str(root))
    checked, answered = [], []
    for run in range(args.runs):
        per_s, all_per_s, codes = one_run(root, args.seconds)
        checked.append(per_s)
        answered.append(all_per_s)
        print(f"run {run + 1}: {per_s:,.1f} checked guesses/s ({all_per_s:,.0f} answers/s; codes {codes})")
    print(f"checked guesses/s over {args.runs} runs of {args.seconds:g} s: min {min(checked):,.1f}  "
          f"median {statistics.median(checked):,.1f}  max {max(checked):,.1f}")


if __name__ == "__main__":
    main()
