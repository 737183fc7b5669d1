"""Channel markup: escaping text for each channel, and cutting a message into parts a channel
accepts.

Escaping (apply to every piece of text that is not our own markup):

- :func:`escape_telegram_html` — Telegram's ``parse_mode: "HTML"``: ``&``, ``<``, ``>`` (and
  ``"`` inside an attribute value) are the only characters that need it.
- :func:`escape_slack` — Slack mrkdwn: ``&``, ``<``, ``>`` as ``&amp;``, ``&lt;``, ``&gt;`` (so no
  ``<!everyone>``, ``<@U…>`` or ``<url|text>`` can be injected). Slack has no way to escape
  ``*``, ``_``, ``~`` or a backtick; they format only when paired at word boundaries.
- :func:`escape_discord` — Discord markdown: a backslash before each of
  ``\\ * _ ~ ` | > # [ ] <``, a leading list marker (``-``, ``+``, ``1.``) and a zero-width space
  after every ``@`` (``@everyone``, ``@here`` and ``<@id>`` mentions never ping). For inline
  text; the sender should still pass ``allowed_mentions: {"parse": []}``.
- :func:`escape_html` — HTML bodies (e-mail): ``& < > " '``.

Chunking: :func:`chunk` packs already-escaped lines into parts of at most ``limit`` and only
cuts inside a line when that line alone does not fit. Such a line is cut between *atoms*, never
inside one: an HTML tag ``<…>`` or entity ``&…;`` (Telegram HTML; Slack's ``<…>`` and
entities), a backslash escape (Discord), a character with its combining marks, variation
selectors and zero-width-joined followers (such a cluster is cut between its code points only
when it is wider than a part on its own). For Telegram HTML no part leaves a tag open: at every
cut, whether between two lines or inside one, the part closes the tags still open (innermost
first) and the next part reopens them with their original opening tags (attributes included).
So each part is balanced on its own, and the text content (tags removed, entities decoded) of
the parts, read in order, is the content of the input with only the cut line breaks and blank
lines at part edges missing.

Pure: no I/O.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Literal

__all__ = [
    "MARKUPS",
    "Markup",
    "chunk",
    "escape_discord",
    "escape_html",
    "escape_slack",
    "escape_telegram_html",
    "text_width",
]

#: How :func:`chunk` reads the lines: ``html`` Telegram HTML (tags balanced per part),
#: ``mrkdwn`` Slack, ``markdown`` Discord, ``text`` plain text.
Markup = Literal["html", "mrkdwn", "markdown", "text"]
MARKUPS: tuple[Markup, ...] = ("html", "mrkdwn", "markdown", "text")


# ------------------------------------------------------------------------------------------
# Escaping


def escape_telegram_html(s: str, *, quote: bool = False) -> str:
    """``s`` as Telegram HTML text: ``&``, ``<``, ``>`` become entities; with ``quote`` (for a
    value inside an attribute such as ``<a href="…">``) also ``"``."""
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return s.replace('"', "&quot;") if quote else s


def escape_slack(s: str) -> str:
    """``s`` as Slack mrkdwn text: ``&`` → ``&amp;``, ``<`` → ``&lt;``, ``>`` → ``&gt;``."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_DISCORD_SPECIAL = re.compile(r"([\\*_~`|>#\[\]<])")
_DISCORD_LIST_MARKER = re.compile(r"^(\s*)(?:([-+])|(\d+)\.)")


def escape_discord(s: str) -> str:
    """``s`` as inline Discord markdown: formatting characters, masked links (``[…](…)``),
    headings, block quotes, spoilers and a leading list marker backslash-escaped; every ``@``
    followed by a zero-width space so no mention resolves."""
    s = _DISCORD_SPECIAL.sub(r"\\\1", s)
    s = _DISCORD_LIST_MARKER.sub(
        lambda m: f"{m.group(1)}\\{m.group(2)}" if m.group(2) else f"{m.group(1)}{m.group(3)}\\.",
        s,
        count=1,
    )
    return s.replace("@", "@\u200b")


def escape_html(s: str) -> str:
    """``s`` as HTML text or attribute value (``& < > " '``)."""
    return html.escape(s, quote=True)


# ------------------------------------------------------------------------------------------
# Chunking

_ENTITY = r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{0,31});"
#: One user-perceived character, roughly: a code point with its combining marks, variation
#: selectors, keycap and skin-tone modifiers, and whatever a zero-width joiner glues to it.
_CHAR = (
    r"(?:.[\u0300-\u036f\u20d0-\u20ff\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]*)"
    r"(?:\u200d[^<>&\\\s][\u0300-\u036f\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]*)*"
)
_ATOMS: dict[str, re.Pattern[str]] = {
    "html": re.compile(rf"<[^<>]*>|{_ENTITY}|{_CHAR}", re.S),
    "mrkdwn": re.compile(rf"{_ENTITY}|<[^<>\n]*>|{_CHAR}", re.S),
    "markdown": re.compile(rf"\\[^\s]|{_CHAR}", re.S),
    "text": re.compile(_CHAR, re.S),
}
_CLUSTER = re.compile(_CHAR, re.S)
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)(?:\s[^<>]*)?>|<[^<>]*>")
_VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "wbr", "area", "base", "col"})

#: Tags open at a point of a part: (name, the opening tag as written), outermost first.
_Stack = tuple[tuple[str, str], ...]


def text_width(s: str) -> int:
    """Length of ``s`` in UTF-16 code units — what Telegram and Discord count, and never less
    than ``len(s)`` (a character outside the Basic Multilingual Plane, such as most emoji,
    counts 2)."""
    return len(s) + sum(1 for c in s if ord(c) > 0xFFFF)


