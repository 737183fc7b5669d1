"""A strict reader of the Telegram HTML quantbeat sends, for tests.

:func:`telegram_text` accepts only the tags ``b i u s code pre a`` (``a`` with one ``href``
attribute, the others without attributes), each closed in order within the text, and only the
entities ``&lt; &gt; &amp; &quot;`` and numeric ones; any other ``<``, ``>`` or ``&`` fails.
It returns the text Telegram would show (tags removed, entities decoded).
"""

from __future__ import annotations

import html
import re

ALLOWED_TAGS = frozenset({"b", "i", "u", "s", "code", "pre", "a"})
_TOKEN = re.compile(
    r"(?P<tag><(?P<close>/?)(?P<name>[a-z]+)(?P<attrs>(?: href=\"[^\"<>]*\")?)>)"
    r"|(?P<entity>&(?:lt|gt|amp|quot|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});)"
    r"|(?P<bad>[<>&])"
)


class BadTelegramHtml(AssertionError):
    """The text is not strict Telegram HTML (the message says where)."""


def telegram_text(text: str) -> str:
    """The shown text of ``text``; raises :class:`BadTelegramHtml` unless it is strict,
    balanced Telegram HTML."""
    stack: list[str] = []
    out: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        out.append(text[pos : m.start()])
        pos = m.end()
        where = f"at {m.start()} in {text[max(0, m.start() - 30) : m.end() + 30]!r}"
        if m.group("bad"):
            raise BadTelegramHtml(f"unescaped {m.group('bad')!r} {where}")
        if m.group("entity"):
            out.append(html.unescape(m.group("entity")))
            continue
        name = m.group("name")
        if name not in ALLOWED_TAGS:
            raise BadTelegramHtml(f"tag <{name}> is not allowed {where}")
        if m.group("close"):
            if m.group("attrs"):
                raise BadTelegramHtml(f"attributes on a closing tag {where}")
            if not stack or stack[-1] != name:
                raise BadTelegramHtml(f"</{name}> closes {stack[-1:] or 'nothing'} {where}")
            stack.pop()
        else:
            if m.group("attrs") and name != "a":
                raise BadTelegramHtml(f"attributes on <{name}> {where}")
            stack.append(name)
    out.append(text[pos:])
    if stack:
        raise BadTelegramHtml(f"tags left open at the end: {stack}")
    return "".join(out)
