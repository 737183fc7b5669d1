"""Compile the bytecode of what ``quantbeat run`` imports, right after installing.

pip installs with ``--no-compile`` here (compiling all of site-packages costs about 19 s, most
of it for modules nothing imports); without this step the first ``make run`` in a fresh clone
compiled its imports itself, seconds of its time. Importing a module writes its ``.pyc``: this
imports every module of the project and the worker, transport and report modules the embedded
run loads lazily. Prints how many modules were imported and how long it took.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import time

#: Loaded lazily by the embedded run (the in-process worker, its transport, the report chart).
LAZY = (
    "celery.worker",
    "celery.worker.consumer",
    "celery.worker.strategy",
    "celery.concurrency.thread",
    "celery.backends.cache",
    "kombu.transport.memory",
    "matplotlib.pyplot",
)
PACKAGES = ("quant", "db", "workers", "tasks", "quantbeat")


def main() -> int:
    os.environ.setdefault("MPLBACKEND", "Agg")
    started = time.perf_counter()
    before = len(sys.modules)
    for name in PACKAGES:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, f"{name}."):
            if ".migrations" in info.name or info.name.endswith("__main__"):
                continue
            importlib.import_module(info.name)
    for name in LAZY:
        importlib.import_module(name)
    from workers.app import app

    app.loader.import_default_modules()
    print(
        f"bytecode: {len(sys.modules) - before} modules imported and compiled in "
        f"{time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
