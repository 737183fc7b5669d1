"""``python -m quantbeat``: the CLI."""

from quantbeat.cli.main import entrypoint

entrypoint()
