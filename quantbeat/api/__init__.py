"""The HTTP API and dashboard (``quantbeat api``): see :mod:`quantbeat.api.app`."""

from quantbeat.api.app import API_PREFIX, create_app

__all__ = ["API_PREFIX", "create_app"]
