"""Shipyard's git calls never run what a repository's config names; integrity snapshots see changes.

Part one plants a program in a real repository's ``.git`` (config, ``info/attributes``, hooks)
the way a hostile agent could. Each case first shows that plain git, as the user runs it, does
run the program (it writes a canary file), then runs every Shipyard operation on that
repository and checks the canary never appears. Part two checks
:mod:`backend.git.integrity` against real changes to a real repository.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from backend.git import GitRepo
from backend.git.command import git_argv, run
from backend.git.integrity import changes, snapshot
from backend.trust import is_tracked
from tests.support import commit_on, make_repo

pytestmark = pytest.mark.slow

APP = "".join(f"line {n}\n" for n in range(1, 8))


def git(cwd: Path, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run git exactly as a user would: their config, hooks and attributes all apply."""
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, input=input,
                          timeout=60, env={**os.environ, "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"})
    assert not check or proc.returncode == 0, f"git {' '.join(args)} failed: {proc.stderr}"
    return proc


def evil_program(tmp_path: Path, name: str, tail: str) -> tuple[Path, Path]:
    """A script that records each run in a canary file, then does ``tail``; (script, canary)."""
    canary = tmp_path / f"canary-{name}"
    script = tmp_path / f"evil-{name}.sh"
    script.write_text(f'#!/bin/sh\necho "$0 $*" >> "{canary}"\n{tail}\n')
    script.chmod(0o755)
    return script, canary


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A repository with a text file and two branches that change different lines of it."""
    repo = make_repo(tmp_path / "project", {"README.md": "# demo\n", "app.py": APP})
    commit_on(repo, "ctl-a", {"app.py": APP.replace("line 1", "line one")}, "a", parent="main")
    commit_on(repo, "ctl-b", {"app.py": APP.replace("line 7", "line seven")}, "b", parent="main")
    return repo


def attributes(project: Path, text: str) -> None:
    """Attributes in ``.git/info/attributes``: no commit needed, and they outrank .gitattributes."""
    path = project / ".git" / "info" / "attributes"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)


def exercise(project: Path, work: Path) -> None:
    """Every kind of git call Shipyard makes on a project, through its public API."""
    repo = GitRepo(project)
    main = repo.rev_parse("main")
    assert main is not None
    one, two = work / "one", work / "two"
    repo.add_worktree(one, "shipyard/task-1", main)
    (one / "app.py").write_text(APP.replace("line 1", "line first"))
    (one / "new.txt").write_text("new\n")
    assert repo.is_dirty(one)
    tip1 = repo.commit_all(one, "task 1")
    assert tip1 is not None
    repo.add_worktree(two, "shipyard/task-2", main)
    (two / "app.py").write_text(APP.replace("line 7", "line last"))
    tip2 = repo.commit_all(two, "task 2")
    assert tip2 is not None
    assert "line first" in repo.diff(main, tip1)
    assert "app.py" in repo.diff_stat(main, tip1)
    assert repo.changed_files(main, tip1) == ["app.py", "new.txt"]
    assert repo.find_trailer(tip1, "Shipyard-Task:") is None
    merged = repo.merge_commit(tip1, tip2, "merge the tasks")
    assert merged.ok, merged.message
    three = work / "three"  # a task's own repository (a clone borrowing the project's objects)
    repo.add_clone(three, tip1, "shipyard/task-3")
    into = repo.merge_into_worktree(three, tip2, "merge task 2 into task 1")
    assert into.ok, into.message
    assert "line last" in (three / "app.py").read_text()
    (three / "more.txt").write_text("more\n")
    assert repo.commit_in_clone(three, "task 3") is not None
    assert repo.fetch_task_branch(three, "shipyard/task-3") is not None
    repo.reset_clone(three, main, "shipyard/task-3")
    repo.remove_clone(three)
    repo.reset_worktree(two, main, "shipyard/task-2")
    landed = repo.land("shipyard/task-1", "main")
    assert landed.ok, landed.message
    assert "line first" in (project / "app.py").read_text()
    repo.remove_worktree(two)
    repo.remove_worktree(one)


def plant_fsmonitor(project: Path, tmp_path: Path) -> tuple[Path, Callable[[], object]]:
    script, canary = evil_program(tmp_path, "fsmonitor", "exit 1")
    git(project, "config", "core.fsmonitor", str(script))
    return canary, lambda: git(project, "status")


def plant_filter(kind: str) -> Callable[[Path, Path], tuple[Path, Callable[[], object]]]:
    def plant(project: Path, tmp_path: Path) -> tuple[Path, Callable[[], object]]:
        script, canary = evil_program(tmp_path, kind, "exit 1" if kind == "process" else "exec cat")
        git(project, "config", f"filter.evil.{kind}", str(script))
        attributes(project, "* filter=evil\n")
        if kind == "smudge":
            return canary, lambda: git(project, "cat-file", "--filters", "HEAD:app.py")
        return canary, lambda: git(project, "hash-object", "--path=app.py", "app.py", check=False)
    return plant


def plant_merge_driver(project: Path, tmp_path: Path) -> tuple[Path, Callable[[], object]]:
    script, canary = evil_program(tmp_path, "merge", "exit 0")  # "merged": would keep ours silently
    git(project, "config", "merge.evil.driver", f"{script} %A %O %B")
    attributes(project, "*.py merge=evil\n")
    return canary, lambda: git(project, "merge-tree", "--write-tree", "ctl-a", "ctl-b")


def plant_diff(key: str, tail: str) -> Callable[[Path, Path], tuple[Path, Callable[[], object]]]:
    def plant(project: Path, tmp_path: Path) -> tuple[Path, Callable[[], object]]:
        script, canary = evil_program(tmp_path, key.replace(".", "-"), tail)
        git(project, "config", key, str(script))
        attributes(project, "* diff=evil\n")
        return canary, lambda: git(project, "diff", "ctl-a", "ctl-b")
    return plant


def plant_hooks(project: Path, tmp_path: Path) -> tuple[Path, Callable[[], object]]:
    script, canary = evil_program(tmp_path, "hook", "exit 0")
    hooks = project / ".git" / "hooks"
    for name in ("pre-commit", "commit-msg", "post-commit", "post-checkout", "post-merge",
                 "pre-merge-commit", "reference-transaction", "post-rewrite"):
        (hooks / name).symlink_to(script)
    return canary, lambda: git(project, "commit", "--allow-empty", "-q", "-m", "control")


PLANTS = {
    "core.fsmonitor": plant_fsmonitor,
    "filter clean": plant_filter("clean"),
    "filter smudge": plant_filter("smudge"),
    "filter process": plant_filter("process"),
    "merge driver": plant_merge_driver,
    "diff.external": plant_diff("diff.external", "exit 0"),
    "diff driver command": plant_diff("diff.evil.command", "exit 0"),
    "textconv": plant_diff("diff.evil.textconv", 'cat "$1"'),
    "hooks": plant_hooks,
}


@pytest.mark.parametrize("kind", sorted(PLANTS))
def test_shipyard_git_calls_never_run_a_planted_program(project: Path, tmp_path: Path, kind: str) -> None:
    canary, control = PLANTS[kind](project, tmp_path)
    control()
    assert canary.exists(), f"the planted {kind} did not run for plain git: the test proves nothing"
    canary.unlink()
    exercise(project, tmp_path / "work")
    assert not canary.exists(), f"Shipyard ran the planted {kind}: {canary.read_text()}"


def test_a_planted_merge_driver_is_replaced_by_a_real_text_merge(project: Path, tmp_path: Path) -> None:
    canary, _ = plant_merge_driver(project, tmp_path)
    repo = GitRepo(project)
    clean = repo.merge_commit("ctl-a", "ctl-b", "both")
    assert clean.ok and clean.commit
    merged = git(project, "show", f"{clean.commit}:app.py").stdout
    assert "line one" in merged and "line seven" in merged
    commit_on(project, "ctl-c", {"app.py": APP.replace("line 1", "line uno")}, "c", parent="main")
    clash = repo.merge_commit("ctl-a", "ctl-c", "clash")
    assert not clash.ok and clash.conflicts == ["app.py"]
    assert not canary.exists()


def test_a_repository_driver_named_with_odd_characters_is_disarmed_too(project: Path, tmp_path: Path) -> None:
    script, canary = evil_program(tmp_path, "odd", "exec cat")
    git(project, "config", "filter.a=b.c.clean", str(script))
    attributes(project, "* filter=a=b.c\n")
    git(project, "hash-object", "--path=app.py", "app.py")
    assert canary.exists()
    canary.unlink()
    exercise(project, tmp_path / "work")
    assert not canary.exists()


def test_a_globally_installed_filter_still_runs(project: Path, tmp_path: Path) -> None:
    """Drivers from the user's own config (git-lfs, say) are theirs; only the repository's are disarmed."""
    script, canary = evil_program(tmp_path, "global", "exec cat")
    attributes(project, "* filter=userfilter\n")
    config = [f"filter.userfilter.clean={script}"]
    repo = GitRepo(project)
    wt = tmp_path / "wt"
    repo.add_worktree(wt, "shipyard/task-1", "main")
    (wt / "app.py").write_text("changed\n")
    repo.run_git("add", "-A", what="stage", cwd=wt, config=config)
    assert canary.exists()


def test_trust_reads_the_index_without_running_fsmonitor(project: Path, tmp_path: Path) -> None:
    canary, _ = plant_fsmonitor(project, tmp_path)
    git(project, "ls-files", "--error-unmatch", "--", "README.md")
    assert canary.exists()
    canary.unlink()
    assert is_tracked(project, "README.md")
    assert not is_tracked(project, "missing.txt")
    assert not canary.exists()


def program_config(project: Path, key: str, tmp_path: Path, tail: str = "exit 1") -> Path:
    script, canary = evil_program(tmp_path, key.replace(".", "-"), tail)
    git(project, "config", key, str(script))
    return canary


def test_ssh_credential_helper_and_ext_transport_from_the_repository_never_run(
    project: Path, tmp_path: Path
) -> None:
    ssh = program_config(project, "core.sshCommand", tmp_path)
    helper = program_config(project, "credential.helper", tmp_path)
    git(project, "config", "protocol.ext.allow", "always")
    ext_canary = tmp_path / "canary-ext"
    ext_url = f"ext::sh -c touch% {ext_canary}"
    user = [("ls-remote", "ssh://127.0.0.1:1/x.git"), ("credential", "fill"), ("ls-remote", ext_url)]
    for args in user:
        git(project, *args, check=False, input="protocol=https\nhost=example.invalid\n\n")
    assert ssh.exists() and helper.exists() and ext_canary.exists()
    for canary in (ssh, helper, ext_canary):
        canary.unlink()
    for args in user:
        proc = run(git_argv(*args), cwd=project, timeout=60,
                   input=b"protocol=https\nhost=example.invalid\n\n")
        assert proc.returncode != 0
    assert not ssh.exists() and not helper.exists() and not ext_canary.exists()


def test_editor_from_the_repository_is_not_used(project: Path, tmp_path: Path) -> None:
    program_config(project, "core.editor", tmp_path)
    proc = run(git_argv("var", "GIT_EDITOR"), cwd=project, timeout=60)
    assert proc.stdout.decode().strip() == "true"


def test_signature_checks_never_run_a_configured_gpg_program(project: Path, tmp_path: Path) -> None:
    canary = program_config(project, "gpg.program", tmp_path)
    git(project, "config", "log.showSignature", "true")
    body = git(project, "cat-file", "commit", "main").stdout
    header, _, message = body.partition("\n\n")
    signed = (f"{header}\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEzBAABCAAdFiEE\n"
              f" -----END PGP SIGNATURE-----\n\n{message}")
    sha = git(project, "hash-object", "-t", "commit", "-w", "--stdin", input=signed).stdout.strip()
    git(project, "update-ref", "refs/heads/signed", sha)
    git(project, "log", "-1", "signed", check=False)
    assert canary.exists()
    canary.unlink()
    assert GitRepo(project).find_trailer("signed", "Nope:") is None
    proc = run(git_argv("log", "-1", "signed"), cwd=project, timeout=60)  # the control, with Shipyard's flags
    assert proc.returncode == 0
    assert not canary.exists()


def test_git_ignores_a_pack_objects_hook_in_repository_config(project: Path, tmp_path: Path) -> None:
    """No override needed: git honours uploadpack.packObjectsHook only from the user's own config."""
    script, canary = evil_program(tmp_path, "pack", 'shift; exec git "$@"')
    git(tmp_path, "clone", "-q", "--no-local", "-u", f"git -c uploadpack.packObjectsHook={script} upload-pack",
        str(project), str(tmp_path / "control"))
    assert canary.exists()
    canary.unlink()
    git(project, "config", "uploadpack.packObjectsHook", str(script))
    git(tmp_path, "clone", "-q", "--no-local", str(project), str(tmp_path / "clone"))
    assert not canary.exists()


