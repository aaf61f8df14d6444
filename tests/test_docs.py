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
