"""The project Shipyard manages: its state directory and git hygiene.

The state directory lives inside the project by default, so it is added to
``.git/info/exclude`` (never to the user's ``.gitignore``): it must not show up
in ``git status`` or get committed by an agent, and we must not edit tracked
files of the user's to achieve that.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from backend.config import ConfigError, Settings
from backend.git.command import git_argv, git_env

#: Entries excluded when the state directory is the project root itself.
ROOT_STATE_ENTRIES = ("plans/", "tasks/", "logs/", "worktrees/", "chats/", "server.lock", "server.json")


def exclude_patterns(settings: Settings) -> list[str]:
    """Patterns (relative to the repository root) that hide the state directory from git."""
    state = settings.state_path
    project = settings.project_dir.resolve()
    if state == project:
        return [f"/{entry}" for entry in ROOT_STATE_ENTRIES]
    try:
        relative = state.relative_to(project)
    except ValueError:
        return []  # outside the repository: nothing to hide
    return [f"/{relative.as_posix()}/"]


def git_exclude_file(project: Path) -> Path:
    out = subprocess.run(
        git_argv("rev-parse", "--git-path", "info/exclude"),
        cwd=project, env=git_env(), capture_output=True, text=True, check=True, timeout=10,
    ).stdout.strip()
    path = Path(out)
    return path if path.is_absolute() else project / path


def tracked_state_files(settings: Settings) -> list[str]:
    """Files of the state directory that git tracks: they arrived with the repository."""
    patterns = exclude_patterns(settings)
    if not patterns:
        return []
    specs = [f":(top){p.strip('/')}" for p in patterns]
    proc = subprocess.run(git_argv("ls-files", "-z", "--", *specs), cwd=settings.project_dir,
                          env=git_env(), capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        return []
    return [name for name in proc.stdout.split("\0") if name]


def refuse_tracked_state(settings: Settings) -> None:
    """Stop when the state directory holds committed files.

    Plans and tasks are files, so a repository could ship ``.shipyard/tasks/pending/x.md``
    and have an agent run on it as soon as anyone starts Shipyard in a clone. git never
    runs what arrives with a clone; neither do we.
    """
    tracked = tracked_state_files(settings)
    if not tracked:
        return
    relative = exclude_patterns(settings)[0].strip("/") if settings.state_path != settings.project_dir.resolve() \
        else " ".join(p.strip("/") for p in exclude_patterns(settings))
    shown = ", ".join(tracked[:3]) + (f" and {len(tracked) - 3} more" if len(tracked) > 3 else "")
    raise ConfigError(
        f"the state directory {settings.state_path} holds files tracked by git ({shown}). Shipyard "
        "will not use it: plans and tasks that arrive with a repository would run agents and "
        "commands on this machine without you asking. If these files are yours, stop tracking them "
        f"(git rm -r --cached {relative} && git commit -m 'Untrack Shipyard state'); if they came "
        f"with a clone, delete them (git rm -r {relative} && git commit), then start again."
    )


def prepare_state_dir(settings: Settings) -> Path:
    """Refuse a committed state directory, create it, and make sure git ignores it. Returns its path."""
    refuse_tracked_state(settings)
    state = settings.state_path
    state.mkdir(parents=True, exist_ok=True)
    patterns = exclude_patterns(settings)
    if patterns:
        exclude = git_exclude_file(settings.project_dir)
        exclude.parent.mkdir(parents=True, exist_ok=True)
        existing = exclude.read_text(encoding="utf-8").splitlines() if exclude.exists() else []
        missing = [p for p in patterns if p not in existing]
        if missing:
            with open(exclude, "a", encoding="utf-8") as handle:
                if existing and existing[-1].strip():
                    handle.write("\n")
                handle.write("# Shipyard state (plans, tasks, logs, worktrees)\n")
                handle.write("\n".join(missing) + "\n")
    return state