def test_diff_commands_get_no_ext_diff_and_no_textconv() -> None:
    for sub in ("diff", "log", "show"):
        argv = git_argv("--git-dir", "/x", sub, "-p")
        at = argv.index(sub)
        assert argv[at + 1:at + 3] == ["--no-ext-diff", "--no-textconv"]
    assert "--no-textconv" not in git_argv("status")


# --------------------------------------------------------------------------- integrity


def common(project: Path) -> Path:
    return project / ".git"


def test_no_change_means_no_sentences(project: Path) -> None:
    before = snapshot(common(project))
    git(project, "status")
    assert changes(before, snapshot(common(project))) == []


def test_a_planted_config_key_is_named(project: Path) -> None:
    before = snapshot(common(project))
    git(project, "config", "core.fsmonitor", "/tmp/evil")
    git(project, "config", "--unset", "user.email")
    assert changes(before, snapshot(common(project))) == [
        "the git config changed (added core.fsmonitor = /tmp/evil; removed user.email = test@example.com)"
    ]


def test_a_comment_in_the_config_is_still_a_change(project: Path) -> None:
    before = snapshot(common(project))
    with open(common(project) / "config", "a") as handle:
        handle.write("# hello\n")
    assert changes(before, snapshot(common(project))) == [
        "the git config file changed (comments or layout only)"
    ]


