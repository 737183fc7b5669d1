"""The API's opaque cursors and its strict parameter types, without services."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticError

from quant.errors import ValidationError
from quantbeat.api.cursors import MAX_ID, date_id_key, decode_cursor, encode_cursor
from quantbeat.api.params import Integer, IsoDate
from quantbeat.services.signal_reads import at_least


@pytest.mark.parametrize("key", [(dt.date(2026, 11, 20), 1), (dt.date(1, 1, 1), MAX_ID)])
def test_a_cursor_gives_back_its_key(key: tuple[dt.date, int]) -> None:
    cursor = encode_cursor([key[0].isoformat(), key[1]])
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert date_id_key(cursor) == key


@pytest.mark.parametrize(
    "cursor", ["", "=", "a+b/", "ÿ", "x" * 201, encode_cursor(["2026-11-20", 1])[:-2]]
)
def test_a_malformed_cursor_names_the_parameter(cursor: str) -> None:
    with pytest.raises(ValidationError) as err:
        date_id_key(cursor, field="query.cursor")
    assert err.value.field == "query.cursor"


def test_a_cursor_of_another_shape_is_refused() -> None:
    assert decode_cursor(encode_cursor(["a", 1, 2]), [str, int, int]) == ["a", 1, 2]
    for key in (["2026-11-20"], ["2026-11-20", "1"], [20261120, 1], ["2026-11-20", -1]):
        with pytest.raises(ValidationError, match="not a cursor this API gave out"):
            date_id_key(encode_cursor(key))  # type: ignore[arg-type]


def test_parameters_take_only_their_documented_form() -> None:
    dates = TypeAdapter(IsoDate)
    assert dates.validate_python("2026-11-20") == dt.date(2026, 11, 20)
    for bad in ("0", "2026-11-20T00:00", "20261120"):
        with pytest.raises(PydanticError):
            dates.validate_python(bad)
    numbers = TypeAdapter(Integer)
    assert numbers.validate_python("42") == 42
    for bad in ("1.0", "+5", "1_000", " 5"):
        with pytest.raises(PydanticError):
            numbers.validate_python(bad)


def test_a_minimum_grade_reads_its_own_ladder() -> None:
    ladder = ("S", "A", "B", "C")
    assert [g for g in ("S", "A", "B", "C", None, "Strong") if at_least(g, "A", ladder)] == [
        "S",
        "A",
    ]
    assert not at_least("S", "Strong", ladder)
