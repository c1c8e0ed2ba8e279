"""The control plane: ingests CloudEvents, projects them into MongoDB, serves the UI."""

from .app import create_app

__all__ = ["create_app"]
