"""``python -m quantbeat``: the CLI."""

from quantbeat.cli import entrypoint

entrypoint()
