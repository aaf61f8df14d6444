"""Contained agents: real bubblewrap around real commands, real sockets, the real Claude Code CLI.

The fast tests wrap small shell and Python commands with :func:`backend.sandbox.wrap`
and look from inside (what can be written, read, reached); the slow ones run
Claude Code through the runner core with a sandbox spec against the scripted
model server, which the sandbox can reach only through the model-port bridge.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from backend.config import ConfigError, Settings, load_settings
from backend.doctor import sandbox_check
from backend.runners.claude_code import ClaudeCodeRunner
from backend.runners.core import RUN_TOKEN_ENV, AgentEvent, RunRequest
from backend.sandbox import SandboxProbe, SandboxSpec, Wrapped, probe, sandbox_mode, wrap
from backend.sandbox.bwrap import real_homes
from tests.fakes.fixtures import hermetic_environ
from tests.fakes.model_server import ModelServer, bash, text, tool_calls, write

PYTHON = "/usr/bin/python3"


@pytest.fixture
def place(tmp_path: Path) -> dict[str, Path]:
    """A repository, a private home, an outside folder and a secret folder, all real."""
    paths = {name: tmp_path / name for name in ("repo", "home", "outside", "secret")}
    for path in paths.values():
        path.mkdir()
    (paths["secret"] / "key.txt").write_text("top secret\n")
    return paths


def run_inside(wrapped: Wrapped, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a wrapped command to its end and close the wrapper."""
    try:
        return subprocess.run(wrapped.argv, env=wrapped.env, capture_output=True, text=True, timeout=timeout)
    finally:
        wrapped.close()


def sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


# ------------------------------------------------------------------------ files and home


def test_writes_land_only_in_writable_paths(place: dict[str, Path]) -> None:
    spec = SandboxSpec(rw_paths=(place["repo"],), ro_paths=(place["outside"],), home=place["home"],
                       network="host")
    script = (f"echo in > {place['repo']}/in.txt && echo repo-ok; "
              f"echo out > {place['outside']}/out.txt || echo outside-refused; "
              f"echo etc > /etc/shipyard-sandbox-test || echo etc-refused; "
              "echo tmp > /tmp/private.txt && echo tmp-ok")
    proc = run_inside(wrap(sh(script), dict(os.environ), spec, cwd=place["repo"]))
    assert proc.stdout.split() == ["repo-ok", "outside-refused", "etc-refused", "tmp-ok"], proc.stderr
    assert "Read-only file system" in proc.stderr
    assert (place["repo"] / "in.txt").read_text() == "in\n"
    assert not (place["outside"] / "out.txt").exists()
    assert not Path("/etc/shipyard-sandbox-test").exists()


def test_hidden_paths_are_empty_but_binds_inside_them_stay(place: dict[str, Path]) -> None:
    """The covers come first and the binds after, whatever order the spec lists them in."""
    inner = place["secret"] / "worktree"
    inner.mkdir()
    lone_file = place["outside"] / "token.txt"
    lone_file.write_text("file secret\n")
    spec = SandboxSpec(rw_paths=(inner,), home=place["home"], network="host",
                       hidden_paths=(place["secret"], lone_file))
    script = (f"cat {place['secret']}/key.txt || echo key-hidden; "
              f"cat {lone_file}; echo file-read-done; "
              f"echo work > {inner}/work.txt && echo inner-ok")
    proc = run_inside(wrap(sh(script), dict(os.environ), spec, cwd=inner))
    assert "top secret" not in proc.stdout and "file secret" not in proc.stdout
    assert proc.stdout.split() == ["key-hidden", "file-read-done", "inner-ok"], proc.stderr
    assert (inner / "work.txt").read_text() == "work\n"
    assert (place["secret"] / "key.txt").read_text() == "top secret\n"  # covered, not touched


def test_home_is_the_private_one_and_the_real_home_is_covered(place: dict[str, Path]) -> None:
    real = real_homes()[0]
    assert any(real.iterdir()), f"the real home {real} is empty: nothing to prove"
    (place["home"] / "mine.txt").write_text("private\n")
    spec = SandboxSpec(rw_paths=(place["repo"],), home=place["home"], network="host")
    proc = run_inside(wrap(sh(f'echo "$HOME"; ls -A "$HOME"; echo --; ls -A {real}; echo end'),
                           dict(os.environ), spec, cwd=place["repo"]))
    assert proc.stdout.split() == [str(place["home"]), "mine.txt", "--", "end"], proc.stderr


