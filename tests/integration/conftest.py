"""The integration tests' fixtures live in tests/support/services.py (a plugin loaded by
tests/conftest.py, shared with tests/faults); these names are re-exported for the modules
that import them from here."""

from tests.support.services import ROOT, WorkerProcess, start_worker

__all__ = ["ROOT", "WorkerProcess", "start_worker"]
