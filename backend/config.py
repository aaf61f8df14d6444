"""Settings: one table drives the config file, the environment and the docs.

Values come from, in rising priority: the defaults below, ``shipyard.yaml`` in
the project root, ``SHIPYARD_<NAME>`` environment variables, and explicit
overrides (CLI flags). Every bad value fails loudly with the key's name and
where it came from, because a server that starts agents must never run on a
half-understood configuration.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator

from backend.auth import MIN_TOKEN_LENGTH
from backend.git.command import git_argv, git_env
from backend.models import check_agent
from backend.trust import command_settings, is_tracked

CONFIG_FILE = "shipyard.yaml"
ENV_PREFIX = "SHIPYARD_"
DEFAULT_PORT = 8765
#: SHIPYARD_* variables that are not settings: the CLI's conveniences (URL, TOKEN) and the
#: marks every agent process carries (see backend/reaper.py and the runner), so that a
#: ``shipyard`` command run by an agent still starts; and the test suite's hold points
#: (backend/holdpoints.py).
_NOT_SETTINGS = frozenset({"url", "token", "agent_of", "run", "run_token", "test_hold"})


class ConfigError(Exception):
    """A configuration problem, phrased for the person who has to fix it."""


class Settings(BaseModel):
    """Every setting Shipyard reads. Field descriptions are the user-facing help."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    project_dir: Path = Field(
        default_factory=Path.cwd,
        description="The git repository Shipyard manages (default: the current directory).",
    )
    state_dir: Path = Field(
        default=Path(".shipyard"),
        description="Where plans, tasks, logs and worktrees live, relative to the project "
        "(default .shipyard, git-ignored). '.' gives the seed's top-level plans/ and tasks/.",
    )
    project_name: str | None = Field(
        default=None, description="Name used in prompts and the UI (default: the directory name)."
    )
    host: str = Field(default="127.0.0.1", description="Address the server binds to.")
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535, description="Port the server binds to.")
    access_token: str | None = Field(
        default=None,
        description="Token every request must carry (at least 16 characters). Unset: a new random "
        "one is generated at each start, printed in the dashboard URL and stored for the CLI.",
    )
    max_request_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024,
        description="Largest request body the API reads (bytes); larger ones are refused with 413 "
        "while being read.",
    )
    server_url: str | None = Field(
        default=None,
        description="URL the CLI talks to (default: http://<host>:<port>).",
    )
    max_connections: int = Field(
        default=4096, ge=8,
        description="Most open client connections. At the cap a new connection replaces the oldest one "
        "still waiting to send its request (or a queued list request, answered 503); if there is "
        "none it is answered 503. Lowered at start-up so fd_reserve open files stay free.",
    )
    fd_reserve: int = Field(
        default=256, ge=16,
        description="Open files kept free for agent runs, logs and git however many clients connect.",
    )
    header_timeout_s: float = Field(
        default=10, gt=0,
        description="Close a connection that has not sent a complete request header within this time.",
    )
    list_concurrency: int = Field(
        default=4, ge=1, le=256,
        description="Most list, log and diff requests worked on at once; others wait their turn "
        "(and are dropped unworked if their client leaves). Health never waits.",
    )
    claude_bin: str | None = Field(
        default=None,
        description="Path to the claude executable (default: claude on PATH, then Shipyard's .tools/).",
    )
    dispatcher_autostart: bool = Field(
        default=True,
        description="Start picking up pending tasks when the server starts (false: start paused).",
    )
    max_parallel_workers: int = Field(
        default=4, ge=1, le=64, description="Most task agents running at once."
    )
    permission_mode: str = Field(
        default="bypassPermissions",
        description="Claude Code permission mode for task agents (bypassPermissions lets them "
        "edit and run commands unattended).",
    )
    agent: str = Field(
        default="claude",
        description="Agent CLI for tasks: claude, codex, gemini or opencode (a plan or task can "
        "choose another).",
    )
    orchestrator_agent: str | None = Field(
        default=None,
        description="Agent CLI that turns plans into tasks, in its read-only mode (default: agent).",
    )
    agent_model: str | None = Field(default=None, description="Model for Claude Code task agents.")
    agent_extra_args: list[str] = Field(
        default_factory=list, description="Extra CLI arguments for Claude Code task agents."
    )
    codex_bin: str | None = Field(
        default=None, description="Path to the codex executable (default: PATH, then .tools/)."
    )
    codex_model: str | None = Field(default=None, description="Model for Codex runs.")
    codex_extra_args: list[str] = Field(
        default_factory=list, description="Extra CLI arguments for every Codex run (codex exec)."
    )
    gemini_bin: str | None = Field(
        default=None, description="Path to the gemini executable (default: PATH, then .tools/)."
    )
    gemini_model: str | None = Field(default=None, description="Model for Gemini CLI runs.")
    gemini_extra_args: list[str] = Field(
        default_factory=list, description="Extra CLI arguments for every Gemini CLI run."
    )
    opencode_bin: str | None = Field(
        default=None, description="Path to the opencode executable (default: PATH, then .tools/)."
    )
    opencode_model: str | None = Field(
        default=None, description="Model for opencode runs, as provider/model."
    )
    opencode_extra_args: list[str] = Field(
        default_factory=list, description="Extra CLI arguments for every opencode run (opencode run)."
    )
    task_timeout_s: float = Field(default=1800, gt=0, description="Wall-clock limit per task run.")
    idle_timeout_s: float = Field(
        default=300, gt=0, description="Stop a run that prints nothing for this long."
    )
    orchestrator_model: str | None = Field(
        default=None, description="Model for a Claude Code orchestrator.")
    orchestrator_timeout_s: float = Field(
        default=1200, gt=0, description="Wall-clock limit for one orchestration."
    )
    orchestrator_extra_args: list[str] = Field(
        default_factory=list, description="Extra CLI arguments for a Claude Code orchestrator."
    )
    max_tasks: int = Field(default=20, ge=1, le=200, description="Most tasks one plan may produce.")
    review_tasks: bool = Field(
        default=False,
        description="Hold a plan's tasks for review (edit, Approve or Discard) before any runs; "
        "a plan or its Start request can override this.",
    )
    base_branch: str | None = Field(
        default=None,
        description="Branch tasks start from and plans land on (default: the checked-out branch).",
    )
    copy_files: list[str] = Field(
        default_factory=list,
        description="Globs of git-ignored files (such as .env) copied into every task worktree.",
    )
    setup_command: str | None = Field(
        default=None, description="Shell command run in each worktree before its agent starts."
    )
    test_command: str | None = Field(
        default=None,
        description="Shell command run on the integrated result; a failure rejects the task.",
    )
    test_timeout_s: float = Field(default=600, gt=0, description="Limit for test_command.")
    executor: str = Field(
        default="local",
        description="Where task agents run: local (this machine, worktrees under the state dir) or "
        "ray (one Ray actor per attempt on a cluster node that offers the shipyard resource; needs "
        "pip install 'shipyard[ray]', see docs/ray.md).",
    )
    ray_address: str = Field(
        default="auto",
        description="Ray cluster the ray executor joins: auto (a head started on this machine with "
        "ray start), host:port of the head's GCS, or ray://host:10001.",
    )
    ray_worker_url: str | None = Field(
        default=None,
        description="URL at which Ray workers reach this server for git and the model pass-through "
        "(default: the server's own address; the server must listen where workers can reach it).",
    )
    ray_worker_dir: str = Field(
        default="~/.cache/shipyard-worker",
        description="Folder on each Ray worker node for the project's git mirror and attempt worktrees "
        "(~ is the worker's home).",
    )
    ray_max_lost_attempts: int = Field(
        default=3, ge=1, le=20,
        description="How many times a task whose worker node died is requeued before it fails.",
    )
    repair_attempts: int = Field(
        default=1, ge=0, le=5,
        description="How often a task whose integration conflicts or fails test_command is handed "
        "back to its agent (session resumed, merge in progress) before it fails; 0: fail at once.",
    )
    verify_command: str | None = Field(
        default=None,
        description="Shell command run on a plan branch's tip once every task of the plan is "
        "integrated (default: test_command); Land waits for it to pass.",
    )
    verify_timeout_s: float = Field(default=1800, gt=0, description="Limit for verify_command.")
    fix_on_verify: bool | None = Field(
        default=None,
        description="When verification fails, start a fix-up task on the plan branch with the "
        "failing output, then verify again (default: on when there is a verify command).",
    )
    verify_fix_rounds: int = Field(
        default=1, ge=0, le=10, description="Most fix-up tasks one plan gets for failed verifications.",
    )
    keep_plan_branch: bool = Field(
        default=False, description="Keep a plan's branch (shipyard/plan-<id>) after it is landed.",
    )
    max_plan_cost_usd: float | None = Field(
        default=None, gt=0,
        description="Spending limit per plan in USD: orchestration, re-plans and every task attempt "
        "add up; at the limit the plan's waiting tasks do not start (\"budget reached\") and each "
        "Claude Code run gets the remaining amount as --max-budget-usd. A plan can set its own "
        "(max_cost_usd at creation, Start or PATCH). Unset: no limit.",
    )
    max_turns: int | None = Field(
        default=None, ge=1,
        description="Turn limit for each task agent (Claude Code --max-turns; a task can set its own). "
        "Codex, Gemini CLI and opencode have no such flag: the task log notes that it was not applied. "
        "Unset: no limit.",
    )

    sandbox: str = Field(
        default="auto",
        description="Run agents inside bubblewrap: auto (when bubblewrap works here, else unsandboxed "
        "with a warning), required (refuse runs without it) or off. See docs/security.md.",
    )
    sandbox_network: str = Field(
        default="model",
        description="Network of a sandboxed agent: model (only the model API is reachable: its loopback "
        "port through a bridge, its host name through an allow-list proxy; needs socat), allow (the model "
        "and sandbox_allow_hosts) or host (the machine's network).",
    )
    bwrap_bin: str | None = Field(
        default=None,
        description="The bubblewrap binary sandboxes use (default: bwrap on PATH).",
    )
    sandbox_allow_hosts: list[str] = Field(
        default_factory=list,
        description="Host names a sandboxed agent may reach with sandbox_network: allow (exact names, or "
        "*.example.org), through a proxy that logs every connection and refusal.",
    )
    sandbox_ro_paths: list[Path] = Field(
        default_factory=list,
        description="Extra absolute paths a sandboxed agent may read (toolchains, the agent CLI's "
        "folder when it lies in a hidden place).",
    )
    sandbox_rw_paths: list[Path] = Field(
        default_factory=list,
        description="Extra absolute folders a sandboxed agent may write (caches shared between runs).",
    )

    #: Commands that came from a shipyard.yaml tracked by git (see backend/trust.py).
    _committed_commands: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def committed_commands(self) -> dict[str, Any]:
        """Settings that run something and were set by a committed shipyard.yaml: they need trust."""
        return dict(self._committed_commands)

    @field_validator("agent", "orchestrator_agent")
    @classmethod
    def _known_agent(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return check_agent(value.strip().lower()) or None

    @field_validator("agent_extra_args", "orchestrator_extra_args", "copy_files", "codex_extra_args",
                     "gemini_extra_args", "opencode_extra_args", "sandbox_ro_paths", "sandbox_rw_paths",
                     "sandbox_allow_hosts",
                     mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        """Accept a JSON list or a comma-separated string, as environment variables can only be text."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("sandbox", "sandbox_network")
    @classmethod
    def _sandbox_choice(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip().lower()
        choices = ("auto", "required", "off") if info.field_name == "sandbox" else ("model", "allow", "host")
        if value not in choices:
            raise ValueError(f"unknown {info.field_name} {value!r}: choose {', '.join(choices)}")
        return value

    @field_validator("sandbox_ro_paths", "sandbox_rw_paths")
    @classmethod
    def _absolute_paths(cls, value: list[Path]) -> list[Path]:
        """Sandbox paths are bound as given: a relative one would depend on where Shipyard started."""
        relative = [str(p) for p in value if not p.expanduser().is_absolute()]
        if relative:
            raise ValueError(f"{relative[0]} is not an absolute path")
        return [p.expanduser() for p in value]

    @field_validator("executor")
    @classmethod
    def _known_executor(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("local", "ray"):
            raise ValueError(f"unknown executor {value!r}: choose local or ray")
        return value

    @field_validator("access_token")
    @classmethod
    def _long_enough(cls, value: str | None) -> str | None:
        """A short token can be guessed; refuse it rather than run behind it."""
        if value is not None and len(value) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"the access token must be at least {MIN_TOKEN_LENGTH} characters long (got "
                f"{len(value)}); leave it unset to have a random one generated, or make one with "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value

    @field_validator("state_dir", "project_dir", mode="before")
    @classmethod
    def _expand_user(cls, value: Any) -> Any:
        return Path(value).expanduser() if isinstance(value, str) else value

    # Derived values -------------------------------------------------------
    @property
    def planner_agent(self) -> str:
        """The agent that orchestrates when a plan does not choose one."""
        return self.orchestrator_agent or self.agent

    def agent_bin(self, agent: str) -> str | None:
        return getattr(self, f"{agent}_bin", None)

    def model_for(self, agent: str, orchestrator: bool = False) -> str | None:
        """The configured model for a run of ``agent``."""
        if agent == "claude":
            return self.orchestrator_model if orchestrator else self.agent_model
        return getattr(self, f"{agent}_model", None)

    def extra_args_for(self, agent: str, orchestrator: bool = False) -> list[str]:
        if agent == "claude":
            return list(self.orchestrator_extra_args if orchestrator else self.agent_extra_args)
        return list(getattr(self, f"{agent}_extra_args", []))

    @property
    def agents_in_use(self) -> list[str]:
        """The agents the settings name, each once (what ``shipyard doctor`` checks)."""
        return list(dict.fromkeys([self.agent, self.planner_agent]))

    @property
    def plan_verify_command(self) -> str | None:
        """The command that verifies a plan branch: ``verify_command``, else ``test_command``."""
        return self.verify_command or self.test_command or None

    @property
    def fixes_on_verify(self) -> bool:
        """Whether a failed verification starts a fix-up task (default: when one can fail)."""
        if self.fix_on_verify is not None:
            return self.fix_on_verify
        return self.plan_verify_command is not None

    @property
    def state_path(self) -> Path:
        """Absolute state directory."""
        path = self.state_dir if self.state_dir.is_absolute() else self.project_dir / self.state_dir
        return path.resolve()

    @property
    def name(self) -> str:
        return self.project_name or self.project_dir.resolve().name

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)

    @property
    def url(self) -> str:
        if self.server_url:
            return self.server_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def describe_settings() -> list[tuple[str, str, str]]:
    """(name, default, help) for every setting, for docs and ``shipyard doctor``."""
    rows = []
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default = "(cwd)" if name == "project_dir" else repr(field.default_factory())
        else:
            default = repr(field.default)
        rows.append((name, default, field.description or ""))
    return rows


def _git_toplevel(path: Path) -> Path | None:
    try:
        proc = subprocess.run(
            git_argv("rev-parse", "--show-toplevel"),
            cwd=path,
            env=git_env(),
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (FileNotFoundError, NotADirectoryError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return Path(proc.stdout.strip())


def _read_config_file(project_dir: Path) -> dict[str, Any]:
    path = project_dir / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping of setting names to values.")
    unknown = sorted(set(map(str, data)) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {', '.join(unknown)}. "
            f"Known settings: {', '.join(Settings.model_fields)}."
        )
    if "project_dir" in data:
        raise ConfigError(f"{path}: project_dir cannot be set from inside the project.")
    return data


def _read_environment(environ: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name in Settings.model_fields:
            values[name] = value
        elif name not in _NOT_SETTINGS:
            raise ConfigError(f"environment variable {key}: unknown setting '{name}'.")
    return values


def load_settings(
    project_dir: Path | str | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
    require_git: bool = True,
) -> Settings:
    """Build validated settings for a project.

    ``project_dir`` falls back to ``SHIPYARD_PROJECT_DIR`` then the current
    directory; when ``require_git`` is set it must be inside a git repository
    and is normalised to the repository's top level.
    """
    env = dict(os.environ if environ is None else environ)
    env_values = _read_environment(env)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    raw_dir = project_dir or overrides.pop("project_dir", None) or env_values.pop("project_dir", None)
    env_values.pop("project_dir", None)
    directory = Path(raw_dir).expanduser() if raw_dir else Path.cwd()
    if not directory.is_dir():
        raise ConfigError(f"project directory {directory} does not exist.")
    directory = directory.resolve()
    if require_git:
        top = _git_toplevel(directory)
        if top is None:
            raise ConfigError(
                f"{directory} is not a git repository. Shipyard runs each task on its own git "
                "branch, so it needs one: run 'git init' there (and make a first commit), or "
                "start Shipyard inside an existing repository."
            )
        directory = top.resolve()
    file_values = _read_config_file(directory)
    merged: dict[str, Any] = {**file_values, **env_values, **overrides, "project_dir": directory}
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, file_values, env_values)) from exc
    if not settings.is_loopback and not settings.access_token:
        raise ConfigError(
            f"host {settings.host} is not a loopback address: set access_token "
            "(SHIPYARD_ACCESS_TOKEN) first. Anyone who can reach this server can make it run "
            "commands on this machine."
        )
    if file_values and is_tracked(directory, CONFIG_FILE):
        settings._committed_commands = {
            name: getattr(settings, name) for name in command_settings(Settings.model_fields)
            if name in file_values and name not in env_values and name not in overrides
            and getattr(settings, name) not in (None, "", [])
        }
    return settings


def _explain(exc: ValidationError, file_values: dict, env_values: dict) -> str:
    """Turn pydantic's errors into lines that name the key and where it was set."""
    lines = []
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else "?"
        if key in env_values:
            source = f"{ENV_PREFIX}{key.upper()}"
        elif key in file_values:
            source = f"{CONFIG_FILE}: {key}"
        else:
            source = key
        shown = "" if key == "access_token" else f" (got {error.get('input')!r})"  # never echo a secret
        lines.append(f"{source}: {error['msg']}{shown}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def settings_table() -> str:
    """The markdown table of every setting (docs/configuration.md embeds it verbatim)."""
    lines = ["| setting | environment | default | meaning |", "|---|---|---|---|"]
    for name, default, help_text in describe_settings():
        shown = default.replace("PosixPath(", "").replace(")", "") if "PosixPath" in default else default
        lines.append(f"| `{name}` | `{ENV_PREFIX}{name.upper()}` | `{shown}` | {help_text} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m backend.config > table, to refresh the docs
    print(settings_table())
