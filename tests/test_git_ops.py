"""The git layer, against real git in temporary repositories.

The promises under test: branches and worktrees are created and removed without
ever touching the user's own checkout; integration happens in the object store
and publishes with a compare-and-swap; landing only writes a checkout that is
clean, and every refusal names exactly what is in the way.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from pathlib import Path

import pytest

from backend.git import GitError, GitRepo, NotAGitRepository

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- helpers


def git(cwd: Path, *args: str, input: str | None = None) -> str:
    """Run git as a user would (used for setup and for checking results)."""
    proc = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, input=input, timeout=60,
        env={**os.environ, "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"},
    )
    assert proc.returncode == 0, f"git {' '.join(args)} failed: {proc.stderr}"
    return proc.stdout.strip()


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def commit_on(repo: GitRepo, branch: str, files: dict[str, str], wt_root: Path) -> str:
    """Commit ``files`` on ``branch`` (created from main if missing) through a worktree."""
    start = repo.rev_parse(branch) or repo.rev_parse("main")
    assert start is not None
    path = wt_root / branch.replace("/", "-")
    repo.add_worktree(path, branch, start)
    for name, text in files.items():
        write(path / name, text)
    sha = repo.commit_all(path, f"change on {branch}")
    repo.remove_worktree(path)
    assert sha is not None
    return sha


def snapshot(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` (including .git/index and HEAD) → content hash."""
    result = {}
    for root, dirs, files in os.walk(directory):
        rel_root = Path(root).relative_to(directory)
        if rel_root.parts[:2] in {(".git", "objects"), (".git", "logs"), (".git", "refs"),
                                  (".git", "worktrees")}:
            dirs[:] = []
            continue
        for name in files:
            rel = rel_root / name
            if rel.parts[0] == ".git" and rel.name not in {"index", "HEAD"}:
                continue
            result[str(rel)] = hashlib.sha256((Path(root) / name).read_bytes()).hexdigest()
    return result


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A repository with one commit on ``main`` and a local identity."""
    path = tmp_path / "project"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test User")
    git(path, "config", "user.email", "test@example.com")
    write(path / "README.md", "hello\n")
    write(path / "src" / "app.py", "line one\nline two\nline three\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


@pytest.fixture
def repo(project: Path) -> GitRepo:
    return GitRepo(project)


@pytest.fixture
def wt_root(tmp_path: Path) -> Path:
    return tmp_path / "worktrees"


# --------------------------------------------------------------------------- opening


def test_not_a_repository_is_a_plain_sentence(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(NotAGitRepository) as info:
        GitRepo(plain)
    assert str(info.value).startswith(f"{plain} is not a git repository")
    assert "git init" in str(info.value)

    with pytest.raises(NotAGitRepository, match="does not exist"):
        GitRepo(tmp_path / "missing")


def test_opening_a_subdirectory_finds_the_top_level(repo: GitRepo, project: Path) -> None:
    inner = GitRepo(project / "src")
    assert inner.root == repo.root == project.resolve()
    assert inner.lock is repo.lock
    assert repo.current_branch() == "main"


def test_reads(repo: GitRepo, project: Path) -> None:
    head = git(project, "rev-parse", "HEAD")
    assert repo.rev_parse("main") == head
    assert repo.rev_parse("HEAD") == head
    assert repo.rev_parse("no-such-branch") is None
    assert repo.branch_exists("main")
    assert not repo.branch_exists("nope")
    git(project, "checkout", "-q", "--detach")
    assert repo.current_branch() is None
    with pytest.raises(GitError, match="not a valid"):
        repo.rev_parse("--all")


# --------------------------------------------------------------------------- branches


def test_ensure_branch_is_idempotent(repo: GitRepo, project: Path, wt_root: Path) -> None:
    main = repo.rev_parse("main")
    assert repo.ensure_branch("shipyard/integration", "main") == main
    assert repo.branch_exists("shipyard/integration")
    moved = commit_on(repo, "shipyard/integration", {"x.txt": "x\n"}, wt_root)
    # Existing branch: left where it is, whatever start point is passed.
    assert repo.ensure_branch("shipyard/integration", "main") == moved
    assert repo.rev_parse("shipyard/integration") == moved
    assert git(project, "status", "--porcelain") == ""
    with pytest.raises(GitError, match="start point 'nope' does not exist"):
        repo.ensure_branch("other", "nope")


def test_delete_branch(repo: GitRepo) -> None:
    repo.ensure_branch("gone-soon", "main")
    repo.delete_branch("gone-soon")
    assert not repo.branch_exists("gone-soon")
    repo.delete_branch("gone-soon")  # missing is fine
    with pytest.raises(GitError, match="main"):
        repo.delete_branch("main")  # checked out in the project dir


# --------------------------------------------------------------------------- worktrees


def test_worktree_add_list_remove(repo: GitRepo, project: Path, wt_root: Path) -> None:
    path = wt_root / "task-1"
    repo.add_worktree(path, "task/1", "main")
    assert (path / "src" / "app.py").read_text() == "line one\nline two\nline three\n"
    listed = {str(w["path"]): w for w in repo.list_worktrees()}
    entry = listed[str(path.resolve())]
    assert entry["branch"] == "task/1"
    assert entry["head"] == repo.rev_parse("main")
    assert repo.list_worktrees()[0]["path"] == project.resolve()
    assert repo.list_worktrees()[0]["branch"] == "main"

    repo.remove_worktree(path)
    assert not path.exists()
    assert str(path.resolve()) not in {str(w["path"]) for w in repo.list_worktrees()}
    assert repo.branch_exists("task/1")  # the branch outlives its worktree


def test_remove_worktree_tolerates_deleted_directory(repo: GitRepo, wt_root: Path) -> None:
    import shutil

    path = wt_root / "task-2"
    repo.add_worktree(path, "task/2", "main")
    shutil.rmtree(path)
    repo.remove_worktree(path)
    assert len(repo.list_worktrees()) == 1
    repo.remove_worktree(wt_root / "never-existed")

    # A stale registration does not block re-creating a worktree at the same path.
    repo.add_worktree(path, "task/2", "main")
    shutil.rmtree(path)
    repo.add_worktree(path, "task/2b", "main")
    assert (path / "README.md").exists()
    repo.prune_worktrees()
    assert len(repo.list_worktrees()) == 2


def test_remove_worktree_leaves_unknown_directories_alone(
    repo: GitRepo, project: Path, tmp_path: Path
) -> None:
    stranger = tmp_path / "not-a-worktree"
    write(stranger / "precious.txt", "keep me\n")
    with pytest.raises(GitError, match="leaves it alone"):
        repo.remove_worktree(stranger)
    assert (stranger / "precious.txt").read_text() == "keep me\n"
    with pytest.raises(GitError, match="project's own checkout"):
        repo.remove_worktree(project)


def test_add_worktree_resets_an_idle_branch_but_not_a_checked_out_one(
    repo: GitRepo, wt_root: Path
) -> None:
    main = repo.rev_parse("main")
    old = commit_on(repo, "task/3", {"a.txt": "a\n"}, wt_root)
    assert old != main
    path = wt_root / "again"
    repo.add_worktree(path, "task/3", "main")
    assert repo.rev_parse("task/3") == main
    assert not (path / "a.txt").exists()

    with pytest.raises(GitError, match="already checked out in"):
        repo.add_worktree(wt_root / "twice", "task/3", "main")
    with pytest.raises(GitError, match="already checked out in"):
        repo.add_worktree(wt_root / "main-again", "main", "main")
    with pytest.raises(GitError, match="is a worktree already"):
        repo.add_worktree(path, "task/4", "main")
    write(wt_root / "occupied" / "file.txt", "x\n")
    with pytest.raises(GitError, match="is not empty"):
        repo.add_worktree(wt_root / "occupied", "task/4", "main")
    assert not repo.branch_exists("task/4")


def test_detached_worktree(repo: GitRepo, wt_root: Path) -> None:
    path = wt_root / "readonly"
    repo.add_detached_worktree(path, "main")
    entry = next(w for w in repo.list_worktrees() if w["path"] == path.resolve())
    assert entry["detached"] and entry["branch"] is None
    assert entry["head"] == repo.rev_parse("main")
    repo.remove_worktree(path)


def test_concurrent_worktree_adds_all_succeed(repo: GitRepo, wt_root: Path) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(10)

    def add(i: int) -> None:
        try:
            other = GitRepo(repo.root)  # separate objects share the per-repo lock
            barrier.wait()
            other.add_worktree(wt_root / "same-name" / str(i) / "wt", f"task/{i}", "main")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    branches = {w["branch"] for w in repo.list_worktrees()}
    assert branches == {"main"} | {f"task/{i}" for i in range(10)}


def test_writes_wait_for_the_repository_lock(repo: GitRepo, wt_root: Path) -> None:
    path = wt_root / "waits"
    done = threading.Event()
    # A GitRepo opened on a linked worktree shares the lock of the main checkout.
    repo.add_worktree(wt_root / "other", "task/other", "main")
    assert GitRepo(wt_root / "other").lock is repo.lock

    def add() -> None:
        GitRepo(repo.root).add_worktree(path, "task/waits", "main")
        done.set()

    with repo.lock:
        worker = threading.Thread(target=add)
        worker.start()
        assert not done.wait(0.5), "add_worktree ran while another writer held the lock"
    assert done.wait(30)
    worker.join()
    assert (path / "README.md").exists()


# --------------------------------------------------------------------------- commits


def test_commit_all_with_and_without_changes(repo: GitRepo, wt_root: Path) -> None:
    path = wt_root / "task"
    repo.add_worktree(path, "task/c", "main")
    assert not repo.is_dirty(path)
    assert repo.commit_all(path, "nothing") is None

    write(path / "new" / "file.txt", "new\n")
    write(path / "README.md", "changed\n")
    (path / "src" / "app.py").unlink()
    assert repo.is_dirty(path)
    sha = repo.commit_all(path, "agent work\n\nwith a body")
    assert sha is not None and sha == repo.rev_parse("task/c")
    assert not repo.is_dirty(path)
    assert git(path, "log", "-1", "--format=%B") == "agent work\n\nwith a body"
    assert git(path, "log", "-1", "--format=%an") == "Test User"  # configured identity kept
    assert sorted(repo.changed_files("main", "task/c")) == [
        "README.md", "new/file.txt", "src/app.py"
    ]
    assert repo.commits_between("main", "task/c") == 1

    # The agent may commit by itself: nothing left to commit, the branch keeps its work.
    write(path / "self.txt", "s\n")
    git(path, "add", "self.txt")
    git(path, "commit", "-q", "-m", "agent committed")
    assert repo.commit_all(path, "nothing left") is None
    assert repo.commits_between("main", "task/c") == 2


def test_commit_all_refuses_the_project_dir(repo: GitRepo, project: Path) -> None:
    write(project / "user.txt", "mine\n")
    with pytest.raises(GitError, match="project's own checkout"):
        repo.commit_all(project, "no")
    with pytest.raises(GitError, match="not a worktree"):
        repo.commit_all(project / "src", "no")
    assert git(project, "status", "--porcelain") == "?? user.txt"


def test_commit_without_any_identity_uses_the_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / "none"))
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "fresh"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    write(path / "a.txt", "a\n")
    git(path, "add", "a.txt")
    git(path, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-q", "-m", "init")
    repo = GitRepo(path)
    assert repo.identity_config() == ["user.name=Shipyard", "user.email=shipyard@localhost"]
    wt = tmp_path / "wt"
    repo.add_worktree(wt, "t", "main")
    write(wt / "b.txt", "b\n")
    assert repo.commit_all(wt, "by shipyard")
    assert git(wt, "log", "-1", "--format=%an <%ae>") == "Shipyard <shipyard@localhost>"
    # The fallback is passed per command; the user's configuration is not written.
    assert "user." not in (path / ".git" / "config").read_text()


def test_hooks_do_not_run(repo: GitRepo, project: Path, wt_root: Path) -> None:
    marker = project.parent / "hook-ran"
    hook = project / ".git" / "hooks" / "pre-commit"
    write(hook, f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    hook.chmod(0o755)
    path = wt_root / "hooked"
    repo.add_worktree(path, "task/h", "main")
    write(path / "x.txt", "x\n")
    assert repo.commit_all(path, "no hooks") is not None
    assert not marker.exists()


# --------------------------------------------------------------------------- integration


def test_integrate_leaves_the_users_dirty_tree_untouched(
    repo: GitRepo, project: Path, wt_root: Path
) -> None:
    # The user is mid-work: a modified tracked file and an untracked one.
    write(project / "README.md", "user's unsaved edit\n")
    write(project / "scratch.txt", "user's notes\n")
    before = snapshot(project)
    head_before = git(project, "rev-parse", "HEAD")
    status_before = git(project, "status", "--porcelain")

    repo.ensure_branch("shipyard/integration", "main")
    commit_on(repo, "task/a", {"a.txt": "from a\n"}, wt_root)
    commit_on(repo, "task/b", {"b/b.txt": "from b\n"}, wt_root)
    first = repo.integrate("task/a", "shipyard/integration", "Merge task a")
    second = repo.integrate("task/b", "shipyard/integration", "Merge task b")

    assert first.ok and first.fast_forward
    assert second.ok and not second.fast_forward
    assert second.commit == repo.rev_parse("shipyard/integration")
    assert git(project, "log", "-1", "--format=%s", "shipyard/integration") == "Merge task b"
    parents = git(project, "log", "-1", "--format=%P", "shipyard/integration").split()
    assert parents == [first.commit, repo.rev_parse("task/b")]
    files = git(project, "ls-tree", "-r", "--name-only", "shipyard/integration").splitlines()
    assert {"a.txt", "b/b.txt", "README.md", "src/app.py"} <= set(files)

    assert snapshot(project) == before  # every byte, including .git/index and HEAD
    assert git(project, "rev-parse", "HEAD") == head_before
    assert git(project, "status", "--porcelain") == status_before
    assert (project / "README.md").read_text() == "user's unsaved edit\n"

    again = repo.integrate("task/a", "shipyard/integration", "noop")
    assert again.ok and again.up_to_date
    assert repo.rev_parse("shipyard/integration") == second.commit


def test_integrate_conflict_names_the_path_and_leaves_the_target(
    repo: GitRepo, project: Path, wt_root: Path
) -> None:
    repo.ensure_branch("integration", "main")
    commit_on(repo, "task/x", {"src/app.py": "line one\nX\nline three\n"}, wt_root)
    commit_on(repo, "task/y", {"src/app.py": "line one\nY\nline three\n"}, wt_root)
    assert repo.integrate("task/x", "integration", "x").ok
    before = repo.rev_parse("integration")

    outcome = repo.integrate("task/y", "integration", "y")
    assert not outcome.ok
    assert outcome.commit is None
    assert outcome.conflicts == ["src/app.py"]
    assert "would conflict in: src/app.py" in outcome.message
    assert any("Merge conflict in src/app.py" in d for d in outcome.conflict_details)
    assert repo.rev_parse("integration") == before
    assert git(project, "status", "--porcelain") == ""


def test_integrate_refuses_a_checked_out_target(repo: GitRepo, wt_root: Path) -> None:
    commit_on(repo, "task/z", {"z.txt": "z\n"}, wt_root)
    before = repo.rev_parse("main")
    outcome = repo.integrate("task/z", "main", "no")
    assert not outcome.ok
    assert "is checked out in" in outcome.message
    assert repo.rev_parse("main") == before


def test_merge_commit_is_unreferenced(repo: GitRepo, project: Path, wt_root: Path) -> None:
    a = commit_on(repo, "task/m1", {"m1.txt": "1\n"}, wt_root)
    b = commit_on(repo, "task/m2", {"m2.txt": "2\n"}, wt_root)
    ff = repo.merge_commit("main", a, "ff")
    assert ff.ok and ff.fast_forward and ff.commit == a
    merged = repo.merge_commit(a, b, "both")
    assert merged.ok and not merged.fast_forward and merged.commit
    assert git(project, "branch", "--contains", merged.commit) == ""
    up = repo.merge_commit(a, "main", "noop")
    assert up.ok and up.up_to_date and up.commit == a


def test_update_ref_is_compare_and_swap(repo: GitRepo, wt_root: Path) -> None:
    main = repo.rev_parse("main")
    assert main is not None
    repo.ensure_branch("target", "main")
    newer = commit_on(repo, "task/u", {"u.txt": "u\n"}, wt_root)

    assert repo.update_ref("target", newer, main) is True
    assert repo.update_ref("target", main, main) is False  # it moved: stale old value
    assert repo.rev_parse("target") == newer
    assert repo.update_ref("refs/heads/fresh", newer, None) is True  # create
    assert repo.update_ref("fresh", main, None) is False  # already exists
    assert repo.rev_parse("fresh") == newer
    with pytest.raises(GitError, match="checked out in"):
        repo.update_ref("main", newer, main)
    with pytest.raises(GitError, match="never moves HEAD"):
        repo.update_ref("HEAD", newer, main)
    assert repo.rev_parse("main") == main



def test_checked_out_check_reads_head_files_like_git(repo: GitRepo, wt_root: Path) -> None:
    """The per-integration "checked out anywhere?" check answers as ``git worktree list`` does."""
    main = repo.rev_parse("main")
    assert main is not None
    repo.ensure_branch("elsewhere", "main")
    repo.ensure_branch("idle", "main")
    repo.add_worktree(wt_root / "a", "task/a", "main")
    repo.add_detached_worktree(wt_root / "d", main)
    git(repo.root, "worktree", "add", "-q", str(wt_root / "e"), "elsewhere")
    listed = repo.list_worktrees()
    assert repo._heads_from_files() is not None  # answered from the files, no git process
    for branch in ("main", "task/a", "elsewhere", "idle", "refs/heads/task/a"):
        slow = repo.checked_out_at(branch, listed)
        fast = repo.checked_out_at(branch)
        assert (fast and fast.resolve()) == (slow and slow.resolve()), branch
    assert repo.checked_out_at("idle") is None
    assert repo.checked_out_at("elsewhere").resolve() == (wt_root / "e").resolve()  # type: ignore[union-attr]
    newer = commit_on(repo, "task/n", {"n.txt": "n\n"}, wt_root)
    with pytest.raises(GitError, match=f"checked out in {wt_root / 'e'}"):
        repo.update_ref("elsewhere", newer, main)
    git(repo.root, "-C", str(wt_root / "e"), "checkout", "-q", "--detach")
    assert repo.update_ref("elsewhere", newer, main) is True  # no longer checked out: it moves

# --------------------------------------------------------------------------- landing


def test_land_not_checked_out_fast_forwards_the_ref(
    repo: GitRepo, project: Path, wt_root: Path
) -> None:
    repo.ensure_branch("release", "main")
    tip = commit_on(repo, "integration", {"feature.txt": "f\n"}, wt_root)
    outcome = repo.land("integration", "release")
    assert outcome.ok, outcome.message
    assert outcome.commit == tip == repo.rev_parse("release")
    assert "fast-forwarded" in outcome.message
    assert git(project, "status", "--porcelain") == ""


def test_land_not_checked_out_merges_when_both_moved(
    repo: GitRepo, project: Path, wt_root: Path
) -> None:
    repo.ensure_branch("release", "main")
    commit_on(repo, "release", {"hotfix.txt": "h\n"}, wt_root)
    commit_on(repo, "integration", {"feature.txt": "f\n"}, wt_root)
    outcome = repo.land("integration", "release")
    assert outcome.ok, outcome.message
    files = git(project, "ls-tree", "-r", "--name-only", "release").splitlines()
    assert {"hotfix.txt", "feature.txt"} <= set(files)


def test_land_checked_out_and_clean_updates_the_working_tree(
    repo: GitRepo, project: Path, wt_root: Path
) -> None:
    write(project / "ignored.log", "ignored\n")
    write(project / ".git" / "info" / "exclude", "*.log\n")
    tip = commit_on(repo, "integration", {"feature.txt": "f\n", "src/app.py": "new\n"}, wt_root)
    outcome = repo.land("integration", "main")
    assert outcome.ok, outcome.message
    assert outcome.commit == tip == git(project, "rev-parse", "HEAD")
    assert (project / "feature.txt").read_text() == "f\n"
    assert (project / "src" / "app.py").read_text() == "new\n"
    assert git(project, "status", "--porcelain") == ""
    assert (project / "ignored.log").read_text() == "ignored\n"


def test_land_checked_out_non_fast_forward_merges_cleanly(
    repo: GitRepo, project: Path, wt_root: Path
) -> None:
    commit_on(repo, "integration", {"feature.txt": "f\n"}, wt_root)
    write(project / "user.txt", "user commit\n")
    git(project, "add", "user.txt")
    git(project, "commit", "-q", "-m", "user work")
    user_head = git(project, "rev-parse", "HEAD")

    outcome = repo.land("integration", "main")
    assert outcome.ok, outcome.message
    assert "merged" in outcome.message
    head = git(project, "rev-parse", "HEAD")
    assert git(project, "log", "-1", "--format=%P", head).split()[0] == user_head
    assert (project / "feature.txt").exists() and (project / "user.txt").exists()
    assert git(project, "status", "--porcelain") == ""
    assert not (project / ".git" / "MERGE_HEAD").exists()


def test_land_refuses_a_dirty_checkout_naming_the_files(
    repo: GitRepo, project: Path, wt_root: Path
) -> None:
    commit_on(repo, "integration", {"feature.txt": "f\n"}, wt_root)
    write(project / "README.md", "edited\n")
    write(project / "src" / "app.py", "staged\n")
    git(project, "add", "src/app.py")
    write(project / "notes.txt", "untracked but harmless\n")
    before = snapshot(project)
    head = git(project, "rev-parse", "HEAD")

    outcome = repo.land("integration", "main")
    assert not outcome.ok
    assert outcome.message == (
        f"The base branch main is checked out in {project.resolve()} with uncommitted "
        "changes: README.md, src/app.py."
    )
    assert snapshot(project) == before
    assert git(project, "rev-parse", "HEAD") == head


def test_land_refuses_when_untracked_files_would_be_overwritten(
    repo: GitRepo, project: Path, wt_root: Path
) -> None:
    commit_on(repo, "integration", {"feature.txt": "f\n", "docs/guide.md": "g\n"}, wt_root)
    write(project / "feature.txt", "the user's own file\n")
    write(project / "docs", "a file where a folder will go\n")
    before = snapshot(project)

    outcome = repo.land("integration", "main")
    assert not outcome.ok
    assert "would overwrite untracked files there: " in outcome.message
    assert "feature.txt" in outcome.message and "docs" in outcome.message
    assert snapshot(project) == before


def test_land_will_not_overwrite_an_ignored_file_either(
    repo: GitRepo, project: Path, wt_root: Path
) -> None:
    commit_on(repo, "integration", {".env": "SECRET=placeholder\n"}, wt_root)
    write(project / ".git" / "info" / "exclude", ".env\n")
    write(project / ".env", "SECRET=the user's\n")
    outcome = repo.land("integration", "main")
    assert not outcome.ok and outcome.message.endswith("untracked files there: .env.")
    assert (project / ".env").read_text() == "SECRET=the user's\n"


def test_land_refuses_conflicts_naming_the_paths(
    repo: GitRepo, project: Path, wt_root: Path
) -> None:
    commit_on(repo, "integration", {"src/app.py": "line one\nOURS\nline three\n"}, wt_root)
    write(project / "src" / "app.py", "line one\nUSER\nline three\n")
    git(project, "commit", "-q", "-am", "user change")
    before = snapshot(project)
    outcome = repo.land("integration", "main")
    assert not outcome.ok
    assert outcome.message.endswith("merging would conflict in: src/app.py.")
    assert snapshot(project) == before
    assert not (project / ".git" / "MERGE_HEAD").exists()


def test_land_already_up_to_date(repo: GitRepo, project: Path) -> None:
    repo.ensure_branch("integration", "main")
    outcome = repo.land("integration", "main")
    assert outcome.ok
    assert "already up to date" in outcome.message
    assert outcome.commit == repo.rev_parse("main")


def test_land_into_a_branch_checked_out_in_another_worktree(
    repo: GitRepo, wt_root: Path
) -> None:
    repo.ensure_branch("release", "main")
    commit_on(repo, "integration", {"feature.txt": "f\n"}, wt_root)
    other = wt_root / "release-checkout"
    repo.add_worktree(other, "release", "main")
    write(other / "README.md", "dirty\n")
    refused = repo.land("integration", "release")
    assert not refused.ok and "README.md" in refused.message
    git(other, "checkout", "--", "README.md")
    landed = repo.land("integration", "release")
    assert landed.ok, landed.message
    assert (other / "feature.txt").read_text() == "f\n"


def test_land_refuses_a_checkout_in_the_middle_of_a_merge(
    repo: GitRepo, project: Path, wt_root: Path
) -> None:
    commit_on(repo, "integration", {"feature.txt": "f\n"}, wt_root)
    (project / ".git" / "MERGE_HEAD").write_text(git(project, "rev-parse", "HEAD") + "\n")
    outcome = repo.land("integration", "main")
    assert not outcome.ok and "a merge in progress" in outcome.message


def test_land_missing_branches(repo: GitRepo) -> None:
    assert "no branch nope" in repo.land("nope", "main").message
    repo.ensure_branch("integration", "main")
    assert "base branch gone does not exist" in repo.land("integration", "gone").message


# --------------------------------------------------------------------------- diffs


def test_diff_and_changed_files(repo: GitRepo, project: Path, wt_root: Path) -> None:
    commit_on(repo, "task/d", {"src/app.py": "line one\nchanged\nline three\n",
                               "added.txt": "+\n"}, wt_root)
    # A later commit on main must not show up: the diff is from the merge base.
    write(project / "main-only.txt", "m\n")
    git(project, "add", "main-only.txt")
    git(project, "commit", "-q", "-m", "main moves on")

    assert sorted(repo.changed_files("main", "task/d")) == ["added.txt", "src/app.py"]
    text = repo.diff("main", "task/d")
    assert "diff --git a/src/app.py b/src/app.py" in text
    assert "+changed" in text and "main-only" not in text

    short = repo.diff("main", "task/d", max_bytes=120)
    assert "[diff truncated by Shipyard" in short
    assert len(short.split("\n[diff truncated")[0].encode()) <= 120
    with pytest.raises(GitError, match="does not exist"):
        repo.diff("main", "nope")
