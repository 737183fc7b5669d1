"""Finding which instruments a news item mentions.

Rules, for each alias (ticker code or company name) of an instrument:

* the ticker part of the instrument id itself (``005930`` of ``KOSPI:005930``) is always an
  alias; aliases shorter than 2 characters, and all-digit aliases shorter than 6 digits
  (ordinary numbers in text), are ignored;
* an all-digit alias (a KRX code) matches when not touching another digit: ``005930`` matches
  in ``(005930)`` and ``A005930`` but not in ``1005930`` or ``0059301``;
* any other alias whose first (last) character is an ASCII letter or digit must not be preceded
  (followed) by one: ``LG`` matches in ``LG의`` and ``(LG)`` but not in ``LGES``; Korean names
  match anywhere (Korean attaches particles, 삼성전자가 …);
* ASCII letters are compared case-insensitively, except in all-ASCII aliases of at most 3
  characters (``SK``, ``BTC``), which must match exactly;
* at each position of the text the longest matching alias wins and matches do not overlap, so
  ``LG전자`` mentions LG전자 but not LG, and ``삼성전자우`` mentions the preferred share only.

Cost: building the matcher is linear in the total alias length. Matching scans the text once,
with one dictionary lookup on a two-character prefix per position plus a ``startswith`` per
alias sharing that prefix — independent of the universe size apart from prefix collisions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from quant.errors import ValidationError
from quant.news.items import NewsItem

__all__ = ["InstrumentMatcher", "match_instruments"]

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_DIGITS = frozenset("0123456789")
_MIN_LENGTH = 2
_MIN_DIGITS = 6
_EXACT_CASE_MAX = 3


@dataclass(frozen=True, slots=True)
class _Alias:
    text: str  # as given (compared when exact)
    folded: str  # ASCII-lower-cased (compared otherwise)
    exact: bool  # case-sensitive
    digits: bool  # all-digit: boundaries are "not a digit"
    left_bound: bool  # the first character needs a boundary before it
    right_bound: bool  # the last character needs a boundary after it
    instruments: tuple[str, ...]


def _fold(text: str) -> str:
    """ASCII letters lower-cased; every other character, and the length, unchanged."""
    return text.translate(_ASCII_LOWER)


class InstrumentMatcher:
    """A reusable matcher over one universe (see the module docstring for the rules).

    Args:
        universe: instrument id (``"MARKET:TICKER"``) → aliases (ticker code, company
            name(s)). A single string is accepted as one alias.

    Raises:
        quant.errors.ValidationError: an instrument id that is not ``"MARKET:TICKER"``, or an
            alias that is not a string.
    """

    def __init__(self, universe: Mapping[str, Sequence[str]]) -> None:
        by_text: dict[str, list[str]] = {}
        for instrument, aliases in universe.items():
            if not isinstance(instrument, str) or not all(instrument.partition(":")[::2]):
                raise ValidationError(
                    f'instrument {instrument!r} is not a "MARKET:TICKER" id',
                    field="universe",
                    value=instrument,
                )
            names: Iterable[object] = [aliases] if isinstance(aliases, str) else aliases
            candidates = [instrument.partition(":")[2], *names]
            for alias in candidates:
                if not isinstance(alias, str):
                    raise ValidationError(
                        f"alias {alias!r} of {instrument} is not a string",
                        field="universe",
                        value=alias,
                    )
                alias = " ".join(alias.split())
                if len(alias) < _MIN_LENGTH:
                    continue
                if alias.isascii() and alias.isdigit() and len(alias) < _MIN_DIGITS:
                    continue
                owners = by_text.setdefault(alias, [])
                if instrument not in owners:
                    owners.append(instrument)
        index: dict[str, list[_Alias]] = {}
        for text, owners in by_text.items():
            digits = text.isascii() and text.isdigit()
            alias = _Alias(
                text=text,
                folded=_fold(text),
                exact=text.isascii() and len(text) <= _EXACT_CASE_MAX,
                digits=digits,
                left_bound=digits or text[0] in _ASCII_ALNUM,
                right_bound=digits or text[-1] in _ASCII_ALNUM,
                instruments=tuple(owners),
            )
            index.setdefault(alias.folded[:_MIN_LENGTH], []).append(alias)
        for bucket in index.values():
            bucket.sort(key=lambda a: -len(a.text))  # longest first
        self._index = index
        self.alias_count = len(by_text)

    def find(self, text: str) -> list[str]:
        """Instrument ids mentioned in ``text``, in order of first mention, without repeats."""
        found: dict[str, None] = {}
        index = self._index
        folded = _fold(text)
        n = len(text)
        i = 0
        while i < n - 1:
            candidates = index.get(folded[i : i + 2])
            if candidates is not None:
                match = self._match_at(text, folded, i, candidates)
                if match is not None:
                    for instrument in match.instruments:
                        found[instrument] = None
                    i += len(match.text)
                    continue
            i += 1
        return list(found)

    @staticmethod
    def _match_at(text: str, folded: str, i: int, candidates: list[_Alias]) -> _Alias | None:
        for alias in candidates:
            if alias.exact:
                if not text.startswith(alias.text, i):
                    continue
            elif not folded.startswith(alias.folded, i):
                continue
            end = i + len(alias.text)
            boundary = _DIGITS if alias.digits else _ASCII_ALNUM
            if alias.left_bound and i > 0 and text[i - 1] in boundary:
                continue
            if alias.right_bound and end < len(text) and text[end] in boundary:
                continue
            return alias
        return None

    def match(self, items: Sequence[NewsItem]) -> list[NewsItem]:
        """``items`` with ``instruments`` set to what each title and summary mention (title
        first, then summary; order of first mention). Other fields are unchanged."""
        return [
            dataclasses.replace(item, instruments=tuple(self.find(f"{item.title}\n{item.summary}")))
            for item in items
        ]


def match_instruments(
    items: Sequence[NewsItem], universe: Mapping[str, Sequence[str]]
) -> list[NewsItem]:
    """``items`` with ``instruments`` set to every instrument of ``universe`` that each item's
    title or summary mentions (rules in the module docstring), in order of first mention.

    ``universe`` maps ``"MARKET:TICKER"`` to aliases (ticker code, company name(s)). Existing
    ``instruments`` are replaced, not merged. To match many batches against one universe, build
    an :class:`InstrumentMatcher` once and call :meth:`InstrumentMatcher.match`.

    Raises:
        quant.errors.ValidationError: a malformed instrument id or alias.
    """
    return InstrumentMatcher(universe).match(items)
