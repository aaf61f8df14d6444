"""The ``shipyard`` command.

``serve`` runs the server for the repository you are in; every other command
talks to a running server over HTTP (the same API the dashboard uses) and
prints a sentence, not a traceback, when something is wrong.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from backend import __version__
from backend.client import Client, ClientError, StreamLost, resolve_server, server_for_settings
from backend.config import ConfigError, load_settings

app = typer.Typer(help="Shipyard: plans in, merged work out.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
plan_app = typer.Typer(help="Create, start and follow plans.", no_args_is_help=True)
task_app = typer.Typer(help="Inspect and steer tasks.", no_args_is_help=True)
app.add_typer(plan_app, name="plan")
app.add_typer(task_app, name="task")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print raw JSON.")]


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {_plain(message)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _client() -> Client:
    url, token = resolve_server()
    return Client(url, token)


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ClientError as exc:
        _fail(str(exc))


#: C0 controls except tab and newline, DEL and C1 controls: what makes a terminal obey text.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _plain(text: str) -> str:
    """Text from the server with control characters shown as ``\\xNN``, never sent raw.

    A title like ``"\\x1b]0;pwned\\x07"`` must not retitle, recolour or clear the user's terminal.
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _out(text: str, **style: Any) -> None:
    """Print a line that carries server data (see :func:`_plain`)."""
    typer.secho(_plain(text), **style)


def _print_json(data: Any) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False)  # C0 is escaped by JSON itself; C1 too here
    typer.echo(re.sub(r"[\x7f-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", text))


@app.command()
def version() -> None:
    """Print Shipyard's version."""
    typer.echo(__version__)


@app.command()
def url() -> None:
    """Print the dashboard address of the running server, token included (open it in a browser)."""
    base, token = resolve_server()
    if not token:
        _fail(f"no running Shipyard server found for this project (tried {base}): start one with "
              "'shipyard serve'.")
    _call(Client(base, token, timeout=5).get, "/agent/health")
    typer.echo(f"{base}/?token={token}")