def test_an_unreadable_config_is_reported(project: Path) -> None:
    before = snapshot(common(project))
    with open(common(project) / "config", "a") as handle:
        handle.write("[broken\n")
    found = changes(before, snapshot(common(project)))
    assert found == ["the git config changed and git can no longer read it",
                     "the refs could not be compared (git could not list them)"]


def test_hooks_added_changed_deleted_and_made_executable(project: Path) -> None:
    hooks = common(project) / "hooks"
    (hooks / "pre-push").write_text("#!/bin/sh\n")
    (hooks / "pre-push").chmod(0o755)
    (hooks / "post-merge").write_text("#!/bin/sh\n")
    (hooks / "pre-rebase").write_text("#!/bin/sh\n")
    before = snapshot(common(project))
    (hooks / "pre-commit").write_text("#!/bin/sh\ncurl evil\n")
    (hooks / "pre-commit").chmod(0o755)
    (hooks / "pre-push").write_text("#!/bin/sh\nexit 0\n")
    (hooks / "post-merge").unlink()
    (hooks / "pre-rebase").chmod(0o755)
    (hooks / "update.sample").write_text("ignored\n")
    assert changes(before, snapshot(common(project))) == [
        "hook post-merge was deleted",
        "hook pre-commit was added",
        "hook pre-push was changed",
        "hook pre-rebase was made executable",
    ]


