"""``shipyard plan …``: create, start, review, follow and land plans over the HTTP API."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from backend.cli_output import (
    AllOpt,
    JsonFlag,
    LimitOpt,
    SearchOpt,
    StatusOpt,
    call,
    connect,
    fail,
    follow_events,
    list_pages,
    more_note,
    out,
    print_event,
    print_json,
    read_body,
)
from backend.client import Client

plan_app = typer.Typer(help="Create, start and follow plans.", no_args_is_help=True)

MaxCostOpt = Annotated[float | None, typer.Option(
    "--max-cost", min=0.0001, help="Spending limit of the plan in USD (default: the max_plan_cost_usd setting).")]


@plan_app.command("new")
def plan_new(
    title: Annotated[str, typer.Option(help="Plan title.")],
    file: Annotated[Path | None, typer.Option(help="Markdown file (default: stdin).")] = None,
    summary: Annotated[str, typer.Option(help="One-paragraph summary.")] = "",
    max_cost: MaxCostOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """Create a draft plan from a markdown file or standard input."""
    body = read_body(file)
    request = {"title": title, "summary": summary, "content": body}
    if max_cost is not None:
        request["max_cost_usd"] = max_cost
    plan = call(connect().post, "/agent/plans", json=request)
    if json_out:
        print_json(plan)
    else:
        out(f"created plan {plan['id']} ({plan['status']}): {plan['title']}")
        out(f"start it with: shipyard plan start {plan['id']} --follow")


@plan_app.command("list")
def plan_list(status: StatusOpt = None, search: SearchOpt = None, limit: LimitOpt = 50, every: AllOpt = False,
              json_out: JsonFlag = False) -> None:
    """List plans, newest first."""
    plans, total = list_pages("/agent/plans", {"status": status, "q": search}, limit, every)
    if json_out:
        print_json(plans)
        return
    for plan in plans:
        progress = plan.get("progress", {})
        done = progress.get("completed", 0)
        count = progress.get("total", 0)
        extra = f"  {done}/{count} done" if count else ""
        state = (plan.get("lifecycle") or {}).get("label") or plan["status"]
        out(f"{plan['id']}  {state:<16}  {plan['title']}{extra}")
    if not plans:
        out("no plans match" if status or search else
             "no plans yet: create one with 'shipyard plan new --title ... --file plan.md'")
    more_note(len(plans), total, "plans")


@plan_app.command("show")
def plan_show(plan_id: str, json_out: JsonFlag = False) -> None:
    """Show one plan, its tasks and progress."""
    plan = call(connect().get, f"/agent/plans/{plan_id}")
    if json_out:
        print_json(plan)
        return
    out(f"{plan['title']}  [{plan['status']}{' · orchestrating' if plan['orchestrating'] else ''}]",
                bold=True)
    out(f"id: {plan['id']}   created: {plan['created']}")
    if plan.get("summary"):
        out(f"\n{plan['summary']}")
    if plan.get("error"):
        out(f"\nerror: {plan['error']}", fg=typer.colors.RED)
    state = plan.get("lifecycle") or {}
    if state:
        out(f"state: {state['label']}{' — ' + state['detail'] if state.get('detail') else ''}")
    if plan.get("integration_branch"):
        out(f"\nintegration branch: {plan['integration_branch']} (base {plan.get('base_branch')})")
    verification = plan.get("verification")
    if verification:
        took = f" in {verification['duration_s']:.1f} s" if verification.get("duration_s") is not None else ""
        out(f"verification: {verification['status']} at {str(verification.get('commit'))[:10]}{took}"
            + (f" — {verification['reason']}" if verification.get("reason") else ""))
    if plan.get("proposals"):
        out("")
        _print_proposals(plan["proposals"])
    if plan.get("task_details"):
        out("\ntasks:")
        for task in plan["task_details"]:
            superseded = f" (superseded by re-plan {task['superseded_by']})" if task.get("superseded_by") else ""
            out(f"  {task['id']}  {task['status']:<11}  {task['title']}{superseded}")
            for wait in task.get("waiting_for") or []:
                out(f"      {wait['text']}")
    budget = plan.get("budget") or {}
    limit = f" of ${budget['limit']:.4f} budget{' (reached)' if budget.get('reached') else ''}" \
        if budget.get("limit") is not None else ""
    out(f"\ncost: ${plan.get('total_cost_usd', 0):.4f}{limit}")
    replan = plan.get("replan") or {}
    if replan.get("possible"):
        out(f"failed tasks can be re-planned: shipyard plan replan {plan['id']}")


def _start(client: Client, plan_id: str, review: bool | None = None, max_cost: float | None = None) -> None:
    body = {k: v for k, v in (("review", review), ("max_cost_usd", max_cost)) if v is not None} or None
    answer = call(client.post, f"/agent/plans/{plan_id}/start", json=body)
    out(f"plan {answer['plan_id']}: {answer['status']}")


@plan_app.command("start")
def plan_start(
    plan_id: str,
    follow: Annotated[bool, typer.Option(help="Stream progress.")] = False,
    review: Annotated[bool | None, typer.Option(
        "--review/--no-review", help="Hold the tasks for review before any runs "
        "(default: the plan's choice, else the review_tasks setting).")] = None,
    max_cost: MaxCostOpt = None,
) -> None:
    """Start the orchestrator on a plan; with --follow, stream what it does and print the tasks."""
    client = connect()
    if follow:  # the stream is opened first, then the plan started: no event is missed or stale
        _follow_plan(client, plan_id, on_ready=lambda: _start(client, plan_id, review, max_cost))
    else:
        _start(client, plan_id, review, max_cost)


def _follow_plan(client: Client, plan_id: str, on_ready: Any = None) -> None:
    def handle(event: dict[str, Any]) -> bool:
        if event.get("plan_id") == plan_id and event["type"] == "plan.log":
            print_event("  ", event.get("event", {}))
        plan = event.get("plan")
        return bool(event["type"] == "plan.status" and plan and plan["id"] == plan_id
                    and plan["status"] in ("done", "failed", "review"))

    def finished() -> bool:
        return call(client.get, f"/agent/plans/{plan_id}")["status"] in ("done", "failed", "review")

    follow_events(client, "plan", handle, finished, f"shipyard plan show {plan_id}", on_ready=on_ready)
    plan = call(client.get, f"/agent/plans/{plan_id}")
    if plan["status"] == "failed":
        fail(f"plan failed: {plan.get('error')}")
    if plan["status"] == "review":
        _print_proposals(plan.get("proposals") or [])
        out(f"\nreview them: shipyard plan review {plan_id} --edit, then "
                   f"shipyard plan approve {plan_id} (or discard)")
        return
    out(f"plan {plan_id} produced {len(plan['tasks'])} task(s):", bold=True)
    for task in plan.get("task_details", []):
        out(f"  {task['id']}  [{task['task_type']}]  {task['title']}")


def _print_proposals(tasks: list[dict[str, Any]]) -> None:
    out(f"{len(tasks)} proposed task(s), not yet running:", bold=True)
    for number, task in enumerate(tasks, start=1):
        out(f"\n{number}. [{task.get('task_type')}] {task.get('title')}")
        if task.get("depends_on"):
            out(f"   depends on: {', '.join(str(d) for d in task['depends_on'])}")
        if task.get("files"):
            out(f"   files: {', '.join(task['files'])}")
        for line in str(task.get("content", "")).splitlines():
            out(f"   {line}")


def _edit_in_editor(text: str) -> str:
    """Let the user edit ``text`` in $VISUAL/$EDITOR (default vi); returns the saved text."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="shipyard-proposals-",
                                     delete=False, encoding="utf-8") as handle:
        handle.write(text)
        path = handle.name
    try:
        if subprocess.run([*shlex.split(editor), path]).returncode != 0:
            fail(f"the editor ({editor}) exited with an error; nothing was changed.")
        return Path(path).read_text(encoding="utf-8")
    finally:
        os.unlink(path)


