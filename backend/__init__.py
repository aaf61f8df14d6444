"""Shipyard: turn markdown plans into merged work with Claude Code.

A plan is decomposed by an orchestrator run of Claude Code into independent
tasks; the dispatcher runs each task in its own git worktree and integrates
the results. See ``docs/`` for the architecture.
"""

__version__ = "0.1.0"
