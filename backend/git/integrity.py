"""Noticing what an agent run changed in the repository's own git state.

An agent works in a task worktree, but a worktree shares the main repository's
``.git``: its config, hooks and refs. Anything planted there runs for the user,
not for Shipyard (Shipyard's own git calls disarm configured programs; see
:mod:`backend.git.command`): a ``core.fsmonitor`` runs on the user's next ``git
status``, a ``hooks/pre-commit`` on their next commit, and a moved ``main`` is
the user's branch rewritten. So a task run takes a :func:`snapshot` before the
agent starts and another after it stops, and :func:`changes` says in plain
sentences what differs.

Everything is read with plain file reads, plus ``git config --list`` and ``git
for-each-ref`` run with Shipyard's safe flags (neither runs anything configured).
A snapshot costs two git processes and a few file reads: about 10 ms with 1000
refs (measured in tests/test_git_safety.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from backend.git.command import DEFAULT_TIMEOUT, decode, git_argv, run, short_sha

#: Refs Shipyard itself moves during a task run; the default snapshot leaves them out.
SHIPYARD_REF_PREFIXES = ("refs/heads/shipyard/",)
#: Files under the common git directory whose content changes what git does for the user.
WATCHED_FILES = ("config", "config.worktree", "info/attributes", "objects/info/alternates")
#: How many config entries one sentence names before saying "and N more".
MAX_LISTED_ENTRIES = 5
MAX_VALUE_CHARS = 80

ConfigEntries = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class GitSnapshot:
    """What a repository's git state looked like at one moment (compare two with :func:`changes`).

    ``files``: watched file (relative to the common dir) → sha256 of its bytes, only those
    that exist. ``config``: the ``(key, value)`` entries of the repository's own config (its
    ``config`` file and what it includes), or None when git could not read it. ``hooks_dir``:
    where git looks for hooks (``core.hooksPath`` if set, else ``<common_dir>/hooks``).
    ``hooks``: hook name → ``"<sha256> x"`` (executable) or ``"<sha256> -"``; ``*.sample``
    files are left out, git never runs them. ``refs``: ref name → object id; ``HEAD`` →
    the content of ``<common_dir>/HEAD`` (``ref: refs/heads/main`` or an id); None when git
    could not list them (an unreadable config stops every git command).
    """

    common_dir: str
    files: tuple[tuple[str, str], ...]
    config: ConfigEntries | None
    hooks_path: str | None
    hooks_dir: str
    hooks: tuple[tuple[str, str], ...]
    refs: tuple[tuple[str, str], ...] | None


def snapshot(common_dir: Path, refs: list[str] | None = None) -> GitSnapshot:
    """Capture the repository's config, hooks, watched files and refs.

    ``refs``: full ref names (and ``HEAD``) to watch; by default every ref outside
    :data:`SHIPYARD_REF_PREFIXES` (the user's branches, tags, remote-tracking branches)
    plus ``HEAD``. A listed ref that does not exist is recorded as absent, so its
    creation shows up as a change.
    """
    common = Path(common_dir).absolute()
    config, hooks_path = _read_config(common)
    hooks_dir = _hooks_dir(common, hooks_path)
    return GitSnapshot(
        common_dir=str(common),
        files=tuple(sorted(_hash_files(common, WATCHED_FILES).items())),
        config=config,
        hooks_path=hooks_path,
        hooks_dir=str(hooks_dir),
        hooks=tuple(sorted(_read_hooks(hooks_dir).items())),
        refs=_read_refs(common, refs),
    )


def changes(before: GitSnapshot, after: GitSnapshot) -> list[str]:
    """Each difference between two snapshots as one short sentence; ``[]`` when nothing changed."""
    found: list[str] = []
    found += _config_changes(before, after)
    found += _file_changes(dict(before.files), dict(after.files))
    found += _hook_changes(before, after)
    if before.refs is not None and after.refs is not None:
        found += _ref_changes(dict(before.refs), dict(after.refs))
    elif before.refs != after.refs:
        found.append("the refs could not be compared (git could not list them)")
    return found


# --------------------------------------------------------------------------- reading


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def _hash_files(common: Path, names: Iterable[str]) -> dict[str, str]:
    hashes = {name: _sha256(common / name) for name in names}
    return {name: digest for name, digest in hashes.items() if digest is not None}


def _read_config(common: Path) -> tuple[ConfigEntries | None, str | None]:
    """The repository's own config entries (None if unreadable) and the effective core.hooksPath."""
    proc = run(git_argv("--git-dir", str(common), "config", "-z", "--show-scope", "--list"),
               cwd=common, timeout=DEFAULT_TIMEOUT)
    if proc.returncode != 0:
        return None, None
    entries: list[tuple[str, str]] = []
    hooks_path: str | None = None
    fields = proc.stdout.split(b"\0")
    for scope, entry in zip(fields[0::2], fields[1::2], strict=False):
        key, _, value = decode(entry).partition("\n")
        if decode(scope) == "command":
            continue  # Shipyard's own -c flags (core.hooksPath=/dev/null): not what the user runs
        if key == "core.hookspath":
            hooks_path = value
        if decode(scope) == "local":
            entries.append((key, value))
    return tuple(entries), hooks_path


def _hooks_dir(common: Path, hooks_path: str | None) -> Path:
    if not hooks_path:
        return common / "hooks"
    path = Path(os.path.expanduser(hooks_path))
    if path.is_absolute():
        return path
    # git resolves a relative hooksPath from where it runs: the top of the main checkout
    return (common.parent if common.name == ".git" else common) / path


def _read_hooks(hooks_dir: Path) -> dict[str, str]:
    hooks: dict[str, str] = {}
    try:
        names = os.listdir(hooks_dir)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return hooks
    for name in names:
        if name.endswith(".sample"):
            continue
        path = hooks_dir / name
        try:
            mode = path.stat().st_mode
        except OSError:
            continue
        if not stat.S_ISREG(mode):
            continue
        digest = _sha256(path)
        if digest is not None:
            hooks[name] = f"{digest} {'x' if mode & 0o111 else '-'}"
    return hooks


def _read_refs(common: Path, wanted: Sequence[str] | None) -> tuple[tuple[str, str], ...] | None:
    argv = git_argv("--git-dir", str(common), "for-each-ref", "--format=%(objectname) %(refname)")
    if wanted is not None:
        argv += [ref for ref in wanted if ref != "HEAD"]
    proc = run(argv, cwd=common, timeout=DEFAULT_TIMEOUT)
    if proc.returncode != 0:
        return None
    refs: dict[str, str] = {}
    for line in decode(proc.stdout).splitlines():
        sha, _, name = line.partition(" ")
        if wanted is None and name.startswith(SHIPYARD_REF_PREFIXES):
            continue
        refs[name] = sha
    if wanted is not None:
        refs = {name: sha for name, sha in refs.items() if name in wanted}
    if wanted is None or "HEAD" in wanted:
        with contextlib.suppress(OSError):
            refs["HEAD"] = (common / "HEAD").read_text(errors="replace").strip()
    return tuple(sorted(refs.items()))


# --------------------------------------------------------------------------- describing


def _shorten(value: str) -> str:
    value = value.replace("\n", " ")
    return value if len(value) <= MAX_VALUE_CHARS else value[: MAX_VALUE_CHARS - 1] + "…"


def _entry_list(entries: Sequence[tuple[str, str]]) -> str:
    shown = "; ".join(f"{key} = {_shorten(value)}" for key, value in entries[:MAX_LISTED_ENTRIES])
    if len(entries) > MAX_LISTED_ENTRIES:
        shown += f"; and {len(entries) - MAX_LISTED_ENTRIES} more"
    return shown


def _multiset_minus(a: Sequence[tuple[str, str]], b: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Entries of ``a`` not matched one for one in ``b`` (config keys may repeat)."""
    left = list(b)
    result = []
    for item in a:
        if item in left:
            left.remove(item)
        else:
            result.append(item)
    return result


def _config_changes(before: GitSnapshot, after: GitSnapshot) -> list[str]:
    old, new = before.config, after.config
    old_hash, new_hash = dict(before.files).get("config"), dict(after.files).get("config")
    found: list[str] = []
    if new is None and old is not None:
        found.append("the git config changed and git can no longer read it")
    elif old is not None and new is not None:
        added, removed = _multiset_minus(new, old), _multiset_minus(old, new)
        parts = ([f"added {_entry_list(added)}"] if added else []) + (
            [f"removed {_entry_list(removed)}"] if removed else [])
        if parts:
            found.append(f"the git config changed ({'; '.join(parts)})")
        elif old_hash and new_hash and old_hash != new_hash:
            found.append("the git config file changed (comments or layout only)")
    elif old_hash and new_hash and old_hash != new_hash:
        found.append("the git config changed (git cannot read it)")
    if before.hooks_path != after.hooks_path and not any(
        key == "core.hookspath" for key, _ in (*(old or ()), *(new or ()))
    ):
        found.append(f"core.hooksPath changed from {before.hooks_path or '(unset)'} "
                     f"to {after.hooks_path or '(unset)'}")
    return found


def _file_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    found = []
    for name in sorted(set(old) | set(new)):
        if name == "config" and name in old and name in new:
            continue  # a change of content is described entry by entry above
        label = f".git/{name}"
        if name not in old:
            found.append(f"the file {label} was added")
        elif name not in new:
            found.append(f"the file {label} was deleted")
        elif old[name] != new[name]:
            found.append(f"the file {label} changed")
    return found


def _hook_changes(before: GitSnapshot, after: GitSnapshot) -> list[str]:
    old, new = dict(before.hooks), dict(after.hooks)
    where = "" if after.hooks_dir == str(Path(after.common_dir) / "hooks") else f" (in {after.hooks_dir})"
    if before.hooks_dir != after.hooks_dir:
        return [f"hook {name} now runs from {after.hooks_dir}" for name in sorted(new)]
    found = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            found.append(f"hook {name} was added{where}")
        elif name not in new:
            found.append(f"hook {name} was deleted{where}")
        elif old[name].split()[0] != new[name].split()[0]:
            found.append(f"hook {name} was changed{where}")
        elif old[name] != new[name]:
            state = "executable" if new[name].endswith("x") else "not executable"
            found.append(f"hook {name} was made {state}{where}")
    return found


def _ref_label(name: str) -> str:
    for prefix, kind in (("refs/heads/", "branch"), ("refs/tags/", "tag"),
                         ("refs/remotes/", "remote-tracking branch")):
        if name.startswith(prefix):
            return f"{kind} {name.removeprefix(prefix)}"
    return f"ref {name}"


def _head_text(value: str) -> str:
    if value.startswith("ref: "):
        return f"branch {value.removeprefix('ref: ').removeprefix('refs/heads/')}"
    return f"commit {short_sha(value)}"


def _ref_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    found = []
    if old.get("HEAD") != new.get("HEAD") and "HEAD" in old and "HEAD" in new:
        found.append(f"HEAD moved from {_head_text(old['HEAD'])} to {_head_text(new['HEAD'])}")
    for name in sorted((set(old) | set(new)) - {"HEAD"}):
        label = _ref_label(name)
        if name not in old:
            found.append(f"{label} was created at {short_sha(new[name])}")
        elif name not in new:
            found.append(f"{label} was deleted")
        elif old[name] != new[name]:
            found.append(f"{label} moved from {short_sha(old[name])} to {short_sha(new[name])}")
    return found
