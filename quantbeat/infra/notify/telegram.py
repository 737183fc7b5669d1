"""Telegram: ``POST {api}/bot{token}/sendMessage`` with
``{chat_id, text, parse_mode: "HTML", disable_web_page_preview: true}``.

Answers (core.telegram.org/bots/api): ``{"ok": true, "result": {"message_id": …}}``, or
``{"ok": false, "error_code": N, "description": "…", "parameters": {"retry_after": s}}``.

* 200 ok → :class:`Sent` with the ``message_id``;
* 429 → transient with ``parameters.retry_after`` (else the ``Retry-After`` header), scope
  ``"target"``: Telegram's answer does not say whether the chat's or the bot's limit was hit,
  and cooling the chat down is enough for the per-chat limits the pacing already respects;
* 400 (chat not found, can't parse entities, message too long — a group upgraded to a
  supergroup names its new chat id), 401 (bad token), 403 (bot blocked, kicked), 404 and other
  4xx but 408/409/425 → permanent;
* 5xx, timeouts and transport errors → transient.

The token is in the request path: no error text holds the URL (see :mod:`.base`).
Rates (core.telegram.org/bots/faq): about 30 messages/s per bot, 1/s per private chat, 20/min
per group or channel (chat ids starting with ``-``, and ``@channel`` usernames).
"""

from __future__ import annotations

import re

import httpx

from quant.notify.events import Envelope
from quant.notify.rendered import Rendered
from quantbeat.infra.notify.base import (
    NotifySettings,
    SendError,
    Sent,
    check_part,
    check_url,
    http_client,
    is_transient_status,
    json_object,
    parse_retry_after,
    post_json,
    scrub,
    secret_hash,
    short,
)

#: Messages per second Telegram allows one bot, one private chat, one group or channel.
BOT_RATE = 30.0
PRIVATE_CHAT_RATE = 1.0
GROUP_CHAT_RATE = 20.0 / 60.0

_TOKEN = re.compile(r"^[0-9]{1,20}:[A-Za-z0-9_-]{20,100}$")
_CHAT = re.compile(r"^(-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31})$")


class TelegramSender:
    """Sends each part as one Telegram message (HTML parse mode, no link previews)."""

    def __init__(
        self,
        *,
        token: str,
        chat: str,
        settings: NotifySettings,
        client: httpx.Client | None = None,
    ) -> None:
        """Raises:
        SendError: permanent, a malformed token (not shown), chat id (named) or API URL."""
        if not _TOKEN.match(token):
            raise SendError(
                "telegram bot token is malformed (expected <bot id>:<secret>)", permanent=True
            )
        chat = chat.strip()
        if not _CHAT.match(chat):
            raise SendError(
                f"telegram chat id {chat!r} is malformed (expected a number such as 12345 or "
                "-100123, or @channelname)",
                permanent=True,
            )
        api = check_url(
            settings.telegram_api_url, what="telegram API URL", https_only=False, secret=False
        )
        self._token = token
        self._chat = chat
        self._url = f"{str(api).rstrip('/')}/bot{token}/sendMessage"
        self._client = client if client is not None else http_client(settings.timeout)
        self._hash = secret_hash(token)

    @property
    def chat(self) -> str:
        return self._chat

    def rate_keys(self) -> list[tuple[str, float]]:
        """The bot's limiter (30/s) and the chat's (1/s private, 20/min group or channel)."""
        group = self._chat.startswith(("-", "@"))
        return [
            (f"telegram:bot:{self._hash}", BOT_RATE),
            (
                f"telegram:chat:{self._hash}:{self._chat}",
                GROUP_CHAT_RATE if group else PRIVATE_CHAT_RATE,
            ),
        ]

    def send(self, part: str, *, index: int, rendered: Rendered, envelope: Envelope) -> Sent:
        """Send ``part`` as one message; returns its ``message_id``.

        Raises:
            SendError: see the module docstring.
        """
        check_part("telegram", part, index=index, envelope=envelope)
        chat_id: int | str = int(self._chat) if self._chat[0] != "@" else self._chat
        body = {
            "chat_id": chat_id,
            "text": part,
            "parse_mode": "HTML",
            "disable_web_page_preview": True,
        }
        response = post_json(
            self._client, self._url, what="telegram", secrets=[self._token], json_body=body
        )
        data = json_object(response)
        status = response.status_code
        if status == 200 and data.get("ok") is True:
            result = data.get("result")
            message_id = result.get("message_id") if isinstance(result, dict) else None
            return Sent(provider_ref=None if message_id is None else str(message_id))
        description = data.get("description")
        if not isinstance(description, str) or not description:
            description = short(response.text) or response.reason_phrase
        code = data.get("error_code")
        if isinstance(code, int) and code != status and status == 200:
            status = code  # ok: false inside a 200: trust the body's code
        parameters = data.get("parameters")
        parameters = parameters if isinstance(parameters, dict) else {}
        reason = f"telegram {status}: {short(description)}"
        migrated = parameters.get("migrate_to_chat_id")
        if migrated is not None:
            reason += f" (the group is now chat {migrated})"
        reason = scrub(reason, [self._token])
        retry_after = parameters.get("retry_after")
        seconds = (
            float(retry_after)
            if isinstance(retry_after, int | float) and not isinstance(retry_after, bool)
            else parse_retry_after(response.headers.get("Retry-After"))
        )
        transient = is_transient_status(status)
        raise SendError(
            reason,
            permanent=not transient,
            retry_after=seconds if transient else None,
            status=status,
        )