@plan_app.command("review")
def plan_review(
    plan_id: str,
    file: Annotated[Path | None, typer.Option(help="Replace the proposals with this JSON file "
                                              '({"tasks": [...]}, as --json prints).')] = None,
    edit: Annotated[bool, typer.Option("--edit", help="Edit the proposals in $EDITOR.")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Show a plan's proposed tasks; change them with --file or --edit (drop, add, reorder).

    ``depends_on`` holds 1-based positions in the list. Nothing runs until ``plan approve``.
    """
    client = connect()
    current = call(client.get, f"/agent/plans/{plan_id}/proposals")
    if current["status"] != "review":
        fail(f"plan {plan_id} is {current['status']}, not in review: start it with "
              f"'shipyard plan start {plan_id} --review'.")
    new_text = None
    if file is not None:
        try:
            new_text = file.read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"cannot read {file}: {exc.strerror}")
    elif edit:
        before = json.dumps({"tasks": current["tasks"]}, indent=2, ensure_ascii=False) + "\n"
        new_text = _edit_in_editor(before)
        if new_text == before:
            out("no changes.")
            new_text = None
    if new_text is not None:
        try:
            data = json.loads(new_text)
        except json.JSONDecodeError as exc:
            fail(f"the proposals are not valid JSON: {exc}; nothing was changed.")
        if isinstance(data, list):
            data = {"tasks": data}
        if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
            fail('the proposals must be {"tasks": [...]}; nothing was changed.')
        call(client.request, "PUT", f"/agent/plans/{plan_id}/proposals", json={"tasks": data["tasks"]})
        current = call(client.get, f"/agent/plans/{plan_id}/proposals")
        out(f"saved {len(current['tasks'])} proposal(s).")
    if json_out:
        print_json({"tasks": current["tasks"]})
    elif new_text is None:
        _print_proposals(current["tasks"])


@plan_app.command("approve")
def plan_approve(plan_id: str) -> None:
    """Publish a reviewed plan's proposals as tasks, all at once."""
    plan = call(connect().post, f"/agent/plans/{plan_id}/approve")
    out(f"plan {plan_id}: {plan['status']}; {len(plan['tasks'])} task(s) created")


@plan_app.command("discard")
def plan_discard(plan_id: str) -> None:
    """Drop a reviewed plan's proposals (the plan log keeps them); the plan is ready again."""
    plan = call(connect().post, f"/agent/plans/{plan_id}/discard")
    out(f"plan {plan_id}: {plan['status']}; proposals discarded (see shipyard plan log {plan_id})")


@plan_app.command("chat")
def plan_chat(
    chat: Annotated[str | None, typer.Option(help="Continue this chat.")] = None,
    plan: Annotated[str | None, typer.Option(help="Revise this plan (reopens its chat).")] = None,
    message: Annotated[str | None, typer.Option("--message", "-m", help="First message.")] = None,
) -> None:
    """Write a plan with Claude: a conversation that explores the code and drafts the plan."""
    from backend.chat_cli import run_chat

    call(run_chat, connect(), chat, plan, message, _follow_plan)


@plan_app.command("cancel")
def plan_cancel(plan_id: str) -> None:
    """Stop a running orchestration (the plan becomes failed: cancelled)."""
    plan = call(connect().post, f"/agent/plans/{plan_id}/cancel")
    out(f"plan {plan_id}: {plan['status']}{' — ' + plan['error'] if plan.get('error') else ''}")


@plan_app.command("retry")
def plan_retry(plan_id: str, follow: Annotated[bool, typer.Option(help="Stream progress.")] = False) -> None:
    """Run the orchestrator again on a failed plan (as the dashboard's Retry does)."""
    client = connect()
    call(client.post, f"/agent/plans/{plan_id}/retry")
    if follow:
        _follow_plan(client, plan_id, on_ready=lambda: _start(client, plan_id))
    else:
        _start(client, plan_id)


@plan_app.command("replan")
def plan_replan(
    plan_id: str,
    review: Annotated[bool | None, typer.Option(
        "--review/--no-review", help="Hold the replacement tasks for review (default: the plan's choice).")] = None,
    follow: Annotated[bool, typer.Option(help="Stream the orchestrator until it has answered.")] = False,
) -> None:
    """Re-plan after failed tasks: the orchestrator proposes replacements for the remaining work.

    They run on the plan's branch; the failed tasks they replace are marked superseded.
    """
    client = connect()
    body = {"review": review} if review is not None else None

    def begin() -> None:
        answer = call(client.post, f"/agent/plans/{plan_id}/replan", json=body)
        out(f"plan {plan_id}: re-plan {answer['replan']} started, replacing {len(answer['replaces'])} task(s)")

    if not follow:
        begin()
        return

    def handle(event: dict[str, Any]) -> bool:
        if event.get("plan_id") == plan_id and event["type"] == "plan.log":
            print_event("  ", event.get("event", {}))
        return bool(event["type"] == "plan.orchestration" and event.get("plan_id") == plan_id
                    and not event.get("active"))

    def finished() -> bool:
        return not call(client.get, f"/agent/plans/{plan_id}")["orchestrating"]

    follow_events(client, "plan", handle, finished, f"shipyard plan show {plan_id}", on_ready=begin)
    plan = call(client.get, f"/agent/plans/{plan_id}")
    last = (plan.get("replans") or [{}])[-1]
    if last.get("state") == "failed":
        fail(f"re-plan failed: {last.get('error')}")
    if plan["status"] == "review":
        _print_proposals(plan.get("proposals") or [])
        out(f"\napprove them: shipyard plan approve {plan_id} (or discard)")
        return
    out(f"re-plan {last.get('number')} created {len(last.get('tasks') or [])} replacement task(s)", bold=True)


@plan_app.command("budget")
def plan_budget(
    plan_id: str,
    usd: Annotated[str, typer.Argument(help="The new limit in USD, or 'none' for the max_plan_cost_usd setting.")],
) -> None:
    """Set a plan's spending limit at any time; raising it releases tasks waiting on the budget."""
    if usd.strip().lower() in ("none", "default", "unset"):
        value: float | None = None
    else:
        try:
            value = float(usd)
        except ValueError:
            fail(f"not an amount: {usd!r} (give dollars, e.g. 2.50, or 'none').")
            return
    plan = call(connect().patch, f"/agent/plans/{plan_id}", json={"max_cost_usd": value})
    budget = plan.get("budget") or {}
    limit = "no limit" if budget.get("limit") is None else f"${budget['limit']:.4f}"
    out(f"plan {plan_id}: budget {limit}; ${budget.get('spent', 0):.4f} spent"
        + (" (reached: waiting tasks do not start)" if budget.get("reached") else ""))


@plan_app.command("land")
def plan_land(plan_id: str, force: Annotated[bool, typer.Option(
        "--force", help="Land even if the plan branch has not passed verification.")] = False) -> None:
    """Merge a plan's integration branch into its base branch, when that is safe and verified."""
    answer = call(connect().post, f"/agent/plans/{plan_id}/land", json={"force": force})
    out(answer["message"])


@plan_app.command("verify")
def plan_verify(plan_id: str) -> None:
    """Run the verify command on the plan branch again (the result appears in 'plan show')."""
    call(connect().post, f"/agent/plans/{plan_id}/verify")
    out(f"plan {plan_id}: verifying; see 'shipyard plan show {plan_id}' or 'shipyard plan log {plan_id}'")


@plan_app.command("diff")
def plan_diff(plan_id: str, stat: Annotated[bool, typer.Option("--stat", help="Only the changed files.")]
              = False) -> None:
    """Print the whole plan's changes: its branch against the commit it started from."""
    answer = call(connect().get, f"/agent/plans/{plan_id}/diff")
    if stat or not answer["diff"]:
        for path in answer["files"]:
            out(path)
        if not answer["files"]:
            out("no changes" + (f": {answer['error']}" if answer.get("error") else ""))
        return
    typer.echo(answer["diff"], nl=False)


@plan_app.command("log")
def plan_log(plan_id: str) -> None:
    """Print the orchestrator's run log."""
    log = call(connect().get, f"/agent/plans/{plan_id}/log")
    for event in log["events"]:
        print_event("", event)


