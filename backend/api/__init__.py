"""The HTTP API under ``/agent`` (and ``/worker`` for Ray workers) plus the dashboard at ``/``.

One router module per noun (plans, tasks, review, dispatcher, events, health, trust, chats,
worker); :func:`create_app` builds the app from them.
"""

from backend.api.app import create_app

__all__ = ["create_app"]
