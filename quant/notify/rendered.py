"""What a channel sends: a message rendered for one channel's markup (see
:mod:`quant.notify.messages`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Channel = Literal["telegram", "slack", "discord", "email", "webhook", "file"]
#: Every channel a subscription may use.
CHANNELS: tuple[Channel, ...] = ("telegram", "slack", "discord", "email", "webhook", "file")
Language = Literal["ko", "en"]
LANGUAGES: tuple[Language, ...] = ("ko", "en")

#: Largest part each channel accepts, in characters (Telegram's sendMessage text after
#: entity parsing counts fewer; Discord's ``content``; Slack truncates a section block's text
#: at 3000 characters).
PART_LIMITS: dict[str, int] = {
    "telegram": 4096,
    "discord": 2000,
    "slack": 3000,
    "email": 1_000_000,
    "webhook": 1_000_000,
    "file": 1_000_000,
}


@dataclass(frozen=True)
class Rendered:
    """One event rendered for ``channel`` in ``language``.

    ``parts`` are the channel's markup (Telegram HTML, Slack mrkdwn, Discord markdown; plain
    text for e-mail, webhooks and files), already escaped, each at most
    ``PART_LIMITS[channel]`` characters, sent in order as separate provider messages.
    ``subject`` is one plain-text line (the e-mail subject, Discord's embed title); ``plain``
    is the whole message as plain text; ``html`` the e-mail's HTML body (``None`` for other
    channels). Simulated events say so in ``subject`` and in the first part.
    """

    channel: str
    language: str
    subject: str
    parts: tuple[str, ...]
    plain: str
    html: str | None = None
