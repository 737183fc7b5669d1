"""The exchange order interface of the crypto paper portfolio — **disabled**: quantbeat never
sends a live order (issue 23).

:class:`ExchangeAdapter` is what a live integration would implement; :class:`DisabledExchange`
is the only implementation and refuses every order. :func:`upbit_order_body` writes an order
down in Upbit's format so that the paper ledger (``crypto_orders``) shows exactly what would
have been sent, and a later live adapter has its contract here.

Upbit's order API, for that later adapter (Upbit Open API v1, Exchange API; read from its
developer centre, docs.upbit.com, not exercised here):

* ``POST https://api.upbit.com/v1/orders`` with a JSON body:

  ===============  ==========================================================================
  ``market``       the market code, ``KRW-BTC``
  ``side``         ``bid`` (buy) or ``ask`` (sell)
  ``ord_type``     ``limit`` (price and volume), ``price`` (market buy: ``price`` is the KRW
                   to spend, no volume) or ``market`` (market sell: ``volume``, no price)
  ``volume``       coins, as a decimal string (market sell, limit)
  ``price``        KRW, as a decimal string (market buy: the amount; limit: per coin)
  ``identifier``   optional, the client's own unique id: quantbeat would send the paper
                   order's id, so a retried request cannot place a second order
  ===============  ==========================================================================

* authentication: ``Authorization: Bearer <JWT>``, the token signed with the secret key
  (HS256 or HS512) over the claims ``access_key``, ``nonce`` (a fresh UUID per request) and,
  for a request with parameters, ``query_hash`` (SHA-512 hex of the URL-encoded parameters)
  with ``query_hash_alg: "SHA512"``;
* the answer: the order with ``uuid``, ``side``, ``ord_type``, ``price``, ``state``
  (``wait``, ``watch``, ``done``, ``cancel``), ``market``, ``created_at``, ``volume``,
  ``remaining_volume``, ``reserved_fee``, ``paid_fee``, ``locked``, ``executed_volume``,
  ``trades_count``; a fill is read back with ``GET /v1/order?uuid=…``;
* fees: 0.05 % of the traded KRW on the KRW market; the smallest order is 5,000 KRW;
* rate limit: the order group allows 8 requests a second per account (``Remaining-Req``
  header, as for candles).

The keys would come from settings as secrets, never as task arguments (the project's rule);
none exist today, and nothing reads them.
"""

from __future__ import annotations

from typing import Any, Protocol

from quant.errors import ConfigError, ValidationError


class ExchangeAdapter(Protocol):
    """Places an order on an exchange and says how it went."""

    name: str

    def place(self, body: dict[str, str]) -> dict[str, Any]:
        """Send the order ``body`` (Upbit's format); return the exchange's answer."""
        ...


class DisabledExchange:
    """The only adapter: every order is refused. quantbeat trades on paper only."""

    name = "disabled"

    def place(self, body: dict[str, str]) -> dict[str, Any]:
        """Raises:
        quant.errors.ConfigError: always — live orders are not part of quantbeat.
        """
        raise ConfigError(
            f"live orders are disabled: the {body.get('side', '?')} order on "
            f"{body.get('market', '?')} stays on paper (quant.crypto.exchange documents "
            "Upbit's order API for a future adapter)"
        )


def upbit_order_body(
    market: str,
    side: str,
    *,
    krw: float | None = None,
    volume: float | None = None,
    identifier: str | None = None,
) -> dict[str, str]:
    """The body of Upbit's ``POST /v1/orders`` for a paper order: a market buy spending
    ``krw`` (``ord_type=price``) or a market sell of ``volume`` coins (``ord_type=market``).

    Raises:
        quant.errors.ValidationError: an unknown side, or the amount its type needs missing
            or not positive.
    """
    if side == "buy":
        if krw is None or not krw > 0:
            raise ValidationError(f"a market buy needs a KRW amount > 0, got {krw!r}", field="krw")
        body = {"market": market, "side": "bid", "ord_type": "price", "price": f"{krw:.0f}"}
    elif side == "sell":
        if volume is None or not volume > 0:
            raise ValidationError(
                f"a market sell needs a volume > 0, got {volume!r}", field="volume"
            )
        body = {"market": market, "side": "ask", "ord_type": "market", "volume": f"{volume:.8f}"}
    else:
        raise ValidationError(f"order side must be buy or sell, got {side!r}", field="side")
    if identifier:
        body["identifier"] = identifier
    return body
