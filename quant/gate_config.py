"""Configuration values of the Market Gate that settings validate (light: no TA-Lib import,
unlike :mod:`quant.gate`)."""

from __future__ import annotations

from quant.errors import ValidationError


def parse_sector_etfs(text: str, *, field: str = "QUANTBEAT_SECTOR_ETFS") -> dict[str, str]:
    """``"069500:KOSPI200,091160:반도체"`` → ``{"069500": "KOSPI200", "091160": "반도체"}``
    (order kept).

    Raises:
        quant.errors.ValidationError: an entry is not ``code:name`` with a 6-character
            alphanumeric code and a name, a code repeats, or the list is empty; the message
            names the entry and ``field``.
    """
    out: dict[str, str] = {}
    for raw in str(text).split(","):
        entry = raw.strip()
        if not entry:
            continue
        code, sep, name = entry.partition(":")
        code, name = code.strip(), name.strip()
        if not sep or not name or len(code) != 6 or not code.isalnum():
            raise ValidationError(
                f"{field}: entry {entry!r} must be CODE:NAME with a 6-character code "
                "(e.g. 091160:반도체)",
                field=field,
                value=entry,
            )
        if code in out:
            raise ValidationError(f"{field}: code {code} appears twice", field=field, value=code)
        out[code] = name
    if not out:
        raise ValidationError(f"{field}: no sector ETF given", field=field, value=text)
    return out
