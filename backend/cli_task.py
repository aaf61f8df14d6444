"""``shipyard task …``: create, inspect, follow and steer tasks over the HTTP API."""

from __future__ import annotations

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
    follow_events,
    list_pages,
    more_note,
    out,
    print_event,
    print_json,
    read_body,
)

task_app = typer.Typer(help="Inspect and steer tasks.", no_args_is_help=True)

@task_app.command("list")
def task_list(status: StatusOpt = None,
              plan: Annotated[str | None, typer.Option("--plan", help="Only this plan's tasks.")] = None,
              search: SearchOpt = None, limit: LimitOpt = 50, every: AllOpt = False,
              json_out: JsonFlag = False) -> None:
    """List tasks, newest first."""
    tasks, total = list_pages("/agent/tasks", {"status": status, "plan_id": plan, "q": search}, limit, every)
    if json_out:
        print_json(tasks)
        return
    for task in tasks:
        of_plan = f"  (plan {task['plan_id']})" if task.get("plan_id") else ""
        out(f"{task['id']}  {task['status']:<11}  [{task['task_type']}]  {task['title']}{of_plan}")
    if not tasks:
        out("no tasks match" if status or plan or search else "no tasks yet")
    more_note(len(tasks), total, "tasks")


@task_app.command("new")
def task_new(
    title: Annotated[str, typer.Option(help="Task title.")],
    file: Annotated[Path | None, typer.Option(help="Markdown file (default: stdin).")] = None,
    task_type: Annotated[str, typer.Option("--type", help="feature, bugfix, refactor, chore, docs, test")]
    = "feature",
    depends_on: Annotated[list[str] | None, typer.Option(
        "--depends-on", help="Id of a task that must complete first (repeatable).")] = None,
    files: Annotated[list[str] | None, typer.Option(
        "--files", help="A path the task will change (repeatable).")] = None,
    max_turns: Annotated[int | None, typer.Option(
        "--max-turns", min=1, help="Turn limit for the task's agent (default: the max_turns setting).")] = None,
) -> None:
    """Create a standalone task (it starts as soon as a worker is free and its dependencies are done)."""
    body = {"title": title, "content": read_body(file), "task_type": task_type,
            "depends_on": depends_on or [], "files": files or []}
    if max_turns is not None:
        body["max_turns"] = max_turns
    task = call(connect().post, "/agent/tasks", json=body)
    out(f"created task {task['id']}: {task['title']}")
    for wait in task.get("waiting_for") or []:
        out(f"  {wait['text']}")


@task_app.command("show")
def task_show(task_id: str, json_out: JsonFlag = False) -> None:
    """Show one task: content, status, plan, run figures and error log."""
    task = call(connect().get, f"/agent/tasks/{task_id}")
    if json_out:
        print_json(task)
        return
    out(f"{task['title']}  [{task['status']}]", bold=True)
    out(f"id: {task['id']}   type: {task['task_type']}   plan: {task.get('plan_id') or '-'}")
    run = task.get("run") or {}
    if run:
        out(f"run: {run.get('outcome')}  cost ${run.get('cost_usd') or 0:.4f}  "
                   f"turns {run.get('num_turns')}  {(run.get('duration_ms') or 0) / 1000:.1f} s")
    runs = task.get("run_history") or []
    if len(runs) > 1:
        out(f"total cost ${task.get('total_cost_usd') or 0:.4f} over {len(runs)} runs: "
            + ", ".join(f"{r['kind']} ${r.get('cost_usd') or 0:.4f}" for r in runs))
    if task.get("repair"):
        out(task["repair"]["summary"].replace("`", ""), fg=typer.colors.MAGENTA)
    for repair in task.get("repairs") or []:
        if repair.get("result"):
            out(f"repair attempt {repair['attempt']} of {repair['of']} ({repair['kind']}"
                + (f" on {', '.join(repair['paths'])}" if repair.get("paths") else "")
                + f"): {repair['result']}")
    if task.get("depends_on"):
        out(f"depends on: {', '.join(task['depends_on'])}")
    if task.get("files"):
        out(f"files: {', '.join(task['files'])}")
    for wait in task.get("waiting_for") or []:
        out(wait["text"], fg=typer.colors.YELLOW)
    if task.get("result"):
        out(f"result: {task['result']}")
    out(f"\n{task['content']}")
    if task.get("error_log"):
        out(f"\n{task['error_log']}", fg=typer.colors.RED)


@task_app.command("logs")
def task_logs(task_id: str, follow: Annotated[bool, typer.Option(help="Keep streaming.")] = False) -> None:
    """Print a task's agent activity; with --follow, keep streaming until it ends."""
    client = connect()
    log = call(client.get, f"/agent/tasks/{task_id}/log")
    for event in log["events"]:
        print_event("", event)
    if not follow:
        return
    task = call(client.get, f"/agent/tasks/{task_id}")
    if task["status"] in ("completed", "failed"):
        return

    def handle(event: dict[str, Any]) -> bool:
        if event.get("task_id") == task_id and event["type"] == "task.log":
            print_event("", event.get("event", {}))
        found = event.get("task")
        if event["type"] == "task.status" and found and found["id"] == task_id \
                and found["status"] in ("completed", "failed"):
            out(f"task {task_id}: {found['status']}")
            return True
        return False

    def finished() -> bool:
        status = call(client.get, f"/agent/tasks/{task_id}")["status"]
        if status in ("completed", "failed"):
            out(f"task {task_id}: {status}")
            return True
        return False

    follow_events(client, "task", handle, finished, f"shipyard task logs {task_id} --follow")


@task_app.command("land")
def task_land() -> None:
    """Merge standalone tasks' integrated work (the shipyard/tasks branch) into the base branch."""
    answer = call(connect().post, "/agent/standalone/land")
    out(answer["message"])


@task_app.command("cancel")
def task_cancel(task_id: str) -> None:
    """Cancel a pending or running task."""
    task = call(connect().post, f"/agent/tasks/{task_id}/cancel")
    out(f"task {task_id}: {task['status']}")


@task_app.command("delete")
def task_delete(task_id: str, cascade: Annotated[bool, typer.Option(
        help="Also delete the tasks that depend on it.")] = False) -> None:
    """Delete a task (refused while others depend on it, unless --cascade)."""
    answer = call(connect().request, "DELETE", f"/agent/tasks/{task_id}",
                   params={"cascade": "true"} if cascade else None)
    out(f"deleted {', '.join(answer['removed'])}")


@task_app.command("rerun")
def task_rerun(task_id: str) -> None:
    """Send a failed task back to pending."""
    task = call(connect().post, f"/agent/tasks/{task_id}/rerun")
    out(f"task {task_id}: {task['status']}")


