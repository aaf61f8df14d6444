"""The project Shipyard manages: its state directory and git hygiene.

The state directory lives inside the project by default, so it is added to
``.git/info/exclude`` (never to the user's ``.gitignore``): it must not show up
in ``git status`` or get committed by an agent, and we must not edit tracked
files of the user's to achieve that.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from backend.config import Settings

#: Entries excluded when the state directory is the project root itself.
ROOT_STATE_ENTRIES = ("plans/", "tasks/", "logs/", "worktrees/", "chats/", "server.lock")


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
        ["git", "rev-parse", "--git-path", "info/exclude"],
        cwd=project, capture_output=True, text=True, check=True, timeout=10,
    ).stdout.strip()
    path = Path(out)
    return path if path.is_absolute() else project / path


def prepare_state_dir(settings: Settings) -> Path:
    """Create the state directory and make sure git ignores it. Returns its path."""
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
