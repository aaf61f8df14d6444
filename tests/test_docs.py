"""The docs stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path

from backend.config import settings_table

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_doc_has_the_generated_table() -> None:
    assert settings_table() in (ROOT / "docs" / "configuration.md").read_text()


def test_readme_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), f"README links to missing {target}"


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "scripts/test" in ci and "cd ~/shipyard && scripts/test" in readme


def _module_rows() -> list[tuple[list[str], str]]:
    """The rows of docs/architecture.md's module table: the paths in the first cell, the row."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text.split("## Modules", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in table.splitlines():
        cells = line.split("|")
        if len(cells) > 2 and "`backend/" in cells[1]:
            rows.append((re.findall(r"`(backend/[^`]+)`", cells[1]), line))
    return rows


def test_architecture_module_table_names_every_module_and_only_real_ones() -> None:
    rows = _module_rows()
    named = [path for paths, _ in rows for path in paths]
    missing_files = [path for path in named if not (ROOT / path).exists()]
    assert missing_files == [], "docs/architecture.md names modules that do not exist"
    uncovered = []
    for path in sorted((ROOT / "backend").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if "/web/" in rel or path.name == "__init__.py":
            continue
        if rel in named:
            continue
        package = rel.rsplit("/", 1)[0] + "/"
        stem = path.stem
        if any(package in paths and (f"`{stem}`" in row or f"`{stem}.py`" in row) for paths, row in rows):
            continue
        uncovered.append(rel)
    assert uncovered == [], "docs/architecture.md's module table leaves these out"
