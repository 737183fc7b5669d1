"""The HTTP API served by uvicorn on a free port of 127.0.0.1, in a thread of the test's own
process (so monkeypatches and settings of the test apply to it)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from quantbeat.api import create_app
from quantbeat.infra.settings import get_settings
from tests.integration.helpers import eventually


@contextmanager
def served_api() -> Iterator[str]:
    """``create_app()`` with the current settings, served until the block ends; yields its
    base URL (``http://127.0.0.1:<port>``).

    Raises:
        AssertionError: uvicorn did not start within 20 s.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(get_settings(), address="127.0.0.1"),
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert eventually(lambda: server.started, bool, timeout=20), "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