def test_read_only_binds_the_project_read_only_but_home_and_tmp_stay_writable(
        place: dict[str, Path]) -> None:
    state = place["outside"] / "agent-state"
    state.mkdir()
    spec = SandboxSpec(rw_paths=(place["repo"],), home=place["home"], network="host", read_only=True)
    script = (f"echo x > {place['repo']}/plan.txt || echo repo-refused; "
              "echo h > $HOME/h.txt && echo home-ok; echo t > /tmp/t.txt && echo tmp-ok; "
              f"echo s > {state}/s.txt && echo state-ok")
    proc = run_inside(wrap(sh(script), dict(os.environ), spec, cwd=place["repo"], private=(state,)))
    assert proc.stdout.split() == ["repo-refused", "home-ok", "tmp-ok", "state-ok"], proc.stderr
    assert not (place["repo"] / "plan.txt").exists()
    assert (state / "s.txt").exists()


def test_environment_keeps_marks_and_drops_what_points_into_hidden_places(place: dict[str, Path]) -> None:
    spec = SandboxSpec(rw_paths=(place["repo"],), home=place["home"], network="host",
                       hidden_paths=(place["secret"],))
    env = {"PATH": f"{place['secret']}/bin:/usr/bin:/bin", "SECRET_DIR": str(place["secret"] / "key.txt"),
           "SHIPYARD_AGENT_OF": str(place["secret"]), "URL_LIKE": "http://127.0.0.1:1",
           "REPO_DIR": str(place["repo"])}
    wrapped = wrap(["/usr/bin/env"], env, spec)
    seen = dict(line.split("=", 1) for line in run_inside(wrapped).stdout.splitlines())
    assert wrapped.dropped == ("SECRET_DIR",)
    assert seen["PATH"] == "/usr/bin:/bin"
    assert "SECRET_DIR" not in seen
    assert seen["SHIPYARD_AGENT_OF"] == str(place["secret"])  # the reaper's mark is no path to use
    assert seen["URL_LIKE"] == "http://127.0.0.1:1" and seen["REPO_DIR"] == str(place["repo"])
    assert seen["HOME"] == str(place["home"]) and seen["CLAUDE_CODE_BUBBLEWRAP"] == "1"


@pytest.mark.parametrize("change, message", [
    ({"rw_paths": (Path("relative/repo"),)}, "is not absolute"),
    ({"ro_paths": (Path("/opt/a\0b"),)}, "contains a NUL byte"),
    ({"rw_paths": (Path("/nonexistent/shipyard-repo"),)}, "does not exist"),
    ({"network": "everything"}, "unknown sandbox network 'everything'"),
    ({"model_ports": (70000,)}, "is not a TCP port number"),
])
def test_bad_specs_are_refused_in_one_sentence(place: dict[str, Path], change: dict, message: str) -> None:
    fields = {"rw_paths": (place["repo"],), "home": place["home"], **change}
    with pytest.raises(ValueError, match=message) as caught:
        wrap(["/bin/true"], {}, SandboxSpec(**fields))
    assert "\n" not in str(caught.value)


def test_a_program_or_directory_the_sandbox_hides_is_refused(place: dict[str, Path]) -> None:
    tool = place["secret"] / "agent"
    tool.write_text("#!/bin/sh\necho hi\n")
    tool.chmod(0o755)
    (place["secret"] / "sub").mkdir()
    spec = SandboxSpec(rw_paths=(place["repo"],), home=place["home"], hidden_paths=(place["secret"],))
    with pytest.raises(ValueError, match="is hidden by the sandbox: add its folder"):
        wrap([str(tool)], {}, spec)
    with pytest.raises(ValueError, match="working directory .* is hidden"):
        wrap(["/bin/true"], {}, spec, cwd=place["secret"] / "sub")
    visible = SandboxSpec(rw_paths=(place["repo"],), home=place["home"], hidden_paths=(place["secret"],),
                          ro_paths=(place["secret"],), network="host")
    assert run_inside(wrap([str(tool)], {}, visible)).stdout == "hi\n"


def test_describe_says_what_the_sandbox_does(place: dict[str, Path]) -> None:
    spec = SandboxSpec(rw_paths=(place["repo"], place["home"]), ro_paths=(Path("/opt/node"),),
                       home=place["home"], model_ports=(8080,))
    assert spec.describe() == (f"sandboxed (bubblewrap): network: model only (port 8080); "
                               f"writes: {place['repo']}; extra paths: /opt/node")


# ------------------------------------------------------------------------ the network


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"model says hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def http_servers() -> Iterator[tuple[int, int]]:
    """Two loopback HTTP servers: (the model's port, some other service's port)."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Hello) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield servers[0].server_address[1], servers[1].server_address[1]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


FETCH = """
import sys, urllib.request
for port in sys.argv[1:]:
    try:
        print(port, urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode())
    except OSError as exc:
        print(port, "unreachable", type(exc).__name__)