def test_hooks_in_a_hooks_path_directory_are_watched(project: Path) -> None:
    (project / ".githooks").mkdir()
    git(project, "config", "core.hooksPath", ".githooks")
    before = snapshot(common(project))
    (project / ".githooks" / "pre-commit").write_text("#!/bin/sh\n")
    assert changes(before, snapshot(common(project))) == [
        f"hook pre-commit was added (in {project / '.githooks'})"
    ]


def test_attributes_and_alternates_files_are_watched(project: Path) -> None:
    before = snapshot(common(project))
    attributes(project, "* filter=evil\n")
    (common(project) / "objects" / "info" / "alternates").write_text("/elsewhere/objects\n")
    assert changes(before, snapshot(common(project))) == [
        "the file .git/info/attributes was added",
        "the file .git/objects/info/alternates was added",
    ]


def test_user_refs_moved_created_and_deleted(project: Path) -> None:
    git(project, "tag", "v1", "main")
    a, b = git(project, "rev-parse", "ctl-a").stdout.strip(), git(project, "rev-parse", "ctl-b").stdout.strip()
    main = git(project, "rev-parse", "main").stdout.strip()
    git(project, "update-ref", "refs/heads/shipyard/task-1", main)
    before = snapshot(common(project))
    git(project, "update-ref", "refs/heads/main", a)
    git(project, "update-ref", "-d", "refs/heads/ctl-b")
    git(project, "update-ref", "refs/tags/v1", b)
    git(project, "update-ref", "refs/heads/evil", b)
    git(project, "update-ref", "refs/heads/shipyard/task-1", b)  # Shipyard's own: not reported
    assert changes(before, snapshot(common(project))) == [
        "branch ctl-b was deleted",
        f"branch evil was created at {b[:10]}",
        f"branch main moved from {main[:10]} to {a[:10]}",
        f"tag v1 moved from {main[:10]} to {b[:10]}",
    ]


