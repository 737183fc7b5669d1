"""Discord webhooks: ``POST <webhook URL>?wait=true`` with ``{"content": part,
"allowed_mentions": {"parse": []}}`` (content ≤ 2000 characters; no ``@everyone`` or role
pings whatever the text says).

Answers (discord.com/developers/docs/resources/webhook, …/topics/rate-limits): 200 with the
message object (its ``id`` becomes :attr:`Sent.provider_ref`); 429 with JSON
``{"retry_after": seconds, "global": bool}`` → transient with ``retry_after`` and scope
``"global"`` when ``global`` is true (or ``X-RateLimit-Scope: global``), else ``"target"``;
400 (invalid form body), 401/403 (invalid token, missing access), 404 (unknown webhook) and
other 4xx but 408/409/425 → permanent with Discord's ``message``; 5xx, timeouts and transport
errors → transient.

The webhook URL is the credential: it appears in no error, log record or limiter name; it
must be https (plain http only to a loopback host, for tests). No embed is sent: the subject
is already the first line of the first part.
"""

from __future__ import annotations

from quant.notify.events import Envelope
from quant.notify.rendered import Rendered
from quantbeat.infra.notify.base import (
    HookSender,
    Scope,
    SendError,
    Sent,
    check_part,
    is_transient_status,
    json_object,
    parse_retry_after,
    post_json,
    scrub,
    short,
)


class DiscordSender(HookSender):
    """Posts each part as one message to a Discord webhook."""

    channel = "discord"

    def send(self, part: str, *, index: int, rendered: Rendered, envelope: Envelope) -> Sent:
        """Post ``part``; returns the message's id.

        Raises:
            SendError: see the module docstring.
        """
        check_part("discord", part, index=index, envelope=envelope)
        body = {"content": part, "allowed_mentions": {"parse": []}}
        response = post_json(
            self._client,
            self._parsed,
            what="discord",
            secrets=self._secrets,
            json_body=body,
            params={"wait": "true"},
        )
        status = response.status_code
        data = json_object(response)
        if 200 <= status < 300:
            message_id = data.get("id")
            return Sent(provider_ref=None if message_id is None else str(message_id))
        message = data.get("message")
        if not isinstance(message, str) or not message:
            message = short(response.text) or response.reason_phrase
        code = data.get("code")
        detail = f"{message} (code {code})" if isinstance(code, int) and code else message
        reason = scrub(f"discord {status}: {short(detail)}", self._secrets)
        transient = is_transient_status(status)
        retry_after = data.get("retry_after")
        seconds = (
            float(retry_after)
            if isinstance(retry_after, int | float) and not isinstance(retry_after, bool)
            else parse_retry_after(response.headers.get("Retry-After"))
        )
        scope: Scope = (
            "global"
            if data.get("global") is True
            or response.headers.get("X-RateLimit-Scope", "").lower() == "global"
            else "target"
        )
        raise SendError(
            reason,
            permanent=not transient,
            retry_after=seconds if transient else None,
            status=status,
            scope=scope if status == 429 else "target",
        )