"""


def test_network_model_reaches_only_the_model_port(place: dict[str, Path],
                                                   http_servers: tuple[int, int]) -> None:
    model, other = http_servers
    spec = SandboxSpec(rw_paths=(place["repo"],), home=place["home"], model_ports=(model,))
    wrapped = wrap([PYTHON, "-c", FETCH, str(model), str(other), str(model)], {}, spec)
    runtime = wrapped.runtime_dir
    assert runtime is not None and runtime.is_dir()
    proc = run_inside(wrapped)
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{model} model says hello", proc.stderr
    assert lines[1].startswith(f"{other} unreachable"), proc.stdout
    assert lines[2] == f"{model} model says hello"  # a second connection through the same bridge
    assert not runtime.exists()  # close() removed the sockets


def test_network_host_reaches_everything(place: dict[str, Path], http_servers: tuple[int, int]) -> None:
    """The contrast to the test above: the same fetch with the host network reaches the other port."""
    other = http_servers[1]
    spec = SandboxSpec(rw_paths=(place["repo"],), home=place["home"], network="host")
    proc = run_inside(wrap([PYTHON, "-c", FETCH, str(other)], {}, spec))
    assert proc.stdout.strip() == f"{other} model says hello", proc.stderr


def test_network_model_without_ports_has_no_network(place: dict[str, Path],
                                                    http_servers: tuple[int, int]) -> None:
    spec = SandboxSpec(rw_paths=(place["repo"],), home=place["home"])
    proc = run_inside(wrap([PYTHON, "-c", FETCH, str(http_servers[0])], {}, spec))
    assert proc.stdout.startswith(f"{http_servers[0]} unreachable"), proc.stdout + proc.stderr


def test_the_bridge_listener_ends_with_the_command(place: dict[str, Path],
                                                   http_servers: tuple[int, int]) -> None:
    """The inside socat is a child of the command: when the command ends, the PID namespace goes."""
    token = f"bridge-{time.monotonic_ns()}"
    spec = SandboxSpec(rw_paths=(place["repo"],), home=place["home"], model_ports=(http_servers[0],))
    wrapped = wrap(sh("echo started"), {RUN_TOKEN_ENV: token, "PATH": "/usr/bin:/bin"}, spec)
    proc = subprocess.Popen(wrapped.argv, env=wrapped.env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.communicate(timeout=30)[0] == "started\n"
    finally:
        wrapped.close()
    assert proc.returncode == 0
    assert marked(token) == []


def marked(token: str) -> list[psutil.Process]:
    """Live processes carrying the run mark ``token``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(RUN_TOKEN_ENV) == token and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


# ------------------------------------------------------------------------ probe, policy, settings


def test_probe_finds_a_working_bubblewrap_and_says_how_to_install_a_missing_one() -> None:
    here = probe()
    assert here.works and here.bwrap and here.socat, here
    assert probe() is here  # cached
    missing = probe("/nonexistent/bwrap")
    assert (missing.works, missing.reason, missing.fix) == (
        False, "/nonexistent/bwrap was not found", "apt-get install bubblewrap")


def test_policy_follows_the_setting_and_the_probe() -> None:
    works = probe()
    missing = SandboxProbe(None, False, "bubblewrap is not installed", "apt-get install bubblewrap", None)
    assert sandbox_mode("auto", works).sandbox
    assert not sandbox_mode("off", works).sandbox
    auto = sandbox_mode("auto", missing)
    assert (auto.sandbox, auto.refusal, auto.level) == (False, None, "warn")
    assert auto.warning == "runs are not sandboxed: bubblewrap is not installed (apt-get install bubblewrap)"
    required = sandbox_mode("required", missing)
    assert (required.sandbox, required.level) == (False, "error") and required.refusal
    no_socat = SandboxProbe(works.bwrap, True, None, "", None)
    assert sandbox_mode("required", no_socat, "model").refusal
    assert sandbox_mode("required", no_socat, "host").sandbox


def test_doctor_reports_the_sandbox(tmp_path: Path) -> None:
    check = sandbox_check(Settings(project_dir=tmp_path))
    assert (check.name, check.level) == ("sandbox", "ok")
    assert check.detail.startswith("runs are sandboxed with bubblewrap")
    off = sandbox_check(Settings(project_dir=tmp_path, sandbox="off"))
    assert (off.level, off.detail) == ("ok", "runs are not sandboxed (sandbox: off)")


