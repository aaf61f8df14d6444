"""Environment checks: can Shipyard run agents here, and if not, how to fix it.

Shared by ``shipyard doctor`` and the health endpoint (whose answer drives the
dashboard's banner), so the user reads the same advice in both places.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from backend.config import Settings
from backend.containment import sandbox_decision
from backend.git.command import git_argv, git_env
from backend.runners.claude_code import find_claude_bin
from backend.runners.codex import tmpdir_inside
from backend.runners.gemini import auth_type
from backend.runners.registry import DRIVERS
from backend.trust import TrustGate

CREDENTIAL_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
PROVIDER_VARS = ("CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX", "CLAUDE_CODE_USE_FOUNDRY")


@dataclass
class Check:
    name: str
    level: str  # "ok" | "warn" | "error"
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.level != "error"

    @property
    def blocks_start(self) -> bool:
        """Whether plans cannot start at all while this check fails (see :func:`start_problems`)."""
        return self.level == "error" and self.name != "credentials"

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok, "blocks_start": self.blocks_start}


_version_cache: dict[tuple[str, float], str | None] = {}
_cache_lock = threading.Lock()


def claude_version(binary: str) -> str | None:
    """``<agent> --version`` (cached per binary and mtime: the health endpoint asks often)."""
    try:
        key = (binary, Path(binary).stat().st_mtime)
    except OSError:
        return None
    with _cache_lock:
        if key in _version_cache:
            return _version_cache[key]
    try:
        proc = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
        words = proc.stdout.strip().split() if proc.returncode == 0 else []
        # "2.1.197 (Claude Code)", "codex-cli 0.169.0", "0.61.0", "1.18.33"
        version = next((w for w in words if w[:1].isdigit()), words[0] if words else None)
    except (OSError, subprocess.TimeoutExpired):
        version = None
    with _cache_lock:
        _version_cache[key] = version
    return version


def _credentials_found(environ: dict[str, str]) -> str | None:
    for var in CREDENTIAL_VARS + PROVIDER_VARS:
        if environ.get(var):
            return f"{var} is set"
    config_dir = Path(environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude")
    if (config_dir / ".credentials.json").is_file():
        return f"logged in ({config_dir / '.credentials.json'})"
    return None


_has_commits: set[Path] = set()


def has_commits(project: Path) -> bool:
    """True once the repository's HEAD names a commit (remembered: it never goes back)."""
    if project in _has_commits:
        return True
    try:
        proc = subprocess.run(git_argv("rev-parse", "--verify", "--quiet", "HEAD^{commit}"), cwd=project,
                              env=git_env(), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if proc.returncode == 0:
        _has_commits.add(project)
        return True
    return False


NO_COMMITS = ("the repository has no commits yet, so there is nothing for tasks to start from "
              "or merge into.")
NO_COMMITS_FIX = "make a first commit: git add -A && git commit -m 'Initial commit'"


def run_checks(settings: Settings, quick: bool = False, environ: dict[str, str] | None = None,
               trust: TrustGate | None = None) -> list[Check]:
    """Every check, in the order a person would fix them: each agent the settings use.

    An untrusted ``claude_bin`` (from a committed shipyard.yaml) is never run, not even
    with ``--version``: that alone would be running the repository's program.
    """
    env = dict(os.environ if environ is None else environ)
    checks = [Check("git repository", "ok", str(settings.project_dir))]
    if not quick:
        from backend.project import tracked_state_files  # git ls-files: too slow for every health call

        tracked = tracked_state_files(settings)
        if tracked:
            checks.append(Check("state", "error", f"the state directory holds files tracked by git "
                                f"({', '.join(tracked[:3])}); 'shipyard serve' refuses it.",
                                "stop tracking them (git rm -r --cached <state dir>) if they are yours, "
                                "or delete them if they came with a clone."))
    trust = trust or TrustGate(settings.project_dir, settings.committed_commands)
    if not trust.trusted:
        checks.append(Check("trust", "error", trust.explain() + ".", trust.FIX))
    if not has_commits(settings.project_dir):
        checks.append(Check("commits", "error", NO_COMMITS, NO_COMMITS_FIX))
    for agent in settings.agents_in_use:
        if agent == "claude":
            checks += _claude_checks(settings, env, trust)
        else:
            checks += _other_agent_checks(settings, agent, env, trust)
            if agent == "codex" and settings.planner_agent == "codex" and not quick \
                    and checks[-1].name == "codex credentials":  # installed and trusted
                checks.append(codex_sandbox_check(DRIVERS[agent](settings.agent_bin(agent)).find_bin()))
    checks.append(sandbox_check(settings))
    return checks


def sandbox_check(settings: Settings) -> Check:
    """What the ``sandbox`` setting does on this machine: sandboxed, unsandboxed (warning), or refused.

    Cheap after the first call (the probe is cached per process), so the health endpoint runs it too.
    """
    decision = sandbox_decision(settings)
    if decision.refusal:
        return Check("sandbox", "error", decision.refusal + ".",
                     "install bubblewrap and socat (apt-get install bubblewrap socat), or set sandbox: auto")
    if decision.warning:
        return Check("sandbox", "warn", decision.warning + ".", "apt-get install bubblewrap socat")
    return Check("sandbox", "ok", decision.summary)


def codex_sandbox_check(binary: str | None) -> Check:
    """Whether Codex's read-only sandbox (its planning mode, ``-s read-only``) really stops writes here.

    Codex enforces read-only with its own Linux sandbox (Landlock/seccomp), not
    by asking: where the kernel lacks it, a planning run could change the
    project. Measured by running ``codex sandbox -- sh -c 'echo > probe'``: on
    a working host that fails with "Read-only file system". (Codex, Gemini CLI
    and opencode have no root rule: measured, all three run their no-approval
    modes as root without IS_SANDBOX.)
    """
    if binary is None:
        return Check("codex sandbox", "error", "Codex was not found.")
    with tempfile.TemporaryDirectory(prefix="shipyard-doctor-") as tmp:
        home = Path(tmp) / "codex-home"
        home.mkdir()
        probe = Path(tmp) / "probe.txt"
        env = {**os.environ, "CODEX_HOME": str(home)}
        inside = tmpdir_inside(home, env)
        if inside is not None:
            inside.mkdir()
            env["TMPDIR"] = str(inside)
        try:
            proc = subprocess.run([binary, "sandbox", "--", "sh", "-c", f"echo probe > '{probe}'"],
                                  cwd=tmp, env=env, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Check("codex sandbox", "error", f"Codex's sandbox could not be tried: {exc}.",
                         "plan with another agent (orchestrator_agent) on this host.")
        if probe.exists():
            return Check("codex sandbox", "error",
                         "Codex's read-only sandbox does not stop writes on this host: a planning run "
                         "could change the project.",
                         "plan with another agent (orchestrator_agent), or run Shipyard where Landlock "
                         "is available.")
        said = (proc.stderr + proc.stdout).strip().splitlines()
        if any("read-only file system" in line.lower() for line in said):
            return Check("codex sandbox", "ok", "read-only planning is enforced (a write in "
                         "'codex sandbox' failed with \"Read-only file system\")")
        return Check("codex sandbox", "error",
                     f"Codex's sandbox did not run: {said[-1] if said else f'exit code {proc.returncode}'}.",
                     "plan with another agent (orchestrator_agent) on this host.")


def _other_agent_checks(settings: Settings, agent: str, env: dict[str, str],
                        trust: TrustGate) -> list[Check]:
    """Installed, version, credentials for Codex, Gemini CLI or opencode."""
    driver = DRIVERS[agent](settings.agent_bin(agent))
    binary = driver.find_bin()
    checks: list[Check] = []
    if binary is not None and not trust.trusted and f"{agent}_bin" in trust.commands:
        checks.append(Check(agent, "warn", f"{binary} is not checked: it comes from the committed "
                            "shipyard.yaml and is not trusted yet.", trust.FIX))
        return checks
    if binary is None:
        checks.append(Check(agent, "error", f"{driver.label} ({driver.executable}) was not found.",
                            f"{driver.install_hint} ({agent}_bin, SHIPYARD_{agent.upper()}_BIN)."))
        return checks
    version = claude_version(binary)
    if version is None:
        checks.append(Check(agent, "error", f"{binary} did not answer '{driver.executable} --version'.",
                            f"reinstall {driver.label} or point {agent}_bin at a working binary."))
    else:
        checks.append(Check(agent, "ok", f"{binary} (version {version})"))
    found, fix = _agent_credentials(agent, env)
    if found:
        checks.append(Check(f"{agent} credentials", "ok", found))
    else:
        checks.append(Check(f"{agent} credentials", "error", f"{driver.label} has no credentials.", fix))
    return checks


def _agent_credentials(agent: str, env: dict[str, str]) -> tuple[str | None, str]:
    """(what was found, or None; how to fix it) for an agent's credentials."""
    home = Path(env.get("HOME") or Path.home())
    if agent == "codex":
        if env.get("OPENAI_API_KEY"):
            where = env.get("OPENAI_BASE_URL") or "the OpenAI API"
            return f"OPENAI_API_KEY is set (for {where})", ""
        codex_home = env.get("CODEX_HOME")
        if codex_home and (Path(codex_home) / "auth.json").is_file():
            return f"logged in ({Path(codex_home) / 'auth.json'}, your own CODEX_HOME)", ""
        return None, ("set OPENAI_API_KEY (and OPENAI_BASE_URL for another OpenAI-compatible API) "
                      "for the server, or CODEX_HOME to a logged-in Codex home.")
    if agent == "gemini":
        selected = auth_type(env)
        if selected:
            return f"{'GEMINI_API_KEY' if selected == 'gemini-api-key' else 'Vertex AI'} is set", ""
        gemini_home = Path(env.get("GEMINI_CLI_HOME") or home)
        if env.get("GEMINI_CLI_HOME") and (gemini_home / ".gemini" / "oauth_creds.json").is_file():
            return f"logged in ({gemini_home / '.gemini' / 'oauth_creds.json'})", ""
        return None, "set GEMINI_API_KEY for the server (or GEMINI_CLI_HOME to a logged-in Gemini home)."
    # opencode: its own config or login, or a provider key it reads from the environment
    for var in ("OPENCODE_CONFIG", "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY",
                "OPENROUTER_API_KEY"):
        if env.get(var):
            return f"{var} is set", ""
    data = Path(env.get("XDG_DATA_HOME") or home / ".local" / "share") / "opencode" / "auth.json"
    if data.is_file():
        return f"logged in ({data})", ""
    return None, "run 'opencode auth login', or set OPENCODE_CONFIG or a provider's API key for the server."


def _claude_checks(settings: Settings, env: dict[str, str], trust: TrustGate) -> list[Check]:
    checks: list[Check] = []
    binary = find_claude_bin(settings.claude_bin)
    if binary is not None and not trust.trusted and "claude_bin" in trust.commands:
        checks.append(Check("claude", "warn", f"{binary} is not checked: it comes from the committed "
                            "shipyard.yaml and is not trusted yet.", trust.FIX))
    elif binary is None:
        checks.append(Check(
            "claude", "error", "Claude Code (claude) was not found.",
            "install it with 'npm install -g @anthropic-ai/claude-code', or set claude_bin "
            "(SHIPYARD_CLAUDE_BIN) to its path."))
    else:
        version = claude_version(binary)
        if version is None:
            checks.append(Check("claude", "error", f"{binary} did not answer 'claude --version'.",
                                "reinstall Claude Code or point claude_bin at a working binary."))
        else:
            checks.append(Check("claude", "ok", f"{binary} (version {version})"))
    found = _credentials_found(env)
    if found:
        checks.append(Check("credentials", "ok", found))
    else:
        checks.append(Check(
            "credentials", "error", "Claude Code has no credentials.",
            "run 'claude' once and log in, or set ANTHROPIC_API_KEY for the server."))
    if (hasattr(os, "geteuid") and os.geteuid() == 0
            and settings.permission_mode == "bypassPermissions" and env.get("IS_SANDBOX") != "1"):
        checks.append(Check(
            "root", "error",
            "running as root: Claude Code refuses --dangerously-skip-permissions as root.",
            "run Shipyard as a normal user, or set IS_SANDBOX=1 if this machine is a disposable "
            "sandbox (agents will run any command as root)."))
    return checks


def start_problems(settings: Settings) -> list[Check]:
    """Failed checks that make an orchestrator run impossible, so Start is refused with them.

    The credentials check is not among them: a login can live where it cannot be
    seen from here (a keychain, an apiKeyHelper), and a missing one is reported by
    the run itself with the fix.
    """
    return [c for c in run_checks(settings, quick=True) if c.blocks_start]
