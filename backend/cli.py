"""The ``shipyard`` command.

``serve`` runs the server for the repository you are in; every other command
talks to a running server over HTTP (the same API the dashboard uses) and
prints a sentence, not a traceback, when something is wrong. Plan commands
live in :mod:`backend.cli_plan`, task commands in :mod:`backend.cli_task`,
and what they share in :mod:`backend.cli_output`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from backend import __version__
from backend.cli_output import call, fail, out, plain
from backend.cli_plan import plan_app
from backend.cli_task import task_app
from backend.client import Client, ClientError, resolve_server, server_for_settings
from backend.config import ConfigError, Settings, load_settings
from backend.containment import sandbox_decision

app = typer.Typer(help="Shipyard: plans in, merged work out.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
app.add_typer(plan_app, name="plan")
app.add_typer(task_app, name="task")


@app.command()
def version() -> None:
    """Print Shipyard's version."""
    typer.echo(__version__)


@app.command()
def url() -> None:
    """Print the dashboard address of the running server, token included (open it in a browser)."""
    base, token = resolve_server()
    if not token:
        fail(f"no running Shipyard server found for this project (tried {base}): start one with "
              "'shipyard serve'.")
    call(Client(base, token, timeout=5).get, "/agent/health")
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
    from backend.api import create_app
    from backend.auth import ServerFiles, generate_token

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings, state, lock = _settings_and_lock(project, host, port, state_dir)
    sock = _listen(settings.host, settings.port)
    settings.port = sock.getsockname()[1]
    if not settings.access_token:
        settings.access_token = generate_token()
    files = ServerFiles.for_server(state)
    try:
        files.write(settings.url, settings.access_token, settings.project_dir)
    except OSError as exc:
        fail(f"cannot write the server file {exc.filename}: {exc.strerror}.")
    application = create_app(settings)
    _announce(settings, state, files.state_file, application.state.dispatcher.trust)
    server = _uvicorn_server(application, settings, log_level)
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


def _settings_and_lock(
    project: Path | None, host: str | None, port: int | None, state_dir: Path | None,
) -> tuple[Settings, Path, Any]:
    """Load the settings, prepare the state directory and take its server lock.

    The lock is what makes a second ``serve`` for the same project refuse instead of
    two servers dispatching the same plans.
    """
    from filelock import FileLock, Timeout

    from backend.project import prepare_state_dir

    try:
        settings = load_settings(project, {"host": host, "port": port, "state_dir": state_dir})
        state = prepare_state_dir(settings)
    except ConfigError as exc:
        fail(str(exc))
        raise  # unreachable: fail exits
    lock = FileLock(str(state / "server.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        fail(f"another Shipyard server is already running for {settings.project_dir} "
              f"(lock {state / 'server.lock'}).")
    return settings, state, lock


def _listen(host: str, port: int) -> socket.socket:
    """Bind the server's socket ourselves, so port 0 resolves before the server file is written."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on connections of sockets whose
    # proto says TCP, and without it every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror}. "
              "Pick another port with --port or SHIPYARD_PORT.")
    return sock


def _announce(settings: Settings, state: Path, state_file: Path, trust: Any) -> None:
    """Tell the person at the terminal where the dashboard is and what needs their attention."""
    typer.secho(f"Shipyard {__version__} for {settings.name} ({settings.project_dir})", bold=True)
    typer.echo(f"  dashboard: {settings.url}/?token={settings.access_token}")
    typer.echo(f"  API docs:  {settings.url}/docs")
    typer.echo(f"  state:     {state}")
    typer.echo(f"  The token is in {state_file} (only you can read it); the CLI finds it there.")
    typer.echo("  Ctrl-C stops (running agents are stopped and their tasks requeued).")
    decision = sandbox_decision(settings)
    if decision.sandbox:
        typer.echo(f"  sandbox:   {decision.summary}")
    else:
        typer.secho(f"  ! {decision.refusal or decision.summary}.", fg=typer.colors.YELLOW)
        if settings.sandbox != "off":
            typer.secho("    To fix: install bubblewrap and socat (apt-get install bubblewrap socat), "
                        "or set sandbox: off to run agents unsandboxed on purpose.", fg=typer.colors.YELLOW)
    if not trust.trusted:
        typer.secho(f"  ! {trust.explain()}.", fg=typer.colors.YELLOW)
        typer.secho(f"    To fix: {trust.FIX}", fg=typer.colors.YELLOW)
    _print_startup_problems(settings)
    sys.stdout.flush()


def _uvicorn_server(application: Any, settings: Settings, log_level: str) -> Any:
    """A uvicorn server with Shipyard's connection limits, sized to the open-file limit."""
    import uvicorn

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
    return uvicorn.Server(config)


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
        fail(str(exc))
        return
    gate = TrustGate(settings.project_dir, settings.committed_commands)
    if not gate.commands:
        out("Nothing to trust: no command here comes from a shipyard.yaml tracked by git "
                   "(commands from your environment, flags or an untracked shipyard.yaml are yours).")
        return
    out(f"shipyard.yaml in {settings.project_dir} is tracked by git and sets:", bold=True)
    for name, value in gate.commands.items():
        out(f"  {name}: {plain(json.dumps(value, ensure_ascii=False))}")
    if gate.trusted:
        out("You already trust exactly these commands.")
    elif not yes and not typer.confirm("Shipyard will run these on this machine, as you. Trust them?",
                                       default=False):
        fail("not trusted; Shipyard will not run agents or commands in this project.")
    else:
        gate.grant(gate.hash)
        out(f"Trusted (recorded in {gate.store.path}). Changing any of them asks again.")
    url, token = server_for_settings(settings)
    if token:
        try:
            Client(url, token, timeout=5).post("/agent/trust", json={"hash": gate.hash})
            out(f"The server at {url} may run them now.")
        except ClientError as exc:
            if "changed since" in str(exc):
                fail(f"the running server at {url} was started with other commands: restart it.")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
