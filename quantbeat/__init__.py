"""quantbeat's application shell: settings, logging, masking, the CLI and the embedded runner.

Domain logic lives in :mod:`quant`; persistence in :mod:`db`; the Celery app in :mod:`workers`;
task adapters in :mod:`tasks`.
"""

__version__ = "0.1.0"