# ------------------------------------------------------------------ serve
@app.command()
def serve(
    project: Annotated[Path | None, typer.Option(help="Repository to manage (default: cwd).")] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8765; 0 picks a free one).")] = None,
    state_dir: Annotated[Path | None, typer.Option(help="State directory (default .shipyard).")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """Run the Shipyard server and dashboard for a repository."""
    import uvicorn
    from filelock import FileLock, Timeout

    from backend.api import create_app
    from backend.auth import ServerFiles, generate_token
    from backend.project import prepare_state_dir

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(project, {"host": host, "port": port, "state_dir": state_dir})
        state = prepare_state_dir(settings)
    except ConfigError as exc:
        _fail(str(exc))
        return
    lock = FileLock(str(state / "server.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        _fail(f"another Shipyard server is already running for {settings.project_dir} "
              f"(lock {state / 'server.lock'}).")
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on connections of sockets whose
    # proto says TCP, and without it every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        _fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}. "
              "Pick another port with --port or SHIPYARD_PORT.")
    actual_port = sock.getsockname()[1]
    settings.port = actual_port
    if not settings.access_token:
        settings.access_token = generate_token()
    files = ServerFiles.for_server(state)
    try:
        files.write(settings.url, settings.access_token, settings.project_dir)
    except OSError as exc:
        _fail(f"cannot write the server file {exc.filename}: {exc.strerror}.")
    application = create_app(settings)
    typer.secho(f"Shipyard {__version__} for {settings.name} ({settings.project_dir})", bold=True)
    typer.echo(f"  dashboard: {settings.url}/?token={settings.access_token}")
    typer.echo(f"  API docs:  {settings.url}/docs")
    typer.echo(f"  state:     {state}")
    typer.echo(f"  The token is in {files.state_file} (only you can read it); the CLI finds it there.")
    typer.echo("  Ctrl-C stops (running agents are stopped and their tasks requeued).")
    trust = application.state.dispatcher.trust
    if not trust.trusted:
        typer.secho(f"  ! {trust.explain()}.", fg=typer.colors.YELLOW)
        typer.secho(f"    To fix: {trust.FIX}", fg=typer.colors.YELLOW)
    _print_startup_problems(settings)
    sys.stdout.flush()
    from backend.serving import (
        ConnectionLimits,
        GuardedH11Protocol,
        connection_cap,
        install_repeat_filter,
        raise_open_file_limit,
    )

    soft, _hard = raise_open_file_limit()
    ConnectionLimits.max_connections = connection_cap(settings.max_connections, settings.fd_reserve, soft)
    ConnectionLimits.header_timeout_s = settings.header_timeout_s
    if ConnectionLimits.max_connections < settings.max_connections:
        typer.echo(f"  connections: at most {ConnectionLimits.max_connections} (open-file limit {soft}, "
                   f"{settings.fd_reserve} kept for agents)")
    config = uvicorn.Config(application, log_level=log_level.lower(), timeout_graceful_shutdown=5,
                            access_log=log_level.lower() == "debug", http=GuardedH11Protocol,
                            backlog=2048)
    install_repeat_filter()
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on the first SIGINT/SIGTERM (a second one forces it) and then
    # re-raises the signal; these handlers turn that re-raise into a quiet, successful exit.
    signal.signal(signal.SIGTERM, _stopped_by_signal)
    signal.signal(signal.SIGINT, _stopped_by_signal)
    try:
        server.run(sockets=[sock])
    except _StopServing:
        pass
    finally:
        files.remove()
        lock.release()
    typer.echo("Shipyard stopped.")


def _print_startup_problems(settings: Any) -> None:
    """The doctor's failed checks, in the terminal too (the dashboard shows them as a banner)."""
    from backend.doctor import run_checks

    problems = [c for c in run_checks(settings) if c.level != "ok" and c.name != "trust"]  # said above
    if not problems:
        return
    blocking = any(c.blocks_start for c in problems)
    typer.secho("  Plans cannot start until this is fixed:" if blocking else "  Warnings:",
                fg=typer.colors.RED if blocking else typer.colors.YELLOW, bold=True)
    _print_checks(problems, indent="    ")


class _StopServing(Exception):
    """Raised by the signal handler once uvicorn has finished its graceful shutdown."""


def _stopped_by_signal(_signum: int, _frame: object) -> None:
    raise _StopServing()


# ------------------------------------------------------------------ doctor
@app.command()
def doctor(project: Annotated[Path | None, typer.Option(help="Repository (default: cwd).")] = None) -> None:
    """Check that Shipyard can run agents here, and say how to fix what is missing.

    When a server is running (at SHIPYARD_URL, or the project's address) it is asked:
    its checks are the ones that matter, since agents inherit its environment, not this
    shell's. Otherwise the checks run here.
    """
    from backend.doctor import Check, run_checks

    env_url = os.environ.get("SHIPYARD_URL")
    settings = None
    if project is not None or not env_url:
        try:
            settings = load_settings(project)
        except ConfigError as exc:
            typer.secho(f"✗ project: {exc}", fg=typer.colors.RED)
            raise typer.Exit(1) from None
    url, token = resolve_server() if settings is None else server_for_settings(settings)
    health = None
    with contextlib.suppress(ClientError):
        health = Client(url, token, timeout=5).get("/agent/health")
    checks: list[Check]
    if health is not None:
        typer.echo(f"asking the server at {url} (project {health.get('project_dir')})")
        checks = [Check(c["name"], c["level"], c["detail"], c.get("fix") or "")
                  for c in health.get("checks", [])]
        checks.append(Check("server", "ok", f"running at {url}"))
    elif settings is None:
        typer.secho(f"✗ server: no Shipyard server answers at {url} (SHIPYARD_URL)", fg=typer.colors.RED)
        typer.echo("    fix: start it with 'shipyard serve', or unset SHIPYARD_URL to check this project.")
        raise typer.Exit(1)
    else:
        checks = run_checks(settings)
        checks.append(Check("server", "warn", f"not running at {url}",
                            "start it with 'shipyard serve'."))
    _print_checks(checks)
    if any(c.level == "error" for c in checks):
        raise typer.Exit(1)


def _print_checks(checks: list[Any], indent: str = "") -> None:
    marks = {"ok": ("✓", typer.colors.GREEN), "warn": ("!", typer.colors.YELLOW),
             "error": ("✗", typer.colors.RED)}
    for check in checks:
        mark, colour = marks.get(check.level, ("?", None))
        typer.secho(f"{indent}{mark} {check.name}: {check.detail}", fg=colour)
        if check.fix:
            typer.echo(f"{indent}    fix: {check.fix}")


# ------------------------------------------------------------------ trust
@app.command()
def trust(
    project: Annotated[Path | None, typer.Option(help="Repository (default: cwd).")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask; trust what is shown.")] = False,
) -> None:
    """Trust the commands a committed shipyard.yaml sets, so Shipyard may run them here."""
    from backend.trust import TrustGate

    try:
        settings = load_settings(project)
    except ConfigError as exc:
        _fail(str(exc))
        return
    gate = TrustGate(settings.project_dir, settings.committed_commands)
    if not gate.commands:
        _out("Nothing to trust: no command here comes from a shipyard.yaml tracked by git "
                   "(commands from your environment, flags or an untracked shipyard.yaml are yours).")
        return
    _out(f"shipyard.yaml in {settings.project_dir} is tracked by git and sets:", bold=True)
    for name, value in gate.commands.items():
        _out(f"  {name}: {_plain(json.dumps(value, ensure_ascii=False))}")
    if gate.trusted:
        _out("You already trust exactly these commands.")
    elif not yes and not typer.confirm("Shipyard will run these on this machine, as you. Trust them?",
                                       default=False):
        _fail("not trusted; Shipyard will not run agents or commands in this project.")
    else:
        gate.grant(gate.hash)
        _out(f"Trusted (recorded in {gate.store.path}). Changing any of them asks again.")
    url, token = server_for_settings(settings)
    if token:
        try:
            Client(url, token, timeout=5).post("/agent/trust", json={"hash": gate.hash})
            _out(f"The server at {url} may run them now.")
        except ClientError as exc:
            if "changed since" in str(exc):
                _fail(f"the running server at {url} was started with other commands: restart it.")


# ------------------------------------------------------------------ plans
def _read_body(file: Path | None) -> str:
    if file is not None:
        try:
            return file.read_text(encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot read {file}: {exc.strerror}")
    if sys.stdin.isatty():
        _out("Type the plan (markdown), then Ctrl-D:", err=True)
    return sys.stdin.read()


@plan_app.command("new")
def plan_new(
    title: Annotated[str, typer.Option(help="Plan title.")],
    file: Annotated[Path | None, typer.Option(help="Markdown file (default: stdin).")] = None,
    summary: Annotated[str, typer.Option(help="One-paragraph summary.")] = "",
    json_out: JsonFlag = False,
) -> None:
    """Create a draft plan from a markdown file or standard input."""
    body = _read_body(file)
    plan = _call(_client().post, "/agent/plans", json={"title": title, "summary": summary, "content": body})
    if json_out:
        _print_json(plan)
    else:
        _out(f"created plan {plan['id']} ({plan['status']}): {plan['title']}")
        _out(f"start it with: shipyard plan start {plan['id']} --follow")


StatusOpt = Annotated[str | None, typer.Option("--status", help="Only these statuses (comma-separated).")]
SearchOpt = Annotated[str | None, typer.Option("--search", "-q", help="Only items whose title contains this.")]
LimitOpt = Annotated[int, typer.Option("--limit", "-n", help="Show at most this many (newest first).")]
AllOpt = Annotated[bool, typer.Option("--all", help="Show every match, page after page.")]


def _list(path: str, params: dict[str, Any], limit: int, every: bool) -> tuple[list[dict[str, Any]], int]:
    """Items of a paged list, newest first, and how many match in all."""
    client = _client()
    items: list[dict[str, Any]] = []
    total = 0
    try:
        for page in client.pages(path, {**params, "order": "desc"}, None if every else limit):
            total = page["total"] if not items else total
            items += page["items"]
    except ClientError as exc:
        _fail(str(exc))
    return items, total


def _more(shown: int, total: int, noun: str) -> None:
    if total > shown:
        typer.echo(f"({shown} of {total} {noun} shown, newest first; --all for every one, "
                   "--status or --search to narrow)")


@plan_app.command("list")
def plan_list(status: StatusOpt = None, search: SearchOpt = None, limit: LimitOpt = 50, every: AllOpt = False,
              json_out: JsonFlag = False) -> None:
    """List plans, newest first."""
    plans, total = _list("/agent/plans", {"status": status, "q": search}, limit, every)
    if json_out:
        _print_json(plans)
        return
    for plan in plans:
        progress = plan.get("progress", {})
        done = progress.get("completed", 0)
        count = progress.get("total", 0)
        extra = f"  {done}/{count} done" if count else ""
        state = (plan.get("lifecycle") or {}).get("label") or plan["status"]
        _out(f"{plan['id']}  {state:<16}  {plan['title']}{extra}")
    if not plans:
        _out("no plans match" if status or search else
             "no plans yet: create one with 'shipyard plan new --title ... --file plan.md'")
    _more(len(plans), total, "plans")


@plan_app.command("show")
def plan_show(plan_id: str, json_out: JsonFlag = False) -> None:
    """Show one plan, its tasks and progress."""
    plan = _call(_client().get, f"/agent/plans/{plan_id}")
    if json_out:
        _print_json(plan)
        return
    _out(f"{plan['title']}  [{plan['status']}{' · orchestrating' if plan['orchestrating'] else ''}]",
                bold=True)
    _out(f"id: {plan['id']}   created: {plan['created']}")
    if plan.get("summary"):
        _out(f"\n{plan['summary']}")
    if plan.get("error"):
        _out(f"\nerror: {plan['error']}", fg=typer.colors.RED)
    state = plan.get("lifecycle") or {}
    if state:
        _out(f"state: {state['label']}{' — ' + state['detail'] if state.get('detail') else ''}")
    if plan.get("integration_branch"):
        _out(f"\nintegration branch: {plan['integration_branch']} (base {plan.get('base_branch')})")
    verification = plan.get("verification")
    if verification:
        took = f" in {verification['duration_s']:.1f} s" if verification.get("duration_s") is not None else ""
        _out(f"verification: {verification['status']} at {str(verification.get('commit'))[:10]}{took}"
             + (f" — {verification['reason']}" if verification.get("reason") else ""))
    if plan.get("proposals"):
        _out("")
        _print_proposals(plan["proposals"])
    if plan.get("task_details"):
        _out("\ntasks:")
        for task in plan["task_details"]:
            _out(f"  {task['id']}  {task['status']:<11}  {task['title']}")
            for wait in task.get("waiting_for") or []:
                _out(f"      {wait['text']}")
    _out(f"\ncost: ${plan.get('total_cost_usd', 0):.4f}")


def _print_event(prefix: str, event: dict[str, Any]) -> None:
    summary = event.get("summary") or event.get("kind", "")
    _out(f"{prefix}{summary}")


def _start(client: Client, plan_id: str, review: bool | None = None) -> None:
    body = {"review": review} if review is not None else None
    answer = _call(client.post, f"/agent/plans/{plan_id}/start", json=body)
    _out(f"plan {answer['plan_id']}: {answer['status']}")


@plan_app.command("start")
def plan_start(
    plan_id: str,
    follow: Annotated[bool, typer.Option(help="Stream progress.")] = False,
    review: Annotated[bool | None, typer.Option(
        "--review/--no-review", help="Hold the tasks for review before any runs "
        "(default: the plan's choice, else the review_tasks setting).")] = None,
) -> None:
    """Start the orchestrator on a plan; with --follow, stream what it does and print the tasks."""
    client = _client()
    if follow:  # the stream is opened first, then the plan started: no event is missed or stale
        _follow_plan(client, plan_id, on_ready=lambda: _start(client, plan_id, review))
    else:
        _start(client, plan_id, review)


#: How long --follow waits for a server that went away to come back before giving up.
RECONNECT_S = 10.0


def _follow(client: Client, types: str, handle: Any, finished: Any, again: str,
            on_ready: Any = None) -> None:
    """Stream events to ``handle`` until it returns True; survive the server going away.

    When the stream breaks (the server stopped, crashed or restarted) one line says so
    and the server is given :data:`RECONNECT_S` to come back; ``finished()`` then asks
    whether the end was missed meanwhile. No traceback, whatever happens.
    """
    while True:
        try:
            for event in client.events(types=types):
                if event["type"] == "hello":
                    if on_ready is not None:
                        on_ready()
                        on_ready = None
                    continue
                if handle(event):
                    return
        except StreamLost as exc:
            if on_ready is not None:  # never connected
                _fail(str(exc))
        except ClientError as exc:
            _fail(str(exc))
        typer.secho(f"lost the connection to the server at {client.base_url}; reconnecting…",
                    fg=typer.colors.YELLOW, err=True)
        if not client.wait_until_back(RECONNECT_S):
            _fail(f"the server at {client.base_url} stopped. Follow again once it is back: {again}")
        if finished():
            return


def _follow_plan(client: Client, plan_id: str, on_ready: Any = None) -> None:
    def handle(event: dict[str, Any]) -> bool:
        if event.get("plan_id") == plan_id and event["type"] == "plan.log":
            _print_event("  ", event.get("event", {}))
        plan = event.get("plan")
        return bool(event["type"] == "plan.status" and plan and plan["id"] == plan_id
                    and plan["status"] in ("done", "failed", "review"))

    def finished() -> bool:
        return _call(client.get, f"/agent/plans/{plan_id}")["status"] in ("done", "failed", "review")

    _follow(client, "plan", handle, finished, f"shipyard plan show {plan_id}", on_ready=on_ready)
    plan = _call(client.get, f"/agent/plans/{plan_id}")
    if plan["status"] == "failed":
        _fail(f"plan failed: {plan.get('error')}")
    if plan["status"] == "review":
        _print_proposals(plan.get("proposals") or [])
        _out(f"\nreview them: shipyard plan review {plan_id} --edit, then "
                   f"shipyard plan approve {plan_id} (or discard)")
        return
    _out(f"plan {plan_id} produced {len(plan['tasks'])} task(s):", bold=True)
    for task in plan.get("task_details", []):
        _out(f"  {task['id']}  [{task['task_type']}]  {task['title']}")


def _print_proposals(tasks: list[dict[str, Any]]) -> None:
    _out(f"{len(tasks)} proposed task(s), not yet running:", bold=True)
    for number, task in enumerate(tasks, start=1):
        _out(f"\n{number}. [{task.get('task_type')}] {task.get('title')}")
        if task.get("depends_on"):
            _out(f"   depends on: {', '.join(str(d) for d in task['depends_on'])}")
        if task.get("files"):
            _out(f"   files: {', '.join(task['files'])}")
        for line in str(task.get("content", "")).splitlines():
            _out(f"   {line}")


def _edit_in_editor(text: str) -> str:
    """Let the user edit ``text`` in $VISUAL/$EDITOR (default vi); returns the saved text."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="shipyard-proposals-",
                                     delete=False, encoding="utf-8") as handle:
        handle.write(text)
        path = handle.name
    try:
        if subprocess.run([*shlex.split(editor), path]).returncode != 0:
            _fail(f"the editor ({editor}) exited with an error; nothing was changed.")
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
    client = _client()
    current = _call(client.get, f"/agent/plans/{plan_id}/proposals")
    if current["status"] != "review":
        _fail(f"plan {plan_id} is {current['status']}, not in review: start it with "
              f"'shipyard plan start {plan_id} --review'.")
    new_text = None
    if file is not None:
        try:
            new_text = file.read_text(encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot read {file}: {exc.strerror}")
    elif edit:
        before = json.dumps({"tasks": current["tasks"]}, indent=2, ensure_ascii=False) + "\n"
        new_text = _edit_in_editor(before)
        if new_text == before:
            _out("no changes.")
            new_text = None
    if new_text is not None:
        try:
            data = json.loads(new_text)
        except json.JSONDecodeError as exc:
            _fail(f"the proposals are not valid JSON: {exc}; nothing was changed.")
        if isinstance(data, list):
            data = {"tasks": data}
        if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
            _fail('the proposals must be {"tasks": [...]}; nothing was changed.')
        _call(client.request, "PUT", f"/agent/plans/{plan_id}/proposals", json={"tasks": data["tasks"]})
        current = _call(client.get, f"/agent/plans/{plan_id}/proposals")
        _out(f"saved {len(current['tasks'])} proposal(s).")
    if json_out:
        _print_json({"tasks": current["tasks"]})
    elif new_text is None:
        _print_proposals(current["tasks"])


@plan_app.command("approve")
def plan_approve(plan_id: str) -> None:
    """Publish a reviewed plan's proposals as tasks, all at once."""
    plan = _call(_client().post, f"/agent/plans/{plan_id}/approve")
    _out(f"plan {plan_id}: {plan['status']}; {len(plan['tasks'])} task(s) created")


@plan_app.command("discard")
def plan_discard(plan_id: str) -> None:
    """Drop a reviewed plan's proposals (the plan log keeps them); the plan is ready again."""
    plan = _call(_client().post, f"/agent/plans/{plan_id}/discard")
    _out(f"plan {plan_id}: {plan['status']}; proposals discarded (see shipyard plan log {plan_id})")


@plan_app.command("chat")
def plan_chat(
    chat: Annotated[str | None, typer.Option(help="Continue this chat.")] = None,
    plan: Annotated[str | None, typer.Option(help="Revise this plan (reopens its chat).")] = None,
    message: Annotated[str | None, typer.Option("--message", "-m", help="First message.")] = None,
) -> None:
    """Write a plan with Claude: a conversation that explores the code and drafts the plan."""
    from backend.chat_cli import run_chat

    _call(run_chat, _client(), chat, plan, message, _follow_plan)


@plan_app.command("cancel")
def plan_cancel(plan_id: str) -> None:
    """Stop a running orchestration (the plan becomes failed: cancelled)."""
    plan = _call(_client().post, f"/agent/plans/{plan_id}/cancel")
    _out(f"plan {plan_id}: {plan['status']}{' — ' + plan['error'] if plan.get('error') else ''}")


@plan_app.command("retry")
def plan_retry(plan_id: str, follow: Annotated[bool, typer.Option(help="Stream progress.")] = False) -> None:
    """Run the orchestrator again on a failed plan (as the dashboard's Retry does)."""
    client = _client()
    _call(client.post, f"/agent/plans/{plan_id}/retry")
    if follow:
        _follow_plan(client, plan_id, on_ready=lambda: _start(client, plan_id))
    else:
        _start(client, plan_id)


@plan_app.command("land")
def plan_land(plan_id: str, force: Annotated[bool, typer.Option(
        "--force", help="Land even if the plan branch has not passed verification.")] = False) -> None:
    """Merge a plan's integration branch into its base branch, when that is safe and verified."""
    answer = _call(_client().post, f"/agent/plans/{plan_id}/land", json={"force": force})
    _out(answer["message"])


@plan_app.command("verify")
def plan_verify(plan_id: str) -> None:
    """Run the verify command on the plan branch again (the result appears in 'plan show')."""
    _call(_client().post, f"/agent/plans/{plan_id}/verify")
    _out(f"plan {plan_id}: verifying; see 'shipyard plan show {plan_id}' or 'shipyard plan log {plan_id}'")


@plan_app.command("diff")
def plan_diff(plan_id: str, stat: Annotated[bool, typer.Option("--stat", help="Only the changed files.")]
              = False) -> None:
    """Print the whole plan's changes: its branch against the commit it started from."""
    answer = _call(_client().get, f"/agent/plans/{plan_id}/diff")
    if stat or not answer["diff"]:
        for path in answer["files"]:
            _out(path)
        if not answer["files"]:
            _out("no changes" + (f": {answer['error']}" if answer.get("error") else ""))
        return
    typer.echo(answer["diff"], nl=False)


@plan_app.command("log")
def plan_log(plan_id: str) -> None:
    """Print the orchestrator's run log."""
    log = _call(_client().get, f"/agent/plans/{plan_id}/log")
    for event in log["events"]:
        _print_event("", event)


# ------------------------------------------------------------------ tasks
@task_app.command("list")
def task_list(status: StatusOpt = None,
              plan: Annotated[str | None, typer.Option("--plan", help="Only this plan's tasks.")] = None,
              search: SearchOpt = None, limit: LimitOpt = 50, every: AllOpt = False,
              json_out: JsonFlag = False) -> None:
    """List tasks, newest first."""
    tasks, total = _list("/agent/tasks", {"status": status, "plan_id": plan, "q": search}, limit, every)
    if json_out:
        _print_json(tasks)
        return
    for task in tasks:
        of_plan = f"  (plan {task['plan_id']})" if task.get("plan_id") else ""
        _out(f"{task['id']}  {task['status']:<11}  [{task['task_type']}]  {task['title']}{of_plan}")
    if not tasks:
        _out("no tasks match" if status or plan or search else "no tasks yet")
    _more(len(tasks), total, "tasks")


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
) -> None:
    """Create a standalone task (it starts as soon as a worker is free and its dependencies are done)."""
    task = _call(_client().post, "/agent/tasks",
                 json={"title": title, "content": _read_body(file), "task_type": task_type,
                       "depends_on": depends_on or [], "files": files or []})
    _out(f"created task {task['id']}: {task['title']}")
    for wait in task.get("waiting_for") or []:
        _out(f"  {wait['text']}")


@task_app.command("show")
def task_show(task_id: str, json_out: JsonFlag = False) -> None:
    """Show one task: content, status, plan, run figures and error log."""
    task = _call(_client().get, f"/agent/tasks/{task_id}")
    if json_out:
        _print_json(task)
        return
    _out(f"{task['title']}  [{task['status']}]", bold=True)
    _out(f"id: {task['id']}   type: {task['task_type']}   plan: {task.get('plan_id') or '-'}")
    run = task.get("run") or {}
    if run:
        _out(f"run: {run.get('outcome')}  cost ${run.get('cost_usd') or 0:.4f}  "
                   f"turns {run.get('num_turns')}  {(run.get('duration_ms') or 0) / 1000:.1f} s")
    if task.get("depends_on"):
        _out(f"depends on: {', '.join(task['depends_on'])}")
    if task.get("files"):
        _out(f"files: {', '.join(task['files'])}")
    for wait in task.get("waiting_for") or []:
        _out(wait["text"], fg=typer.colors.YELLOW)
    if task.get("result"):
        _out(f"result: {task['result']}")
    _out(f"\n{task['content']}")
    if task.get("error_log"):
        _out(f"\n{task['error_log']}", fg=typer.colors.RED)


@task_app.command("logs")
def task_logs(task_id: str, follow: Annotated[bool, typer.Option(help="Keep streaming.")] = False) -> None:
    """Print a task's agent activity; with --follow, keep streaming until it ends."""
    client = _client()
    log = _call(client.get, f"/agent/tasks/{task_id}/log")
    for event in log["events"]:
        _print_event("", event)
    if not follow:
        return
    task = _call(client.get, f"/agent/tasks/{task_id}")
    if task["status"] in ("completed", "failed"):
        return

    def handle(event: dict[str, Any]) -> bool:
        if event.get("task_id") == task_id and event["type"] == "task.log":
            _print_event("", event.get("event", {}))
        found = event.get("task")
        if event["type"] == "task.status" and found and found["id"] == task_id \
                and found["status"] in ("completed", "failed"):
            _out(f"task {task_id}: {found['status']}")
            return True
        return False

    def finished() -> bool:
        status = _call(client.get, f"/agent/tasks/{task_id}")["status"]
        if status in ("completed", "failed"):
            _out(f"task {task_id}: {status}")
            return True
        return False

    _follow(client, "task", handle, finished, f"shipyard task logs {task_id} --follow")


@task_app.command("land")
def task_land() -> None:
    """Merge standalone tasks' integrated work (the shipyard/tasks branch) into the base branch."""
    answer = _call(_client().post, "/agent/standalone/land")
    _out(answer["message"])


@task_app.command("cancel")
def task_cancel(task_id: str) -> None:
    """Cancel a pending or running task."""
    task = _call(_client().post, f"/agent/tasks/{task_id}/cancel")
    _out(f"task {task_id}: {task['status']}")


@task_app.command("delete")
def task_delete(task_id: str, cascade: Annotated[bool, typer.Option(
        help="Also delete the tasks that depend on it.")] = False) -> None:
    """Delete a task (refused while others depend on it, unless --cascade)."""
    answer = _call(_client().request, "DELETE", f"/agent/tasks/{task_id}",
                   params={"cascade": "true"} if cascade else None)
    _out(f"deleted {', '.join(answer['removed'])}")


@task_app.command("rerun")
def task_rerun(task_id: str) -> None:
    """Send a failed task back to pending."""
    task = _call(_client().post, f"/agent/tasks/{task_id}/rerun")
    _out(f"task {task_id}: {task['status']}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
