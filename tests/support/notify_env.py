"""Where the test session's notification fakes listen, chosen once per test process and put
in the environment every worker subprocess inherits (tests/conftest.py), so the session
worker delivers to the fakes the tests start (tests/support/fake_notify.py).

Ports are free when chosen (each xdist process chooses its own); a fake binds its port for
the duration of a test. The secrets are test values, referenced by name like a deployment's.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import tempfile
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TELEGRAM_PORT = _free_port()
SLACK_PORT = _free_port()
DISCORD_PORT = _free_port()
SMTP_PORT = _free_port()
TELEGRAM_TOKEN = "123456:TEST-notify-token-for-the-fakes"
TELEGRAM_CHAT = "-1001234567890"
SLACK_PATH = "/services/T0TEST/B0TEST/notifyhook"
DISCORD_PATH = "/api/webhooks/1000/notify-token"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"quantbeat-test-webhook-secret-32b").decode()
SMTP_USER, SMTP_PASSWORD = "quantbeat", "smtp-test-password"
#: The SMTP fake's certificate (and the CA the workers trust), made by the SMTP fixture.
CERT_DIR = Path(tempfile.gettempdir()) / f"quantbeat-notify-{os.getpid()}"

SECRETS = {
    "tg_test": TELEGRAM_TOKEN,
    "slack_test": f"http://127.0.0.1:{SLACK_PORT}{SLACK_PATH}",
    "discord_test": f"http://127.0.0.1:{DISCORD_PORT}{DISCORD_PATH}",
    "hook_test": WEBHOOK_SECRET,
}


def environment() -> dict[str, str]:
    """The ``QUANTBEAT_*`` settings of the notification fakes."""
    return {
        "QUANTBEAT_TELEGRAM_API_URL": f"http://127.0.0.1:{TELEGRAM_PORT}",
        "QUANTBEAT_NOTIFY_SECRETS": json.dumps(SECRETS),
        "QUANTBEAT_NOTIFY_TIMEOUT": "5",
        "QUANTBEAT_NOTIFY_BACKOFF_BASE": "0.2",
        "QUANTBEAT_NOTIFY_BACKOFF_MAX": "2",
        "QUANTBEAT_NOTIFY_MAX_ATTEMPTS": "6",
        "QUANTBEAT_SMTP_HOST": "127.0.0.1",
        "QUANTBEAT_SMTP_PORT": str(SMTP_PORT),
        "QUANTBEAT_SMTP_SECURITY": "starttls",
        "QUANTBEAT_SMTP_USER": SMTP_USER,
        "QUANTBEAT_SMTP_PASSWORD": SMTP_PASSWORD,
        "QUANTBEAT_SMTP_FROM": "quantbeat@example.test",
        "QUANTBEAT_SMTP_CA_FILE": str(CERT_DIR / "cert.pem"),
    }