def _track(stack: _Stack, text: str) -> _Stack:
    """The open tags after ``text`` when ``stack`` was open before it. A closing tag closes
    the innermost open tag of its name (and any left open inside it); a stray one is
    ignored."""
    out = list(stack)
    for m in _TAG.finditer(text):
        name = m.group(2)
        if name is None:
            continue
        name = name.lower()
        if m.group(1):
            for k in range(len(out) - 1, -1, -1):
                if out[k][0] == name:
                    del out[k:]
                    break
        elif name not in _VOID and not m.group(0).endswith("/>"):
            out.append((name, m.group(0)))
    return tuple(out)


def _opening(stack: _Stack) -> str:
    return "".join(tag for _, tag in stack)


def _closing(stack: _Stack) -> str:
    return "".join(f"</{name}>" for name, _ in reversed(stack))


def _closing_width(stack: _Stack) -> int:
    return sum(len(name) + 3 for name, _ in stack)


def _is_opening_tag(atom: str) -> bool:
    m = _TAG.fullmatch(atom)
    return bool(
        m
        and m.group(2)
        and not m.group(1)
        and m.group(2).lower() not in _VOID
        and not atom.endswith("/>")
    )


def chunk(lines: Sequence[str], limit: int, *, markup: Markup = "html") -> tuple[str, ...]:
    """Pack already-escaped ``lines`` (joined by ``"\\n"``) into parts of at most ``limit``
    UTF-16 code units each (:func:`text_width`; so also at most ``limit`` characters).

    Whole lines go into a part while they fit; a line is cut only when it does not fit in a
    part on its own, then only between atoms (see the module docstring), preferring a cut
    after a space in the second half of the piece. Blank lines at the start or end of a part
    are dropped (they separate sections; a part is never blank). With ``markup="html"`` every
    part is tag-balanced: the tags open at a cut are closed at the end of the part and reopened
    at the start of the next, and a cut never leaves an element empty. ``lines`` inside one
    part are joined exactly as given, so ``"\\n".join(parts) == "\\n".join(lines)`` whenever
    no line had to be cut, no tag spans a part boundary and there are no blank lines at the
    edges.

    Raises:
        ValueError: ``limit`` < 1, an unknown ``markup``, or a ``limit`` too small to hold one
            atom together with the tags it must reopen and close.
    """
    if limit < 1:
        raise ValueError(f"chunk limit must be at least 1, got {limit}")
    if markup not in _ATOMS:
        raise ValueError(f"unknown markup {markup!r} (known: {', '.join(MARKUPS)})")
    html_mode = markup == "html"
    atoms_of = _ATOMS[markup]
    parts: list[str] = []
    body: list[str] = []
    prefix = ""
    stack: _Stack = ()
    width = 0

    def flush() -> None:
        nonlocal body, prefix, width
        while body and not body[-1].strip():
            body.pop()
        if body:
            parts.append(prefix + "\n".join(body) + _closing(stack))
        body = []
        prefix = _opening(stack)
        width = text_width(prefix)

    for line in lines:
        blank = not line.strip()
        if blank and not body:
            continue
        after = _track(stack, line) if html_mode else ()
        size = text_width(line)
        sep = 1 if body else 0
        if width + sep + size + _closing_width(after) <= limit:
            body.append(line)
            width += sep + size
            stack = after
            continue
        if body:
            flush()
            if blank:
                continue
            if width + size + _closing_width(after) <= limit:
                body.append(line)
                width += size
                stack = after
                continue
        # The line does not fit in a part of its own: cut it between atoms.
        atoms = atoms_of.findall(line)
        i = 0
        while i < len(atoms):
            rest = "".join(atoms[i:])
            if width + text_width(rest) + _closing_width(after) <= limit:
                body.append(rest)
                width += text_width(rest)
                stack = after
                break
            w = width
            st = stack
            best: tuple[int, _Stack] | None = None
            best_w = 0
            space: tuple[int, _Stack] | None = None
            space_w = 0
            content = False  # the piece holds more than tags
            visible = False  # the piece holds more than tags and white space
            tags_only: tuple[int, _Stack] | None = None  # for a line of nothing but tags
            white_only: tuple[int, _Stack] | None = None  # a piece of white space alone
            for j in range(i, len(atoms)):
                atom = atoms[j]
                w += text_width(atom)
                if w > limit:
                    break
                if html_mode and atom.startswith("<"):
                    st = _track(st, atom)
                    if _is_opening_tag(atom):
                        continue
                else:
                    content = True
                if not content and w + _closing_width(st) <= limit:
                    tags_only = (j, st)
                if content and w + _closing_width(st) <= limit:
                    if atom.isspace() and not visible:
                        # A part of nothing but white space would be blank (Telegram refuses
                        # an empty message): cut there only if nothing else fits.
                        white_only = (j, st)
                        continue
                    visible = visible or not atom.isspace()
                    best, best_w = (j, st), w
                    if atom.isspace():
                        space, space_w = (j, st), w
            if best is None and len(atoms[i]) > 1 and _CLUSTER.fullmatch(atoms[i]):
                # A cluster wider than a part (a long zero-width-joined run): its code points.
                atoms[i : i + 1] = list(atoms[i])
                continue
            if best is None:
                best = white_only or tags_only
            if best is None:
                raise ValueError(
                    f"chunk limit {limit} is too small for {atoms[i]!r} with the tags "
                    f"{_opening(stack)!r} reopened"
                )
            if space is not None and (space_w - width) * 2 >= best_w - width:
                best = space
            end, stack = best
            parts.append(prefix + "".join(atoms[i : end + 1]) + _closing(stack))
            prefix = _opening(stack)
            width = text_width(prefix)
            i = end + 1
    flush()
    return tuple(parts)
