"""Integration: a finished task's branch merged onto its target, tested, and the target moved.

The first tests drive :class:`backend.integration.Integrator` in-process, on a real
repository and a real (paused) Dispatcher's yard, with the task's work committed by
hand: no agent is needed to see what a merge, a conflict, a failing ``test_command`` or
a target moved meanwhile do to the branches. The last three run the whole path in a
real server with the real ``claude`` on the scripted model, to show what the user sees
(they were in tests/test_dispatcher.py). Repairs by the agent are in tests/test_repair.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from backend.agent import Dispatcher
from backend.integration import MERGE_TRIES, Integrator
from backend.run_contract import IntegrationFailure, Stop, Stopped, TaskFailure
from backend.task_run import TaskRun
from backend.yard import STANDALONE_BRANCH, branch_for, plan_branch, task_trailer
from tests.fakes.model_server import ModelServer, bash, delay, text
from tests.support import commit_on, git, make_repo, task_settled
from tests.test_dispatcher import agent_writes, plan_with, run_plan


@pytest.fixture
def project(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "project", {"README.md": "# demo\n", "app.py": "NAME = 'demo'\n"})
    git(repo, "branch", STANDALONE_BRANCH, "main")
    return repo


def tip_of(repo: Path, branch: str) -> str:
    return git(repo, "rev-parse", branch).strip()


def task_run(dispatcher: Dispatcher, title: str, files: dict[str, str],
             target: str = STANDALONE_BRANCH) -> tuple[TaskRun, str, str]:
    """A task whose agent committed ``files`` on its branch from main: (its run, base, tip)."""
    task = dispatcher.store.create_task(title, "x")
    run = TaskRun(dispatcher.yard, task, Stop())
    run.target, run.base_ref = target, "main"
    repo = dispatcher.settings.project_dir
    base = tip_of(repo, "main")
    tip = commit_on(repo, branch_for(task.id), files, title, parent=base)
    return run, base, tip


def test_a_clean_merge_moves_the_target_and_leaves_the_checkout_alone(project: Path, local_dispatcher) -> None:
    (project / "README.md").write_text("# my uncommitted edit\n")
    head = tip_of(project, "HEAD")
    dispatcher = local_dispatcher(project, repair_attempts=0)
    integrator = Integrator(dispatcher.yard)
    first, base, first_tip = task_run(dispatcher, "Add one", {"one.txt": "1\n"})
    second, _, second_tip = task_run(dispatcher, "Add two", {"two.txt": "2\n"})

    assert integrator.integrate(first, base, first_tip).merged == first_tip  # a fast-forward
    integrated = integrator.integrate(second, base, second_tip)
    assert integrated.tip == second_tip and integrated.merged == tip_of(project, STANDALONE_BRANCH)
    merge = integrated.merged
    assert git(project, "rev-list", "--parents", "-n1", merge).split()[1:] == [first_tip, second_tip]
    message = git(project, "log", "-1", "--format=%B", merge)
    assert message.startswith(f"Merge {branch_for(second.task.id)}: Add two")
    assert task_trailer(second.task.id) in message
    assert git(project, "show", f"{merge}:one.txt") == "1\n" and git(project, "show", f"{merge}:two.txt") == "2\n"
    # recorded before the branch moved, so recovery finds it on the target after a crash
    assert dispatcher.store.get_task(second.task.id).head_commit == second_tip
    # integrating what the target already holds changes nothing
    assert integrator.integrate(second, base, second_tip).merged is None
    assert tip_of(project, STANDALONE_BRANCH) == merge
    # the user's checkout: same HEAD, the uncommitted edit kept, no task file in it
    assert tip_of(project, "HEAD") == head and git(project, "branch", "--show-current").strip() == "main"
    assert (project / "README.md").read_text() == "# my uncommitted edit\n"
    assert not (project / "one.txt").exists() and not (project / "two.txt").exists()


def test_a_plan_task_merges_onto_its_plan_branch_only(project: Path, local_dispatcher) -> None:
    dispatcher = local_dispatcher(project, repair_attempts=0)
    target = plan_branch("p1")
    git(project, "branch", target, "main")
    solo = commit_on(project, STANDALONE_BRANCH, {"solo.txt": "s\n"}, "a standalone task's work")
    run, base, tip = task_run(dispatcher, "Plan work", {"plan.txt": "p\n"}, target=target)
    assert Integrator(dispatcher.yard).integrate(run, base, tip).merged == tip_of(project, target)
    assert git(project, "ls-tree", "--name-only", target).split() == ["README.md", "app.py", "plan.txt"]
    assert tip_of(project, STANDALONE_BRANCH) == solo  # other targets untouched


def test_a_conflict_without_repair_names_the_paths_and_moves_nothing(project: Path, local_dispatcher) -> None:
    dispatcher = local_dispatcher(project, repair_attempts=0)
    integrator = Integrator(dispatcher.yard)
    first, base, first_tip = task_run(dispatcher, "Rename one", {"app.py": "NAME = 'one'\n"})
    second, _, second_tip = task_run(dispatcher, "Rename two", {"app.py": "NAME = 'two'\n"})
    integrator.integrate(first, base, first_tip)
    before = tip_of(project, STANDALONE_BRANCH)
    with pytest.raises(IntegrationFailure) as caught:
        integrator.integrate(second, base, second_tip)
    failure = caught.value
    assert failure.summary == f"merge conflict with {STANDALONE_BRANCH} in: app.py"
    assert failure.kind == "conflict" and failure.paths == ["app.py"] and failure.target_tip == before
    assert f"The branch {branch_for(second.task.id)} was kept for inspection." in failure.details
    assert tip_of(project, STANDALONE_BRANCH) == before
    assert git(project, "show", f"{STANDALONE_BRANCH}:app.py") == "NAME = 'one'\n"
    assert tip_of(project, branch_for(second.task.id)) == second_tip  # the agent's work is kept


def test_failing_tests_leave_the_target_where_it_was(project: Path, local_dispatcher) -> None:
    dispatcher = local_dispatcher(project, repair_attempts=0,
                                  test_command="if [ -f bad.txt ]; then echo 'bad.txt is not allowed'; exit 3; fi")
    integrator = Integrator(dispatcher.yard)
    good, base, good_tip = task_run(dispatcher, "Good", {"good.txt": "ok\n"})
    bad, _, bad_tip = task_run(dispatcher, "Bad", {"bad.txt": "no\n"})
    integrator.integrate(good, base, good_tip)
    before = tip_of(project, STANDALONE_BRANCH)
    with pytest.raises(IntegrationFailure) as caught:
        integrator.integrate(bad, base, bad_tip)
    failure = caught.value
    assert failure.summary.startswith("tests failed on the integrated result: the test command failed "
                                      "(exit code 3)")
    assert failure.kind == "tests" and "bad.txt is not allowed" in failure.output
    assert f"The integration was not kept; {branch_for(bad.task.id)} was kept." in failure.details
    assert tip_of(project, STANDALONE_BRANCH) == before
    assert "bad.txt" not in git(project, "ls-tree", "--name-only", STANDALONE_BRANCH).split()


def hand_commit_during_tests(flags: Path, times: int, project: Path) -> str:
    """A test command that, the first ``times`` times it runs, commits on shipyard/tasks by hand
    (as someone else integrating meanwhile would), then passes. (It runs in a repository of its
    own, so it names the project's; an unsandboxed test command can.)"""
    git = f"git -C {project}"
    return (f"n=$(ls {flags} | wc -l); if [ $n -lt {times} ]; then touch {flags}/run-$n; "
            f"c=$({git} commit-tree -p {STANDALONE_BRANCH} -m \"by hand $n\" {STANDALONE_BRANCH}^{{tree}}) && "
            f"{git} update-ref refs/heads/{STANDALONE_BRANCH} $c; fi")


def test_a_target_moved_during_the_tests_is_merged_onto_again(project: Path, tmp_path: Path,
                                                               local_dispatcher) -> None:
    flags = tmp_path / "flags"
    flags.mkdir()
    dispatcher = local_dispatcher(project, repair_attempts=0, test_command=hand_commit_during_tests(flags, 1, project))
    run, base, tip = task_run(dispatcher, "Careful", {"careful.txt": "c\n"})
    merged = Integrator(dispatcher.yard).integrate(run, base, tip).merged
    assert merged == tip_of(project, STANDALONE_BRANCH)
    # the compare-and-swap refused the stale merge; the work was merged onto the moved tip
    hand = git(project, "log", "--format=%H", "--grep=by hand 0", STANDALONE_BRANCH).strip()
    assert hand and git(project, "merge-base", "--is-ancestor", hand, merged) == ""
    assert git(project, "merge-base", "--is-ancestor", tip, merged) == ""
    assert git(project, "show", f"{merged}:careful.txt") == "c\n"
    log = [json.loads(line) for line in run.log_path.read_text().splitlines()]
    assert [e["data"]["exit_code"] for e in log if e["kind"] == "test" and "exit_code" in e["data"]] == [0, 0]
    # (twice: the merge onto the moved tip was tested too)


def test_a_target_that_keeps_moving_is_given_up_with_a_sentence(project: Path, tmp_path: Path,
                                                                local_dispatcher) -> None:
    flags = tmp_path / "flags"
    flags.mkdir()
    dispatcher = local_dispatcher(project, repair_attempts=0,
                                  test_command=hand_commit_during_tests(flags, MERGE_TRIES, project))
    run, base, tip = task_run(dispatcher, "Unlucky", {"unlucky.txt": "u\n"})
    with pytest.raises(TaskFailure) as caught:
        Integrator(dispatcher.yard).integrate(run, base, tip)
    assert caught.value.summary == f"{STANDALONE_BRANCH} kept moving while integrating; try again."
    # nobody's commits were lost, and the task's work is not on the target
    assert git(project, "log", "-1", "--format=%s", STANDALONE_BRANCH).strip() == f"by hand {MERGE_TRIES - 1}"
    assert len(git(project, "log", "--format=%H", "--grep=by hand", STANDALONE_BRANCH).split()) == MERGE_TRIES
    assert "unlucky.txt" not in git(project, "ls-tree", "--name-only", STANDALONE_BRANCH).split()


def test_a_stopped_run_is_not_integrated(project: Path, local_dispatcher) -> None:
    dispatcher = local_dispatcher(project, repair_attempts=0)
    run, base, tip = task_run(dispatcher, "Cancelled", {"late.txt": "l\n"})
    run.stop.request("cancel")
    with pytest.raises(Stopped):
        Integrator(dispatcher.yard).integrate(run, base, tip)
    assert tip_of(project, STANDALONE_BRANCH) == tip_of(project, "main")


def test_shipyard_tasks_deleted_by_hand_is_started_again(project: Path, local_dispatcher) -> None:
    dispatcher = local_dispatcher(project, repair_attempts=0)
    git(project, "branch", "-D", STANDALONE_BRANCH)
    run, base, tip = task_run(dispatcher, "After deletion", {"again.txt": "a\n"})
    assert Integrator(dispatcher.yard).integrate(run, base, tip).merged == tip_of(project, STANDALONE_BRANCH)
    assert git(project, "show", f"{STANDALONE_BRANCH}:again.txt") == "a\n"
    gone = plan_branch("gone")  # a plan branch is not made up again: the plan's work would be lost
    run, base, tip = task_run(dispatcher, "Plan gone", {"lost.txt": "x\n"}, target=gone)
    with pytest.raises(TaskFailure) as caught:
        Integrator(dispatcher.yard).integrate(run, base, tip)
    assert caught.value.summary == f"the integration branch {gone} is gone."


# ---------------------------------------------------------------------- what the user sees (slow)

@pytest.fixture
def env(shipyard_env: dict[str, str]) -> dict[str, str]:
    return {**shipyard_env, "SHIPYARD_MAX_PARALLEL_WORKERS": "5"}


@pytest.mark.slow
def test_same_line_conflict_fails_the_later_task(git_repo: Path, env: dict, start_server,
                                                 model_server: ModelServer) -> None:
    tasks = [{"title": f"Retitle {n}", "content": "Change README line 1", "task_type": "docs"} for n in (1, 2)]
    plan = plan_with(model_server, "Conflict", tasks)
    # (Claude Code's Write refuses to overwrite a file it has not read, so the agents use Bash)
    model_server.script("# Task: Retitle 1", [bash("echo '# first title' > README.md && git commit -qam one"),
                                             text("done")])
    model_server.script("# Task: Retitle 2", [delay(1.5, bash("echo '# second title' > README.md && "
                                                              "git commit -qam two")), text("done")])
    server = start_server(git_repo, {**env, "SHIPYARD_REPAIR_ATTEMPTS": "0"})  # no repair: fail at once
    with server.client() as http:
        current, by_id = run_plan(http, plan)
    statuses = sorted(t["status"] for t in by_id.values())
    assert statuses == ["completed", "failed"]
    failed = next(t for t in by_id.values() if t["status"] == "failed")
    assert "merge conflict" in failed["error"] and "README.md" in failed["error"]
    assert "README.md" in failed["error_log"] and "repair" not in failed["error"]
    assert not failed["repairs"] and [h["kind"] for h in failed["run_history"]] == ["run"]
    assert git(git_repo, "rev-parse", "--verify", "-q", f"shipyard/task-{failed['id']}").strip()  # kept
    assert git(git_repo, "show", f"{current['integration_branch']}:README.md") == "# first title\n"


@pytest.mark.slow
def test_failing_test_command_rejects_the_integration(git_repo: Path, env: dict, start_server,
                                                      model_server: ModelServer) -> None:
    plan = plan_with(model_server, "Tested", [{"title": "Break it", "content": "x", "task_type": "bugfix"}])
    agent_writes(model_server, "Break it", "broken.txt", "bad\n")
    server = start_server(git_repo, {**env, "SHIPYARD_TEST_COMMAND": "test ! -f broken.txt",
                                     "SHIPYARD_REPAIR_ATTEMPTS": "0"})
    with server.client() as http:
        current, by_id = run_plan(http, plan)
    task = next(iter(by_id.values()))
    assert task["status"] == "failed" and "tests failed on the integrated result" in task["error"]
    branch = current["integration_branch"]
    assert "broken.txt" not in git(git_repo, "ls-tree", "--name-only", branch)
    assert git(git_repo, "rev-parse", branch) == git(git_repo, "rev-parse", "main")


@pytest.mark.slow
def test_integration_keeps_a_commit_made_on_the_target_by_hand(git_repo: Path, env: dict, start_server,
                                                                model_server: ModelServer) -> None:
    """The server remembers the tip it last integrated to; a branch moved by someone else is still merged onto."""
    server = start_server(git_repo, env)
    agent_writes(model_server, "First", "first.txt", "one\n")
    agent_writes(model_server, "Second", "second.txt", "two\n")
    with server.client() as http:
        first = task_settled(http, http.post("/agent/tasks", json={"title": "First", "content": "x"}).json()["id"])
        assert first["status"] == "completed", first["error_log"]
        # someone adds a commit to shipyard/tasks by hand (plumbing: no checkout of the branch)
        tip = git(git_repo, "rev-parse", "shipyard/tasks").strip()
        blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=git_repo, input="by hand\n",
                              capture_output=True, text=True, check=True).stdout.strip()
        tree = subprocess.run(["git", "mktree"], cwd=git_repo, capture_output=True, text=True, check=True,
                              input=git(git_repo, "ls-tree", tip) + f"100644 blob {blob}\thand.txt\n").stdout.strip()
        hand = git(git_repo, "commit-tree", tree, "-p", tip, "-m", "by hand").strip()
        git(git_repo, "update-ref", "refs/heads/shipyard/tasks", hand, tip)
        second = task_settled(http, http.post("/agent/tasks", json={"title": "Second", "content": "x"}).json()["id"])
    assert second["status"] == "completed", second["error_log"]
    assert git(git_repo, "merge-base", "--is-ancestor", hand, "shipyard/tasks") == ""
    assert git(git_repo, "show", "shipyard/tasks:hand.txt") == "by hand\n"
    assert git(git_repo, "show", "shipyard/tasks:second.txt") == "two\n"
