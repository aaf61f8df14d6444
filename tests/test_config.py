"""Settings: defaults, file, environment, and errors that name the bad key."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from backend.config import ConfigError, load_settings
from backend.project import prepare_state_dir


def test_defaults(git_repo: Path) -> None:
    settings = load_settings(git_repo, environ={})
    assert settings.project_dir == git_repo.resolve()
    assert settings.state_path == git_repo.resolve() / ".shipyard"
    assert settings.name == "project"
    assert (settings.host, settings.port) == ("127.0.0.1", 8765)
    assert settings.url == "http://127.0.0.1:8765"


def test_file_then_env_then_overrides(git_repo: Path) -> None:
    (git_repo / "shipyard.yaml").write_text("port: 9000\nproject_name: Demo\nmax_tasks: 5\n")
    settings = load_settings(git_repo, environ={"SHIPYARD_PORT": "9100"})
    assert (settings.port, settings.name, settings.max_tasks) == (9100, "Demo", 5)
    settings = load_settings(git_repo, {"port": 9200}, environ={"SHIPYARD_PORT": "9100"})
    assert settings.port == 9200


def test_list_settings_from_env(git_repo: Path) -> None:
    settings = load_settings(git_repo, environ={"SHIPYARD_COPY_FILES": ".env, config/*.local"})
    assert settings.copy_files == [".env", "config/*.local"]


def test_bad_values_name_the_key_and_source(git_repo: Path) -> None:
    with pytest.raises(ConfigError, match="SHIPYARD_PORT"):
        load_settings(git_repo, environ={"SHIPYARD_PORT": "eighty"})
    (git_repo / "shipyard.yaml").write_text("max_parallel_workers: 0\n")
    with pytest.raises(ConfigError, match="shipyard.yaml: max_parallel_workers"):
        load_settings(git_repo, environ={})
    (git_repo / "shipyard.yaml").write_text("prot: 1\n")
    with pytest.raises(ConfigError, match="unknown setting.*prot"):
        load_settings(git_repo, environ={})
    (git_repo / "shipyard.yaml").write_text("port: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(git_repo, environ={})
    with pytest.raises(ConfigError, match="SHIPYARD_COLOUR"):
        load_settings(git_repo, environ={"SHIPYARD_COLOUR": "blue"})


def test_not_a_git_repository_is_said_plainly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a git repository.*git init"):
        load_settings(tmp_path, environ={})


def test_public_bind_requires_a_token(git_repo: Path) -> None:
    with pytest.raises(ConfigError, match="access_token"):
        load_settings(git_repo, {"host": "0.0.0.0"}, environ={})
    settings = load_settings(git_repo, {"host": "0.0.0.0", "access_token": "s3cret-0123456789"}, environ={})
    assert not settings.is_loopback


def test_short_access_token_is_refused_without_echoing_it(git_repo: Path) -> None:
    with pytest.raises(ConfigError, match="SHIPYARD_ACCESS_TOKEN: .*at least 16 characters") as caught:
        load_settings(git_repo, environ={"SHIPYARD_ACCESS_TOKEN": "hunter2hunter2"})
    assert "hunter2" not in str(caught.value)
    assert load_settings(git_repo, environ={"SHIPYARD_ACCESS_TOKEN": "x" * 16}).access_token == "x" * 16


def test_state_dir_is_hidden_from_git_status(git_repo: Path) -> None:
    settings = load_settings(git_repo, environ={})
    prepare_state_dir(settings)
    prepare_state_dir(settings)  # idempotent
    (settings.state_path / "plans").mkdir()
    (settings.state_path / "plans" / "x.plan.json").write_text("{}")
    status = subprocess.run(["git", "status", "--porcelain"], cwd=git_repo, capture_output=True,
                            text=True, check=True).stdout
    assert status == ""
    exclude = (git_repo / ".git" / "info" / "exclude").read_text()
    assert exclude.count("/.shipyard/") == 1


def test_state_dir_dot_gives_top_level_plans_and_tasks(git_repo: Path) -> None:
    settings = load_settings(git_repo, {"state_dir": "."}, environ={})
    assert settings.state_path == git_repo.resolve()
    prepare_state_dir(settings)
    from backend.store import Store

    Store(settings.state_path)
    assert (git_repo / "plans" / "draft").is_dir() and (git_repo / "tasks" / "pending").is_dir()
    status = subprocess.run(["git", "status", "--porcelain"], cwd=git_repo, capture_output=True,
                            text=True, check=True).stdout
    assert status == ""