def test_head_pointing_elsewhere_is_reported(project: Path) -> None:
    before = snapshot(common(project))
    git(project, "symbolic-ref", "HEAD", "refs/heads/ctl-a")
    assert changes(before, snapshot(common(project))) == ["HEAD moved from branch main to branch ctl-a"]


def test_only_the_named_refs_are_watched_when_given(project: Path) -> None:
    a = git(project, "rev-parse", "ctl-a").stdout.strip()
    refs = ["refs/heads/main", "refs/heads/later"]
    before = snapshot(common(project), refs)
    git(project, "update-ref", "refs/heads/ctl-b", a)
    git(project, "update-ref", "refs/heads/later", a)
    git(project, "symbolic-ref", "HEAD", "refs/heads/ctl-a")
    assert changes(before, snapshot(common(project), refs)) == [f"branch later was created at {a[:10]}"]


def test_snapshot_is_cheap_with_a_thousand_refs(project: Path) -> None:
    main = git(project, "rev-parse", "main").stdout.strip()
    git(project, "update-ref", "--stdin",
        input="".join(f"create refs/heads/user/b{n} {main}\n" for n in range(500)))
    git(project, "pack-refs", "--all")
    git(project, "update-ref", "--stdin",
        input="".join(f"create refs/tags/t{n} {main}\n" for n in range(500)))
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        shot = snapshot(common(project))
        timings.append(time.perf_counter() - started)
    assert shot.refs is not None and len(shot.refs) > 1000
    best = min(timings)
    print(f"snapshot with {len(shot.refs)} refs: best {best * 1000:.1f} ms of {len(timings)}")
    assert best < 0.05, f"a snapshot took {best * 1000:.0f} ms"