def test_settings_come_from_the_environment_and_bad_ones_are_named(git_repo: Path) -> None:
    settings = load_settings(git_repo, environ={"SHIPYARD_SANDBOX": "Required",
                                                "SHIPYARD_SANDBOX_RO_PATHS": "/opt/node,/usr/local/go"})
    assert settings.sandbox == "required" and settings.sandbox_network == "model"
    assert settings.sandbox_ro_paths == [Path("/opt/node"), Path("/usr/local/go")]
    with pytest.raises(ConfigError, match="SHIPYARD_SANDBOX_NETWORK: .*choose model, allow, host"):
        load_settings(git_repo, environ={"SHIPYARD_SANDBOX_NETWORK": "anywhere"})
    with pytest.raises(ConfigError, match="SHIPYARD_SANDBOX_RW_PATHS: .*cache is not an absolute path"):
        load_settings(git_repo, environ={"SHIPYARD_SANDBOX_RW_PATHS": "cache"})


def test_runner_refuses_to_start_a_run_it_cannot_sandbox(place: dict[str, Path]) -> None:
    runner = ClaudeCodeRunner("/bin/true", base_env={"PATH": "/usr/bin:/bin"})
    spec = SandboxSpec(rw_paths=(place["repo"] / "gone",), home=place["home"])
    result = runner.run(RunRequest(prompt="hi", cwd=place["repo"], sandbox=spec))
    assert (result.ok, result.outcome) == (False, "not_started")
    assert result.reason == f"the writable sandbox path {place['repo'] / 'gone'} does not exist (or is not a folder)"


# ------------------------------------------------------------------------ Claude Code inside


def claude_spec(place: dict[str, Path], claude_env: dict[str, str], server: ModelServer) -> SandboxSpec:
    """The repository, the private home and the CLI's config folder writable; only the model reachable."""
    return SandboxSpec(rw_paths=(place["repo"], Path(claude_env["CLAUDE_CONFIG_DIR"])), home=place["home"],
                       ro_paths=(place["outside"],), hidden_paths=(place["secret"],),
                       model_ports=(server.port,))


@pytest.mark.slow
def test_claude_code_works_in_its_repo_and_nowhere_else(
        claude_runner: ClaudeCodeRunner, model_server: ModelServer, claude_env: dict[str, str],
        place: dict[str, Path], tmp_path: Path) -> None:
    outside = place["outside"] / "escaped.txt"
    model_server.script("sandboxed greeting", [
        tool_calls(write("hello.txt", "hi from the sandbox\n"),
                   bash(f"echo nope > {outside}; cat {place['secret']}/key.txt; echo bash-done")),
        text("Done."),
    ])
    events: list[AgentEvent] = []
    request = RunRequest(prompt="sandboxed greeting", cwd=place["repo"], permission_mode="bypassPermissions",
                         state_dir=tmp_path / "agents", timeout_s=120,
                         sandbox=claude_spec(place, claude_env, model_server))
    result = claude_runner.run(request, on_event=events.append)
    assert result.ok, (result.reason, result.stderr_tail)
    assert result.text == "Done."
    assert (place["repo"] / "hello.txt").read_text() == "hi from the sandbox\n"
    assert not outside.exists()
    bash_out = [e.data.get("content", "") for e in events if e.kind == "tool_result"][-1]
    assert "Read-only file system" in bash_out and "top secret" not in bash_out, bash_out
    assert "bash-done" in bash_out


@pytest.mark.slow
def test_cancel_of_a_sandboxed_run_leaves_no_process(
        claude_bin: str, claude_env: dict[str, str], model_server: ModelServer,
        place: dict[str, Path], tmp_path: Path) -> None:
    marker = f"sandboxed-sleep-{time.monotonic_ns()}"
    model_server.script("sleep in the sandbox", [bash(f"bash -c 'exec -a {marker} sleep 300'"),
                                                 text("never")])
    runner = ClaudeCodeRunner(claude_bin, base_env=hermetic_environ(claude_env), grace_s=3.0)
    cancel = threading.Event()
    tokens: list[str] = []

    def cancel_once_sleeping() -> None:
        wait_until(lambda: any((p.info["cmdline"] or [""])[0] == marker for p in with_cmdline(marker)),
                   60, "the sandboxed sleep to start")
        tokens.extend(p.environ().get(RUN_TOKEN_ENV, "") for p in with_cmdline(marker))
        cancel.set()

    watcher = threading.Thread(target=cancel_once_sleeping, daemon=True)
    watcher.start()
    request = RunRequest(prompt="sleep in the sandbox", cwd=place["repo"], permission_mode="bypassPermissions",
                         state_dir=tmp_path / "agents", timeout_s=120,
                         sandbox=claude_spec(place, claude_env, model_server))
    result = runner.run(request, cancel=cancel)
    watcher.join(timeout=5)
    assert result.outcome == "cancelled", result
    assert tokens and all(tokens), "the sleep never started inside, or lost the run mark"
    assert with_cmdline(marker) == []
    assert marked(tokens[0]) == []


def with_cmdline(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found
