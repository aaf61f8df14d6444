"""Land: a done plan's branch merged onto its base branch (backend/landing.py).

Most tests drive the real Dispatcher in-process (its task loop paused, its verifier
running) on a plan whose integrated work was committed on the plan branch by hand: Land
needs no agent, only a done plan, a plan branch and a verification. The last one runs
the whole path in a real server with the real ``claude`` (it was in tests/test_dispatcher.py).
Landing from the CLI, and after a fix-up round, is in tests/test_verification.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.agent import Dispatcher
from backend.errors import Conflict
from backend.models import PlanStatus, Verification
from backend.yard import plan_branch
from tests.fakes.model_server import ModelServer
from tests.support import commit_on, git, make_repo, wait_for
from tests.test_dispatcher import agent_writes, plan_with, run_plan

HINT = " Land with force to land it anyway."

@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "project", {"README.md": "# demo\n", "app.py": "NAME = 'demo'\n"})


def tip_of(repo: Path, ref: str) -> str:
    return git(repo, "rev-parse", ref).strip()


def done_plan(dispatcher: Dispatcher, files: dict[str, str] | None = None) -> tuple[str, str, str]:
    """A done plan whose tasks integrated ``files`` on its branch: (plan id, branch, tip)."""
    repo = dispatcher.settings.project_dir
    plan = dispatcher.store.create_plan("Land me")
    branch = plan_branch(plan.id)
    base = tip_of(repo, "main")
    tip = commit_on(repo, branch, files or {"feature.txt": "feature\n"}, "the plan's work", parent=base)
    dispatcher.store.move_plan(plan.id, PlanStatus.done, integration_branch=branch, base_branch="main",
                               base_commit=base)
    return plan.id, branch, tip


def verified(dispatcher: Dispatcher, plan_id: str, tip: str) -> Verification:
    """Wait for the verification of ``tip`` to finish (the verifier starts it when the plan is done)."""
    def finished() -> Verification | None:
        v = dispatcher.store.get_plan(plan_id).verification
        return v if v is not None and v.commit == tip and v.status != "running" else None

    return wait_for(finished, timeout=30, message=f"plan {plan_id} verified at {tip[:10]}")


def refusal(dispatcher: Dispatcher, plan_id: str) -> str:
    with pytest.raises(Conflict) as caught:
        dispatcher.land_plan(plan_id)
    return caught.value.detail


def test_a_verified_plan_lands_is_recorded_and_leaves_the_users_checkout_alone(
        project: Path, local_dispatcher) -> None:
    # the user works on another branch, with uncommitted and untracked changes
    git(project, "checkout", "-q", "-b", "wip")
    (project / "app.py").write_text("NAME = 'my uncommitted edit'\n")
    (project / "notes.txt").write_text("untracked notes\n")
    head = tip_of(project, "HEAD")
    dispatcher = local_dispatcher(project, verify_command="test -f feature.txt")
    plan_id, branch, tip = done_plan(dispatcher)
    assert verified(dispatcher, plan_id, tip).status == "passed"

    answer = dispatcher.land_plan(plan_id)
    main = tip_of(project, "main")
    assert answer["ok"] is True and answer["forced"] is False and answer["branch_deleted"] is True
    assert answer["commit"] == main and answer["branch"] == "main"
    assert answer["message"].startswith(f"Landed {branch} on main") and f"Deleted {branch}." in answer["message"]
    assert git(project, "show", "main:feature.txt") == "feature\n"
    # the landing is recorded on the plan: it shows as landed, with its commit, from now on
    plan = dispatcher.store.get_plan(plan_id)
    assert plan.landed is not None
    assert (plan.landed.commit, plan.landed.branch, plan.landed.plan_tip) == (main, "main", tip)
    assert plan.landed.forced is False and plan.landed.branch_deleted is True
    view = dispatcher.describe_plan(plan)
    assert view["lifecycle"]["state"] == "landed" and view["lifecycle"]["commit"] == main
    # the plan branch is gone, its combined diff still readable from the recorded tip
    assert git(project, "branch", "--list", branch).strip() == ""
    assert dispatcher.plan_diff(plan_id)["files"] == ["feature.txt"]
    # the user's checkout: same branch, same commit, their changes untouched
    assert git(project, "branch", "--show-current").strip() == "wip" and tip_of(project, "HEAD") == head
    assert (project / "app.py").read_text() == "NAME = 'my uncommitted edit'\n"
    assert (project / "notes.txt").read_text() == "untracked notes\n"
    assert not (project / "feature.txt").exists()
    # a second Land is refused, naming where it went
    assert refusal(dispatcher, plan_id) == f"plan {plan_id} was already landed on main as {main[:10]}."


def test_keep_plan_branch_keeps_it(project: Path, local_dispatcher) -> None:
    dispatcher = local_dispatcher(project, keep_plan_branch=True)
    plan_id, branch, tip = done_plan(dispatcher)
    assert verified(dispatcher, plan_id, tip).status == "skipped"  # no command: nothing to run
    answer = dispatcher.land_plan(plan_id)
    assert answer["branch_deleted"] is False and "Deleted" not in answer["message"]
    assert tip_of(project, branch) == tip
    assert dispatcher.store.get_plan(plan_id).landed.branch_deleted is False
    assert git(project, "show", "main:feature.txt") == "feature\n"


def test_a_failed_verification_is_refused_and_force_lands_it_saying_so(project: Path, local_dispatcher) -> None:
    # (without a fix-up task: with one the plan has a pending task, refused for that)
    dispatcher = local_dispatcher(project, verify_command="test -f never.txt", fix_on_verify=False)
    plan_id, _branch, tip = done_plan(dispatcher)
    assert verified(dispatcher, plan_id, tip).status == "failed"
    main = tip_of(project, "main")
    reason = f"verification failed on {tip[:10]}: test -f never.txt exited with code 1."
    assert refusal(dispatcher, plan_id) == reason + HINT
    assert tip_of(project, "main") == main and dispatcher.store.get_plan(plan_id).landed is None

    answer = dispatcher.land_plan(plan_id, force=True)
    assert answer["forced"] is True and f"Forced past: {reason}" in answer["message"]
    landed = dispatcher.store.get_plan(plan_id).landed
    assert landed.forced is True and landed.commit == tip_of(project, "main") != main
    assert git(project, "show", "main:feature.txt") == "feature\n"


def test_a_plan_moved_since_its_verification_is_refused_until_verified_again(
        project: Path, local_dispatcher) -> None:
    dispatcher = local_dispatcher(project, verify_command="test -f feature.txt")
    plan_id, branch, tip = done_plan(dispatcher)
    assert verified(dispatcher, plan_id, tip).status == "passed"
    moved = commit_on(project, branch, {"late.txt": "late\n"}, "added by hand after the verification")
    assert refusal(dispatcher, plan_id) == (f"plan {plan_id}'s branch moved since it was verified "
                                            f"({tip[:10]} verified, tip is {moved[:10]}); verify it again."
                                            + HINT)
    assert "late.txt" not in git(project, "ls-tree", "--name-only", "main").split()
    dispatcher.verify_plan(plan_id)
    assert verified(dispatcher, plan_id, moved).status == "passed"
    assert dispatcher.land_plan(plan_id)["forced"] is False
    assert git(project, "show", "main:late.txt") == "late\n"


def test_a_plan_being_verified_is_refused(project: Path, tmp_path: Path, local_dispatcher) -> None:
    gate = tmp_path / "gate"
    dispatcher = local_dispatcher(project, verify_command=f"until [ -f {gate} ]; do sleep 0.05; done")
    plan_id, _branch, tip = done_plan(dispatcher)
    wait_for(lambda: (v := dispatcher.store.get_plan(plan_id).verification) and v.status == "running",
             timeout=30, message="the verification to start")
    assert refusal(dispatcher, plan_id) == (f"plan {plan_id} is being verified; land once the verification "
                                            "has finished." + HINT)
    gate.touch()
    assert verified(dispatcher, plan_id, tip).status == "passed"
    assert dispatcher.land_plan(plan_id)["ok"] is True


def test_only_a_done_plan_with_finished_tasks_and_a_branch_lands(project: Path, local_dispatcher) -> None:
    dispatcher = local_dispatcher(project)
    store = dispatcher.store
    draft = store.create_plan("Not started")
    assert refusal(dispatcher, draft.id) == (f"plan {draft.id} is draft; only a done plan's integrated work "
                                             "can be landed.")
    plan_id, branch, _tip = done_plan(dispatcher)
    task = store.create_task("Still to do", "x", plan_id=plan_id, staged=True)
    store.update_plan(plan_id, tasks=[task.id])
    store.publish_staged(plan_id, [task.id])  # pending: the paused loop does not claim it
    assert refusal(dispatcher, plan_id) == (f"1 task(s) of plan {plan_id} are still pending or running; "
                                            "land once they have finished.")
    store.delete_task(task.id)
    git(project, "branch", "-D", branch)
    assert refusal(dispatcher, plan_id) == f"the plan branch {branch} is gone; there is nothing to land."
    assert tip_of(project, "main") == git(project, "rev-list", "--max-parents=0", "main").strip()


# ---------------------------------------------------------------------- the whole path (slow)

@pytest.fixture
def env(shipyard_env: dict[str, str]) -> dict[str, str]:
    return {**shipyard_env, "SHIPYARD_MAX_PARALLEL_WORKERS": "5"}


@pytest.mark.slow
def test_land_refused_on_dirty_base_then_done_when_clean(git_repo: Path, env: dict, start_server,
                                                         model_server: ModelServer) -> None:
    plan = plan_with(model_server, "Landing", [{"title": "Add feature", "content": "x", "task_type": "feature"}])
    agent_writes(model_server, "Add feature", "feature.txt", "feature\n")
    server = start_server(git_repo, env)
    (git_repo / "app.py").write_text("# dirty edit\n")
    with server.client() as http:
        current, _tasks = run_plan(http, plan)
        refused = http.post(f"/agent/plans/{current['id']}/land")
        assert refused.status_code == 409
        assert "uncommitted changes" in refused.json()["detail"] and "app.py" in refused.json()["detail"]
        assert (git_repo / "app.py").read_text() == "# dirty edit\n"
        git(git_repo, "checkout", "--", "app.py")
        landed = http.post(f"/agent/plans/{current['id']}/land")
        assert landed.status_code == 200, landed.text
    assert (git_repo / "feature.txt").read_text() == "feature\n"
    assert git(git_repo, "status", "--porcelain") == ""
