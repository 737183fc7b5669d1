"""Generic webhooks, signed as Standard Webhooks specifies (standardwebhooks.com; PyPI
``standardwebhooks``).

One delivery is one POST of the whole event, so only part 0 sends; :meth:`WebhookSender.send`
for a later index is a no-op returning ``Sent(None)``. The body (compact JSON, UTF-8)::

    {"id": envelope.id, "type": …, "version": …, "timestamp": at (ISO 8601),
     "trade_date": ISO date or null, "simulated": bool,
     "data": the payload (its JSON form), "text": rendered.plain}

Headers: ``webhook-id`` = the event id (the same on every retry, so receivers de-duplicate),
``webhook-timestamp`` = this attempt's time (integer seconds since the epoch),
``webhook-signature`` = ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` under the
target's secret (``whsec_<base64>``), ``content-type: application/json``.

Answers: 2xx → :class:`Sent` with the ``webhook-id``; 429, 408/409/425, 5xx, timeouts and
transport errors → transient (``Retry-After`` honoured); 400/401/403/404/410, other 4xx and
unfollowed 3xx redirects → permanent. The signing secret appears in no error; the URL may
carry a token, so an error after sending names only its host (a malformed URL is shown
masked, :func:`quantbeat.infra.masking.mask_text`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Any

import httpx
from pydantic import BaseModel
from standardwebhooks import Webhook

from quant.notify.events import Envelope
from quant.notify.rendered import Rendered
from quantbeat.infra.notify.base import (
    NotifySettings,
    SendError,
    Sent,
    check_url,
    http_client,
    is_transient_status,
    parse_retry_after,
    post_json,
    scrub,
    short,
    url_secrets,
)

#: Requests per second per receiving host.
HOST_RATE = 10.0
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


def signing_key(secret: str | None) -> Webhook:
    """The Standard Webhooks signer for ``whsec_<base64>``.

    Raises:
        SendError: permanent, the secret is missing, lacks the prefix, is not base64 or is
            empty (the secret is never shown).
    """
    if not secret or not secret.startswith(SECRET_PREFIX):
        raise SendError(
            f"webhook signing secret is missing or malformed (expected {SECRET_PREFIX}<base64>)",
            permanent=True,
        )
    raw = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise SendError(
            f"webhook signing secret is not valid base64 after {SECRET_PREFIX}", permanent=True
        )
    return Webhook(key)


def body_of(rendered: Rendered, envelope: Envelope) -> bytes:
    """The JSON body of a delivery (see the module docstring)."""
    payload = envelope.payload
    data: Any = (
        payload.model_dump(mode="json", by_alias=False)
        if isinstance(payload, BaseModel)
        else payload
    )
    document = {
        "id": envelope.id,
        "type": envelope.type,
        "version": envelope.version,
        "timestamp": envelope.at.isoformat(),
        "trade_date": envelope.trade_date.isoformat() if envelope.trade_date else None,
        "simulated": envelope.simulated,
        "data": data,
        "text": rendered.plain,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


class WebhookSender:
    """POSTs each event once, signed, to the target URL."""

    def __init__(
        self,
        *,
        url: str,
        secret: str | None,
        settings: NotifySettings,
        client: httpx.Client | None = None,
    ) -> None:
        """Raises:
        SendError: permanent, a URL that is not http(s) with a host (scheme and host named)
            or a malformed signing secret (not shown)."""
        self._parsed = check_url(url, what="webhook URL", https_only=False, secret=False)
        self._signer = signing_key(secret)
        self._secrets = [*url_secrets(url), secret, (secret or "")[len(SECRET_PREFIX) :]]
        self._client = client if client is not None else http_client(settings.timeout)

    @property
    def host(self) -> str:
        return self._parsed.host

    def rate_keys(self) -> list[tuple[str, float]]:
        """One limiter per receiving host, 10 requests/s."""
        return [(f"webhook:{self._parsed.host}", HOST_RATE)]

    def headers(self, msg_id: str, body: bytes, at: dt.datetime) -> dict[str, str]:
        """The Standard Webhooks headers for ``body`` sent at ``at``."""
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": self._signer.sign(msg_id, at, body),
            "content-type": "application/json",
        }

    def send(self, part: str, *, index: int, rendered: Rendered, envelope: Envelope) -> Sent:
        """For ``index == 0``, POST the event (``part`` is not used: the body carries
        ``rendered.plain``) and return the ``webhook-id``; for a later index do nothing and
        return ``Sent(None)``.

        Raises:
            SendError: see the module docstring.
        """
        if index > 0:
            return Sent(provider_ref=None)
        body = body_of(rendered, envelope)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        response = post_json(
            self._client,
            self._parsed,
            what="webhook",
            secrets=self._secrets,
            content=body,
            headers=self.headers(envelope.id, body, now),
        )
        status = response.status_code
        if 200 <= status < 300:
            return Sent(provider_ref=envelope.id)
        text = short(response.text) or response.reason_phrase
        reason = scrub(f"webhook {status} from {self._parsed.host}: {text}", self._secrets)
        transient = is_transient_status(status)
        raise SendError(
            reason,
            permanent=not transient,
            retry_after=parse_retry_after(response.headers.get("Retry-After"))
            if transient
            else None,
            status=status,
        )
