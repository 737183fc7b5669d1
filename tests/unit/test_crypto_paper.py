"""The crypto paper portfolio's pure parts (issue 23): sizing, fills with fees and slippage,
the ledger replay and its reconciliation, and the disabled exchange adapter."""

from __future__ import annotations

import pytest

from quant.crypto.exchange import DisabledExchange, upbit_order_body
from quant.crypto.paper import (
    Book,
    Fill,
    PaperRules,
    apply,
    fill_order,
    floor_volume,
    reconcile,
    replay,
    size_order,
)
from quant.errors import ConfigError, ValidationError

RULES = PaperRules(capital=10_000_000.0, order_fraction=0.25, fee_rate=0.0005, slippage=0.001)


def test_a_buy_spends_its_fraction_and_pays_fee_and_slippage() -> None:
    book = Book(cash=RULES.capital)
    krw, why = size_order(book, "KRW-BTC", "buy", 50_000_000.0, RULES, {})
    assert why is None
    assert krw == 2_500_000.0
    fill = fill_order("KRW-BTC", "buy", krw, 50_000_000.0, RULES)
    assert fill.price == pytest.approx(50_050_000.0)  # +0.1 % slippage
    assert fill.volume == floor_volume(2_500_000.0 / 50_050_000.0)
    assert fill.fee == pytest.approx(fill.volume * fill.price * 0.0005)
    apply(book, fill)
    assert book.cash == pytest.approx(RULES.capital - fill.volume * fill.price - fill.fee)
    assert book.positions["KRW-BTC"].cost == pytest.approx(fill.volume * fill.price + fill.fee)


def test_a_round_trip_realizes_the_move_less_every_cost() -> None:
    book = Book(cash=RULES.capital)
    buy = fill_order("KRW-BTC", "buy", 2_500_000.0, 50_000_000.0, RULES)
    apply(book, buy)
    volume, why = size_order(book, "KRW-BTC", "sell", 55_000_000.0, RULES, {})
    assert why is None
    assert volume == buy.volume
    sell = fill_order("KRW-BTC", "sell", volume, 55_000_000.0, RULES)
    assert sell.price == pytest.approx(54_945_000.0)
    apply(book, sell)
    expected = sell.volume * sell.price - sell.fee - (buy.volume * buy.price + buy.fee)
    assert book.realized == pytest.approx(expected)
    assert book.cash == pytest.approx(RULES.capital + expected)
    assert book.positions["KRW-BTC"].volume == 0.0
    assert book.fees == pytest.approx(buy.fee + sell.fee)


def test_rules_reject_by_name() -> None:
    book = Book(cash=RULES.capital)
    assert size_order(book, "KRW-BTC", "sell", 5e7, RULES, {}) == (None, "no position")
    apply(book, fill_order("KRW-BTC", "buy", 2_500_000.0, 5e7, RULES))
    assert size_order(book, "KRW-BTC", "buy", 5e7, RULES, {}) == (None, "holding")
    poor = Book(cash=4_000.0)
    assert size_order(poor, "KRW-ETH", "buy", 4e6, RULES, {}) == (None, "min order")
    with pytest.raises(ValidationError, match="order_fraction"):
        PaperRules(order_fraction=1.5)


def test_the_ledger_refuses_an_impossible_fill() -> None:
    book = Book(cash=1_000.0)
    with pytest.raises(ValidationError, match="spends"):
        apply(book, Fill("KRW-BTC", "buy", 1.0, 5e7, 0.0))
    with pytest.raises(ValidationError, match="exceeds"):
        apply(Book(cash=0.0), Fill("KRW-BTC", "sell", 1.0, 5e7, 0.0))


def test_reconcile_names_every_difference_and_nothing_when_equal() -> None:
    fills = [
        fill_order("KRW-BTC", "buy", 2_500_000.0, 5e7, RULES),
    ]
    ledger = replay(RULES.capital, fills)
    assert reconcile(replay(RULES.capital, fills), ledger) == []
    tampered = replay(RULES.capital, fills)
    tampered.cash += 100.0
    tampered.positions["KRW-BTC"].volume += 0.001
    found = reconcile(tampered, ledger)
    assert any(d.startswith("cash: stored") for d in found)
    assert any(d.startswith("KRW-BTC volume") for d in found)
    tampered = replay(RULES.capital, fills)
    tampered.positions["KRW-BTC"].realized = 5.0
    assert reconcile(tampered, ledger) == ["KRW-BTC realized: stored 5.00 KRW, ledger 0.00 KRW"]


def test_orders_are_written_in_upbits_shape_and_never_sent() -> None:
    buy = upbit_order_body("KRW-BTC", "buy", krw=2_500_000.0, identifier="quantbeat-1")
    assert buy == {
        "market": "KRW-BTC",
        "side": "bid",
        "ord_type": "price",
        "price": "2500000",
        "identifier": "quantbeat-1",
    }
    sell = upbit_order_body("KRW-BTC", "sell", volume=0.04995)
    assert sell == {
        "market": "KRW-BTC",
        "side": "ask",
        "ord_type": "market",
        "volume": "0.04995000",
    }
    with pytest.raises(ValidationError):
        upbit_order_body("KRW-BTC", "buy")
    with pytest.raises(ConfigError, match="live orders are disabled"):
        DisabledExchange().place(buy)
