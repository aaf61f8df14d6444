"""A full disk is named, answered with 503, and leaves the state as it was."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.errors import describe_exception, resource_problem


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs (needs root, as the test machine and CI run)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as handle:  # unbuffered: nothing left to flush on close
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_full_disk_answers_503_naming_it_and_changes_nothing(git_repo: Path, small_disk: Path,
                                                             start_server) -> None:
    state = small_disk / "state"
    server = start_server(git_repo, {"SHIPYARD_STATE_DIR": str(state),
                                     "SHIPYARD_DISPATCHER_AUTOSTART": "false"})
    filler = fill(small_disk)
    with server.client() as http:
        answer = http.post("/agent/plans", json={"title": "Too much", "content": "x" * 100_000})
        assert answer.status_code == 503, answer.text
        detail = answer.json()["detail"]
        assert "disk" in detail and "full" in detail and str(state) in detail
        assert "internal error" not in detail
        task = http.post("/agent/tasks", json={"title": "Also", "content": "y" * 100_000})
        assert task.status_code == 503
        assert http.get("/agent/plans").json()["draft"] == []
        assert all(v == [] for v in http.get("/agent/tasks").json().values())
        leftovers = [p for p in (state / "plans").rglob("*") if p.is_file()]
        leftovers += [p for p in (state / "tasks").rglob("*") if p.is_file()]
        assert leftovers == []
        filler.unlink()
        assert http.post("/agent/plans", json={"title": "Fits now", "content": "x"}).status_code == 201


def test_infrastructure_failures_are_named() -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "/srv/state/tasks/x.md")
    assert resource_problem(full) == "the disk holding /srv/state/tasks/x.md is full (no space left on device)"
    files = OSError(errno.EMFILE, "Too many open files")
    assert "too many open files" in describe_exception(files)
    wrapped = RuntimeError("while writing")
    wrapped.__cause__ = full
    assert "is full" in describe_exception(wrapped)
    assert describe_exception(KeyError("k")) == "unexpected KeyError: 'k'"
