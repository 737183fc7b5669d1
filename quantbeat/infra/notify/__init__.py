"""Notification channels: the I/O to Telegram, Slack, Discord, SMTP, signed webhooks and
local files. :func:`sender_for` turns a subscription's :class:`Target` into a
:class:`Sender`; every sender raises :class:`SendError` (``permanent``, ``retry_after``,
``status``, ``reason``, ``scope``), whose text never holds a secret.

Which parts send: Telegram, Slack, Discord and file send every part as its own message; e-mail
and webhooks deliver the whole event once, on part 0 (later parts are no-ops returning
``Sent(None)``).
"""

from __future__ import annotations

import httpx

from quant.notify.rendered import CHANNELS
from quantbeat.infra.notify.base import (
    NotifySettings,
    Sender,
    SendError,
    Sent,
    Target,
)
from quantbeat.infra.notify.discord import DiscordSender
from quantbeat.infra.notify.email import EmailSender, parse_recipients
from quantbeat.infra.notify.file import FileSender, resolve_path
from quantbeat.infra.notify.slack import SlackSender
from quantbeat.infra.notify.telegram import TelegramSender
from quantbeat.infra.notify.webhook import WebhookSender

__all__ = [
    "NotifySettings",
    "SendError",
    "Sender",
    "Sent",
    "Target",
    "sender_for",
]


def sender_for(
    target: Target, settings: NotifySettings, *, client: httpx.Client | None = None
) -> Sender:
    """The sender for ``target``. ``client`` replaces the process's shared ``httpx.Client``
    (HTTP channels only).

    Raises:
        SendError: permanent, the target is malformed: an unknown channel, a bad Telegram chat
            id or missing/malformed token, a Slack/Discord/webhook URL that is not http(s)
            (Slack and Discord: https, except to a loopback host), a malformed webhook secret,
            a bad e-mail address or no SMTP host, a file path leaving ``file_dir``. The
            message names the bad value, never a secret.
    """
    channel = target.channel
    if channel == "telegram":
        if not target.secret:
            raise SendError("telegram target has no bot token", permanent=True)
        if not target.address:
            raise SendError("telegram target has no chat id", permanent=True)
        return TelegramSender(
            token=target.secret, chat=target.address, settings=settings, client=client
        )
    if channel in ("slack", "discord"):
        if not target.secret:
            raise SendError(f"{channel} target has no webhook URL", permanent=True)
        if channel == "slack":
            return SlackSender(url=target.secret, settings=settings, client=client)
        return DiscordSender(url=target.secret, settings=settings, client=client)
    if channel == "webhook":
        if not target.address:
            raise SendError("webhook target has no URL", permanent=True)
        return WebhookSender(
            url=target.address, secret=target.secret, settings=settings, client=client
        )
    if channel == "email":
        return EmailSender(recipients=parse_recipients(target.address), settings=settings)
    if channel == "file":
        return FileSender(path=resolve_path(target.address, settings.file_dir))
    raise SendError(f"unknown channel {channel!r} (known: {', '.join(CHANNELS)})", permanent=True)
