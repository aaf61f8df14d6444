"""How much does Shipyard's git layer cost per task over the same raw git commands?

Builds a repository of many small files in nested folders (one commit), then for
each of N tasks runs Shipyard's per-task git work through ``backend.git``:

    add_worktree → write one file → commit_all → integrate → remove_worktree → delete_branch

and the same work as raw git commands run directly via subprocess:

    worktree add -B → add -A + commit → merge-tree --write-tree + commit-tree +
    update-ref (CAS) → worktree remove --force → branch -D

The two sides alternate task by task so disk-cache drift hits both equally, and
each integrates into its own branch so both do real merges. Prints the per-task
median of both, the ratio (target ≤ 1.5×), Shipyard's per-step medians and how
many git processes each side starts per task. Run by hand:

    .venv/bin/python bench/git_overhead.py [--files 20000] [--tasks 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.git import GitRepo, command

ENV = {**os.environ, "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}


def raw(cwd: Path, *args: str, input: str | None = None) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=ENV, capture_output=True, text=True, input=input,
        timeout=900, check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


def make_repo(root: Path, files: int) -> Path:
    """``files`` small files, 100 per folder, folders nested two deep; one commit."""
    project = root / "project"
    project.mkdir()
    raw(project, "init", "-q", "-b", "main")
    raw(project, "config", "user.name", "Bench")
    raw(project, "config", "user.email", "bench@localhost")
    per_dir = 100
    for i in range(files):
        d = project / f"pkg{i // (per_dir * 20):03d}" / f"mod{(i // per_dir) % 20:02d}"
        if i % per_dir == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"file{i % per_dir:03d}.py").write_text(f"# file {i}\nVALUE = {i}\n")
    raw(project, "add", "-A")
    raw(project, "commit", "-q", "-m", "initial: many files")
    return project


def shipyard_task(repo: GitRepo, wt: Path, i: int, steps: dict[str, list[float]]) -> float:
    branch = f"shipyard/task-{i}"
    t0 = time.perf_counter()
    marks = [t0]
    repo.add_worktree(wt, branch, "main")
    marks.append(time.perf_counter())
    (wt / f"task_{i}.txt").write_text(f"work of task {i}\n")
    sha = repo.commit_all(wt, f"task {i}")
    assert sha is not None
    marks.append(time.perf_counter())
    outcome = repo.integrate(branch, "shipyard/integration", f"Merge task {i}")
    assert outcome.ok, outcome.message
    marks.append(time.perf_counter())
    repo.remove_worktree(wt)
    marks.append(time.perf_counter())
    repo.delete_branch(branch)
    marks.append(time.perf_counter())
    for name, a, b in zip(
        ("add_worktree", "write+commit_all", "integrate", "remove_worktree", "delete_branch"),
        marks, marks[1:], strict=False,
    ):
        steps[name].append(b - a)
    return marks[-1] - t0


def raw_task(project: Path, wt: Path, i: int) -> float:
    branch = f"raw/task-{i}"
    t0 = time.perf_counter()
    raw(project, "worktree", "add", "-q", "-B", branch, str(wt), "main")
    (wt / f"task_{i}.txt").write_text(f"work of task {i}\n")
    raw(wt, "add", "-A")
    raw(wt, "commit", "-q", "-m", f"task {i}")
    old = raw(project, "rev-parse", "refs/heads/raw/integration")
    tree = raw(project, "merge-tree", "--write-tree", old, branch).splitlines()[0]
    new = raw(project, "commit-tree", tree, "-p", old, "-p", branch, "-m", f"Merge task {i}")
    raw(project, "update-ref", "refs/heads/raw/integration", new, old)
    raw(project, "worktree", "remove", "--force", str(wt))
    raw(project, "branch", "-D", branch)
    return time.perf_counter() - t0


def count_git_calls() -> list[int]:
    """Wrap backend.git.command.run (every git command but diff's stream) to count the git processes Shipyard starts."""
    counter = [0]
    original = command.run

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        counter[0] += 1
        return original(*args, **kwargs)

    command.run = counting  # type: ignore[assignment]
    return counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument(
        "--dir", type=Path, default=None,
        help="where to build the scratch repository (default: the system temp dir; "
        "e.g. /dev/shm to take the disk out of the figures)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="shipyard-bench-", dir=args.dir))
    try:
        t = time.perf_counter()
        project = make_repo(tmp, args.files)
        print(f"git {raw(project, 'version').split()[-1]}, {os.cpu_count()} CPUs")
        print(f"repository: {args.files:,} files in {tmp}, built in "
              f"{time.perf_counter() - t:.1f} s")
        repo = GitRepo(project)
        repo.ensure_branch("shipyard/integration", "main")
        raw(project, "branch", "raw/integration", "main")
        wt_root = tmp / "worktrees"
        counter = count_git_calls()

        # One warm-up task each, not counted (first checkout warms the page cache).
        shipyard_task(repo, wt_root / "warm-s", -1, defaultdict(list))
        raw_task(project, wt_root / "warm-r", -1)

        ours: list[float] = []
        theirs: list[float] = []
        steps: dict[str, list[float]] = defaultdict(list)
        calls: list[int] = []
        for i in range(args.tasks):
            # Alternate who goes first, so neither side always follows the other's
            # worktree removal (deleting 20k files can slow the next checkout).
            if i % 2:
                theirs.append(raw_task(project, wt_root / f"r{i}", i))
            before = counter[0]
            ours.append(shipyard_task(repo, wt_root / f"s{i}", i, steps))
            calls.append(counter[0] - before)
            if not i % 2:
                theirs.append(raw_task(project, wt_root / f"r{i}", i))

        med_ours = statistics.median(ours)
        med_raw = statistics.median(theirs)
        print(f"tasks: {args.tasks} per side, interleaved")
        print(f"shipyard per task: median {med_ours * 1000:7.1f} ms "
              f"(min {min(ours) * 1000:.1f}, max {max(ours) * 1000:.1f}); "
              f"{statistics.median(calls):.0f} git processes")
        print(f"raw git  per task: median {med_raw * 1000:7.1f} ms "
              f"(min {min(theirs) * 1000:.1f}, max {max(theirs) * 1000:.1f}); 10 git processes")
        print(f"ratio shipyard/raw: {med_ours / med_raw:.2f}x (target <= 1.5x)")
        print("shipyard steps (median ms):", ", ".join(
            f"{name} {statistics.median(v) * 1000:.1f}" for name, v in steps.items()
        ))
        merged = raw(project, "ls-tree", "--name-only", "shipyard/integration")
        assert all(f"task_{i}.txt" in merged for i in range(args.tasks))
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
