"""Celery tasks: thin adapters that validate JSON-safe arguments, open a session, make one
domain call and return a small JSON summary. Logic lives in :mod:`quant`; persistence in
:mod:`db`."""
