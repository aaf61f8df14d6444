"""The warm worktree pool: reused worktrees are exactly the commit a task needs, and nothing else.

Real git throughout; the pool is driven the way the dispatcher drives it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from backend.git import GitError, GitRepo
from backend.worktree_pool import WorktreePool
from tests.support import git, make_repo


def commit_files(repo: Path, files: dict[str, str | None], message: str) -> str:
    """Write (or delete, for None) files in the project and commit; returns the sha."""
    for name, text in files.items():
        target = repo / name
        if text is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "project", {
        ".gitignore": "build/\n*.log\n.env\n",
        "README.md": "# demo\n",
        "src/app.py": "print('v1')\n",
        "src/old.py": "OLD = 1\n",
    })


def pool_for(project: Path, size: int = 1) -> WorktreePool:
    return WorktreePool(GitRepo(project), project / ".shipyard" / "worktrees", size)


def exactly(worktree: Path, commit: str) -> None:
    """The worktree holds ``commit`` and nothing else: no change, no untracked, no ignored file."""
    assert git(worktree, "rev-parse", "HEAD").strip() == commit
    assert git(worktree, "status", "--porcelain", "--ignored", "--untracked-files=all") == ""
    on_disk = sorted(str(p.relative_to(worktree)) for p in worktree.rglob("*")
                     if p.is_file() and ".git" not in p.relative_to(worktree).parts)
    assert on_disk == sorted(git(worktree, "ls-tree", "-r", "--name-only", commit).split())


def test_reuse_leaves_nothing_of_the_previous_task(project: Path) -> None:
    pool = pool_for(project)
    base = git(project, "rev-parse", "HEAD").strip()
    first = project / ".shipyard" / "worktrees" / "task-a"
    assert pool.checkout(first, base, "shipyard/task-a") is False  # an empty pool: a fresh worktree
    # everything an agent (or its build) may leave behind
    (first / "src" / "app.py").write_text("print('edited, not committed')\n")
    (first / "notes.txt").write_text("untracked\n")
    (first / "build").mkdir()
    (first / "build" / "out.bin").write_bytes(b"\0" * 100)
    (first / "debug.log").write_text("ignored\n")
    (first / ".env").write_text("SECRET=1\n")
    (first / "staged.py").write_text("x = 1\n")
    git(first, "add", "staged.py")
    nested = first / "vendor" / "lib"
    nested.mkdir(parents=True)
    git(nested, "init", "-q")
    (nested / "lib.c").write_text("int x;\n")
    git(first, "rm", "-q", "--cached", "src/old.py")
    pool.release(first)
    assert not first.exists()
    assert pool.status() == {"size": 1, "idle": 1, "lent": 0}

    second = project / ".shipyard" / "worktrees" / "task-b"
    assert pool.checkout(second, base, "shipyard/task-b") is True
    exactly(second, base)
    assert git(second, "symbolic-ref", "HEAD").strip() == "refs/heads/shipyard/task-b"
    assert (second / "src" / "app.py").read_text() == "print('v1')\n"
    # nothing of the first task's repository is left: not its branch, not its reflog
    assert git(second, "for-each-ref", "--format=%(refname)").split() == ["refs/heads/shipyard/task-b"]
    assert not (second / ".git" / "logs" / "refs" / "heads" / "shipyard" / "task-a").exists()
    # and the project never had it (a task's branch lives in its own repository until fetched back)
    assert git(project, "branch", "--list", "shipyard/task-a") == ""


def test_a_task_starts_from_exactly_the_commit_it_asks_for(project: Path) -> None:
    pool = pool_for(project)
    first_commit = git(project, "rev-parse", "HEAD").strip()
    later = commit_files(project, {"src/app.py": "print('v2')\n", "src/old.py": None,
                                   "src/new/mod.py": "NEW = 2\n"}, "later")
    wt = project / ".shipyard" / "worktrees"
    pool.checkout(wt / "t1", later, "shipyard/task-1")
    exactly(wt / "t1", later)
    pool.release(wt / "t1")
    # back to the older commit (a dependency-less task started from an older base)...
    assert pool.checkout(wt / "t2", first_commit, "shipyard/task-2") is True
    exactly(wt / "t2", first_commit)
    assert not (wt / "t2" / "src" / "new").exists()
    pool.release(wt / "t2")
    # ...and forward again, detached (as for a test run of an integrated result)
    assert pool.checkout(wt / "t3", later, None) is True
    exactly(wt / "t3", later)
    assert git(wt / "t3", "rev-parse", "--abbrev-ref", "HEAD").strip() == "HEAD"


def test_a_task_branch_that_already_exists_is_reset_to_the_base(project: Path) -> None:
    pool = pool_for(project)
    base = git(project, "rev-parse", "HEAD").strip()
    wt = project / ".shipyard" / "worktrees" / "t"
    pool.checkout(wt, base, "shipyard/task-t")
    (wt / "work.txt").write_text("attempt 1\n")
    git(wt, "add", "-A")
    git(wt, "-c", "user.name=A", "-c", "user.email=a@b", "commit", "-q", "-m", "attempt 1")
    pool.git.fetch_task_branch(wt, "shipyard/task-t")  # a failed task keeps its branch
    pool.release(wt)
    kept = git(project, "rev-parse", "shipyard/task-t").strip()
    assert kept != base
    assert pool.checkout(wt, base, "shipyard/task-t") is True  # the rerun, same path
    exactly(wt, base)
    assert git(wt, "rev-parse", "shipyard/task-t").strip() == base
    # the project's branch moves only when the rerun's work is fetched back
    assert git(project, "rev-parse", "shipyard/task-t").strip() == kept


@pytest.mark.parametrize("trap", ["assume-unchanged", "rebase"])
def test_a_worktree_git_would_not_fully_reset_is_replaced(project: Path, trap: str) -> None:
    pool = pool_for(project)
    base = commit_files(project, {"src/b.py": "B = 1\n"}, "second")
    wt = project / ".shipyard" / "worktrees"
    pool.checkout(wt / "t1", base, "shipyard/task-1")
    if trap == "assume-unchanged":
        # an edit git is told not to look at would survive a checkout --force
        git(wt / "t1", "update-index", "--assume-unchanged", "src/app.py")
        (wt / "t1" / "src" / "app.py").write_text("hidden edit\n")
    else:
        git(wt / "t1", "-c", "user.name=A", "-c", "user.email=a@b", "commit", "-q",
            "--allow-empty", "-m", "x")
        # stop at the first commit to edit it: the rebase stays in progress
        subprocess.run(["git", "-c", "sequence.editor=sed -i 1s/^pick/edit/", "rebase", "-i", "HEAD~2"],
                       cwd=wt / "t1", capture_output=True, text=True, check=True)
        marker = git(wt / "t1", "rev-parse", "--path-format=absolute", "--git-path", "rebase-merge")
        assert Path(marker.strip()).is_dir()
    pool.release(wt / "t1")
    assert pool.checkout(wt / "t2", base, "shipyard/task-2") is False  # discarded, created afresh
    exactly(wt / "t2", base)
    assert (wt / "t2" / "src" / "app.py").read_text() == "print('v1')\n"


def test_recovery_adopts_a_crashed_tasks_worktree_and_cleans_it_before_reuse(project: Path) -> None:
    base = git(project, "rev-parse", "HEAD").strip()
    wt = project / ".shipyard" / "worktrees"
    crashed = pool_for(project)
    crashed.checkout(wt / "crashed", base, "shipyard/task-crashed")
    (wt / "crashed" / "build").mkdir()
    (wt / "crashed" / "build" / "half.o").write_text("half-written\n")
    (wt / "crashed" / "left.txt").write_text("left behind\n")
    (wt / "stray").mkdir()  # an interrupted worktree add: a folder git does not know
    # a new server: a new pool recovers what is on disk (no task is running)
    pool = pool_for(project)
    pool.recover(live=set())
    assert sorted(p.name for p in wt.iterdir()) == [".pool"]
    assert pool.status()["idle"] == 1
    assert pool.checkout(wt / "next", base, "shipyard/task-next") is True
    exactly(wt / "next", base)


def test_warming_fills_the_pool_and_extra_worktrees_are_removed(project: Path) -> None:
    base = git(project, "rev-parse", "HEAD").strip()
    wt = project / ".shipyard" / "worktrees"
    pool = pool_for(project, size=2)
    pool.warm(base)
    assert pool._warming is not None
    pool._warming.join(60)
    assert pool.status() == {"size": 2, "idle": 2, "lent": 0}
    for name in ("a", "b", "c"):
        pool.checkout(wt / name, base, f"shipyard/task-{name}")
    assert pool.status()["idle"] == 0
    for name in ("a", "b", "c"):
        pool.release(wt / name)
    assert pool.status() == {"size": 2, "idle": 2, "lent": 0}
    # two pooled repositories of their own, no linked worktree of the project's .git
    assert git(project, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert sorted(p.name for p in wt.iterdir()) == [".pool"]
    pooled = list((wt / ".pool").iterdir())
    assert len(pooled) == 2 and all((p / ".git").is_dir() for p in pooled)


def test_something_in_the_way_fails_that_task_only(project: Path) -> None:
    base = git(project, "rev-parse", "HEAD").strip()
    wt = project / ".shipyard" / "worktrees"
    pool = pool_for(project, size=2)
    pool.checkout(wt / "a", base, "shipyard/task-a")
    pool.release(wt / "a")
    (wt / "blocked").mkdir()
    (wt / "blocked" / "mine.txt").write_text("not Shipyard's\n")
    with pytest.raises(GitError, match="already there"):
        pool.checkout(wt / "blocked", base, "shipyard/task-blocked")
    assert (wt / "blocked" / "mine.txt").read_text() == "not Shipyard's\n"
    assert pool.status()["idle"] == 1  # the pool is intact
    assert pool.checkout(wt / "b", base, "shipyard/task-b") is True
