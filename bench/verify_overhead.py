"""What verifying the plan branch adds to a plan (issue 10 §2).

Starts a real Shipyard server whose "agent" is a trivial stand-in for ``claude`` (the
orchestrator answers ``--tasks`` tasks at once; each task writes one file, which
Shipyard commits and integrates), runs one plan per run, and reads the server's own
timestamps from the run logs:

* **added**: last task recorded completed → plan ready to land (verification recorded
  passed, or skipped without a command). This is all verification adds to the plan's
  wall-clock time: the verifier's wake-up, a worktree from the warm pool at the plan tip,
  the command, the records.
* **run**: the verification's recorded ``duration_s``: a worktree from the warm pool at the
  tip, the command, the worktree back to the pool; ``added - run`` is the rest (the wake-up on
  the task's completion, reading the plan, writing the records).

Compare ``--verify-command true`` (overhead only) with no command (``--verify-command ''``,
recorded as skipped) and with a real suite. Prints min/median/max over ``--runs``.

    .venv/bin/python bench/verify_overhead.py [--runs 3] [--tasks 3] [--files 2000] [--verify-command true]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.pickup import FAKE_AGENT, bench_bed, wait_for_warm_pool
from tests.support import ServerProcess

#: the stand-in's task branch writes one file per task (the orchestrator branch is pickup's)
WRITING_AGENT = FAKE_AGENT.replace(
    'echo \'{"type":"system","subtype":"init","session_id":"s","model":"fake","tools":[]}\'\necho \'{"type":"result"',
    'echo "$SHIPYARD_RUN" > "bench-$SHIPYARD_RUN.txt"\n'
    'echo \'{"type":"system","subtype":"init","session_id":"s","model":"fake","tools":[]}\'\necho \'{"type":"result"',
)


def ready(http: httpx.Client, plan_id: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        plan = http.get(f"/agent/plans/{plan_id}").json()
        state = plan["lifecycle"]["state"]
        if state in ("ready_to_land", "needs_attention"):
            return plan
        if state == "orchestration_failed":
            raise SystemExit(f"plan failed: {plan['error']}")
        time.sleep(0.01)
    raise SystemExit("the plan did not become ready to land")


def one_run(args: argparse.Namespace) -> tuple[float, float]:
    """(added ms, run ms) of one plan."""
    with tempfile.TemporaryDirectory(prefix="shipyard-verify-", dir=args.dir) as tmp:
        project, marks, env = bench_bed(Path(tmp), args.files, WRITING_AGENT)
        answer = [{"title": f"t{n}", "content": "x", "task_type": "chore"} for n in range(args.tasks)]
        (marks / "answer.json").write_text(json.dumps({"tasks": answer}))
        env = {**env, "SHIPYARD_VERIFY_COMMAND": args.verify_command, "SHIPYARD_MAX_PARALLEL_WORKERS": str(args.tasks)}
        server = ServerProcess(project, env).start()
        try:
            with server.client() as http:
                wait_for_warm_pool(http)
                plan_id = http.post("/agent/plans", json={"title": "bench", "content": "x"}).json()["id"]
                http.post(f"/agent/plans/{plan_id}/start").raise_for_status()
                plan = ready(http, plan_id)
                if plan["lifecycle"]["state"] != "ready_to_land":
                    raise SystemExit(f"plan needs attention: {plan['lifecycle']['detail']}")
                last_done = 0.0
                for task_id in plan["tasks"]:
                    events = http.get(f"/agent/tasks/{task_id}/log").json()["events"]
                    last_done = max(last_done, max(e["ts"] for e in events if e["kind"] == "completed"))
                log = http.get(f"/agent/plans/{plan_id}/log").json()["events"]
                verified = max(e["ts"] for e in log if e["kind"] == "verification"
                               and e["data"].get("status") in ("passed", "skipped"))
                command = (plan["verification"].get("duration_s") or 0.0) * 1000
        finally:
            server.stop()
    return (verified - last_done) * 1000, command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--files", type=int, default=0, help="files in the repository (0: a tiny one)")
    parser.add_argument("--verify-command", default="true", help="'' for none (recorded as skipped)")
    parser.add_argument("--dir", default=None, help="where the temporary repositories go")
    args = parser.parse_args()
    added: list[float] = []
    command: list[float] = []
    for n in range(args.runs):
        a, c = one_run(args)
        added.append(a)
        command.append(c)
        print(f"run {n + 1}: added {a:.0f} ms (verification run {c:.0f} ms)", flush=True)

    def figure(values: list[float]) -> str:
        return f"min {min(values):.0f} / median {statistics.median(values):.0f} / max {max(values):.0f} ms"

    what = repr(args.verify_command) if args.verify_command else "no command (skipped)"
    print(f"verify {what}, {args.tasks} tasks, {args.files or 'a tiny'} files, {args.runs} runs:")
    print(f"  last task completed -> ready to land: {figure(added)}")
    print(f"  of which the verification run:         {figure(command)}")


if __name__ == "__main__":
    main()
