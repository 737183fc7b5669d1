"""Slack incoming webhooks: ``POST <webhook URL>`` with ``{"text": part, "blocks": [a section
whose mrkdwn text is part], "unfurl_links": false}`` (``text`` is the notification's fallback;
a section's text holds up to 3000 characters, :data:`~quant.notify.rendered.PART_LIMITS`).

Answers (api.slack.com/messaging/webhooks): 200 ``ok``; 400 ``invalid_payload`` (and other
``invalid_*``), 403 ``action_prohibited``, 404 ``no_service``, 410 ``channel_is_archived`` →
permanent; 429 with ``Retry-After`` → transient with ``retry_after``, scope ``"target"`` (the
webhook); 5xx, timeouts and transport errors → transient. About one message per second per
webhook.

The webhook URL is the credential: it appears in no error, log record or limiter name; it
must be https (plain http only to a loopback host, for tests).
"""

from __future__ import annotations

from quant.notify.events import Envelope
from quant.notify.rendered import Rendered
from quantbeat.infra.notify.base import (
    HookSender,
    SendError,
    Sent,
    check_part,
    is_transient_status,
    parse_retry_after,
    post_json,
    scrub,
    short,
)


class SlackSender(HookSender):
    """Posts each part as one message to an incoming webhook."""

    channel = "slack"

    def send(self, part: str, *, index: int, rendered: Rendered, envelope: Envelope) -> Sent:
        """Post ``part``; Slack returns no message id (``Sent(None)``).

        Raises:
            SendError: see the module docstring.
        """
        check_part("slack", part, index=index, envelope=envelope)
        body = {
            "text": part,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": part}}],
            "unfurl_links": False,
            "unfurl_media": False,
        }
        response = post_json(
            self._client, self._parsed, what="slack", secrets=self._secrets, json_body=body
        )
        status = response.status_code
        if 200 <= status < 300:
            return Sent(provider_ref=None)
        text = short(response.text) or response.reason_phrase
        reason = scrub(f"slack {status}: {text}", self._secrets)
        transient = is_transient_status(status)
        raise SendError(
            reason,
            permanent=not transient,
            retry_after=parse_retry_after(response.headers.get("Retry-After"))
            if transient
            else None,
            status=status,
        )
