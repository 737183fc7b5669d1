"""SIMULATED news for the simulated market: generated headlines, NOT real news.

:class:`SimulatedNewsSource` makes the news pipeline (fetch → match → store → analyse) run end
to end without network access. Every item it returns is labelled: ``FetchResult.simulated`` is
``True``, ``NewsItem.source`` is ``"simulated"``, URLs live under
``https://news.simulated.invalid/`` (the ``.invalid`` TLD never resolves) and every summary
starts with ``[SIMULATED]``.

Model: for each instrument independently, a random stream seeded by ``(seed, day, instrument)``
decides whether the instrument has news that day (probability ``rate``) and, if so, one to
three headlines of one tone — positive catalysts (수주, 실적 개선, 신고가, contract win, …) in
60 % of cases, negative ones (유상증자, 소송, 적자 전환, …) otherwise — each in Korean or
English. Headlines name the company and its ticker. Publication times fall between 06:00 and
15:00 KST on ``day``. The output for an instrument depends only on ``(seed, day, instrument,
name, rate)`` and whether it is one of the day's ``movers``, not on the rest of the universe.

Big movers: the instruments given as ``movers`` (the simulated market's news-driven surges of
the day, :meth:`quant.market.simulated.SimulatedMarket.movers`) always have news that day:
two or three positive headlines (a surge headline first), published before 15:00 KST so the
15:10 closing-bet decision sees them, labelled simulated like every other item.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone

from quant.calendar import check_aware
from quant.errors import ValidationError
from quant.news.items import FetchResult, NewsItem, keep_since

__all__ = [
    "MOVER_TEMPLATES",
    "NEGATIVE_TEMPLATES",
    "POSITIVE_TEMPLATES",
    "SIMULATED_NEWS_HOST",
    "SIMULATED_SOURCE",
    "SimulatedNewsSource",
]

#: ``NewsItem.source`` of every simulated item.
SIMULATED_SOURCE = "simulated"
#: Host of every simulated item's URL (``.invalid`` never resolves, RFC 2606).
SIMULATED_NEWS_HOST = "news.simulated.invalid"

_KST = timezone(timedelta(hours=9), "KST")
_FIRST = time(6, 0)
_WINDOW_SECONDS = 9 * 3600  # 06:00–15:00 KST
_POSITIVE_SHARE = 0.6

# Surge headlines of a big mover (the first of its items); same fields as the templates below.
MOVER_TEMPLATES: tuple[tuple[str, str], ...] = (
    (
        "{name}({ticker}) 급등…{amount}억원 규모 공급계약 수주 공시",
        "{name}({ticker})가 {amount}억원 규모의 공급계약 수주를 공시하며 장중 급등했다.",
    ),
    (
        "{name}({ticker}) 강세, {q}분기 실적 개선 기대에 거래량 급증",
        "{name}({ticker})의 {q}분기 영업이익이 {pct}% 증가할 것이란 전망에 매수세가 몰렸다.",
    ),
    (
        "{name} ({ticker}) surges on KRW {bn}bn supply contract win",
        "{name} ({ticker}) jumped after it won a KRW {bn}bn supply contract.",
    ),
)

# (title, summary) templates; fields: name, ticker, amount (억원), bn (the same in KRW billions),
# pct, q (quarter).
POSITIVE_TEMPLATES: tuple[tuple[str, str], ...] = (
    (
        "{name}({ticker}), {amount}억원 규모 공급계약 수주",
        "{name}({ticker}) 공시에 따르면 {amount}억원 규모의 장기 공급계약을 수주했다.",
    ),
    (
        "{name}({ticker}) {q}분기 실적 개선…영업이익 {pct}% 증가",
        "{name}({ticker})의 {q}분기 영업이익이 전년 동기 대비 {pct}% 늘며 실적 개선세를 이어갔다.",
    ),
    (
        "{name}({ticker}) 52주 신고가 경신",
        "{name}({ticker}) 주가가 장중 52주 신고가를 경신했다. 기관 순매수가 이어졌다.",
    ),
    (
        "{name}({ticker}), {amount}억원 규모 자사주 매입 결정",
        "{name}({ticker}) 이사회는 {amount}억원 규모의 자기주식 취득을 결의했다.",
    ),
    (
        "{name} ({ticker}) wins KRW {bn}bn supply contract",
        "{name} ({ticker}) said it won a KRW {bn}bn multi-year supply contract.",
    ),
    (
        "{name} ({ticker}) posts stronger Q{q} earnings, operating profit up {pct}%",
        "{name} ({ticker}) reported Q{q} operating profit up {pct}% from a year earlier.",
    ),
    (
        "{name} ({ticker}) shares hit 52-week high",
        "Shares of {name} ({ticker}) rose to a 52-week high on institutional buying.",
    ),
)

NEGATIVE_TEMPLATES: tuple[tuple[str, str], ...] = (
    (
        "{name}({ticker}), {amount}억원 규모 유상증자 결정",
        "{name}({ticker}) 공시: 운영자금 마련을 위한 {amount}억원 규모 유상증자 결정.",
    ),
    (
        "{name}({ticker}), 특허 침해 소송 피소",
        "{name}({ticker}) 공시에 따르면 경쟁사가 특허 침해 소송을 제기했다.",
    ),
    (
        "{name}({ticker}) {q}분기 영업손실 전환",
        "{name}({ticker})의 {q}분기 영업이익이 적자로 돌아섰다. 전년 대비 {pct}% 감소했다.",
    ),
    (
        "{name} ({ticker}) announces KRW {bn}bn rights offering",
        "{name} ({ticker}) plans a KRW {bn}bn rights offering to raise working capital.",
    ),
    (
        "{name} ({ticker}) hit with patent infringement lawsuit",
        "{name} ({ticker}) said a rival filed a patent infringement lawsuit against it.",
    ),
)


def _check_instruments(instruments: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    if isinstance(instruments, str):
        raise ValidationError(
            'instruments must be a sequence of ("MARKET:TICKER", name) pairs, not a string',
            field="instruments",
            value=instruments,
        )
    checked: list[tuple[str, str]] = []
    for pair in instruments:
        ok = isinstance(pair, tuple | list) and len(pair) == 2
        if ok:
            instrument, name = pair
            market, _, ticker = instrument.partition(":") if isinstance(instrument, str) else "::"
            ok = bool(market and ticker) and isinstance(name, str) and bool(name.strip())
        if not ok:
            raise ValidationError(
                f'instrument entry {pair!r} is not a ("MARKET:TICKER", name) pair',
                field="instruments",
                value=pair,
            )
        checked.append((str(pair[0]), str(pair[1]).strip()))
    return checked


class SimulatedNewsSource:
    """SIMULATED headlines about the given instruments on one day (see the module docstring).

    Args:
        instruments: ``("MARKET:TICKER", company name)`` pairs, e.g.
            ``[("KOSPI:005930", "시뮬전자 0001")]``.
        seed: the random seed; the same ``(seed, day)`` always gives the same items.
        day: the (KST) calendar day the news is published on.
        rate: the probability (0–1) that an instrument has news on the day.
        movers: ``"MARKET:TICKER"`` ids of the day's big movers, which always get positive
            news (module docstring); ids not among ``instruments`` are ignored.

    Raises:
        quant.errors.ValidationError: a malformed instrument pair, ``day`` not a plain date,
            ``rate`` outside [0, 1], ``seed`` not an integer.
    """

    name: str = SIMULATED_SOURCE
    simulated: bool = True

    def __init__(
        self,
        instruments: Sequence[tuple[str, str]],
        *,
        seed: int = 42,
        day: date,
        rate: float = 0.05,
        movers: Sequence[str] = (),
    ) -> None:
        if isinstance(day, datetime) or not isinstance(day, date):
            raise ValidationError(f"day must be a plain date, got {day!r}", field="day", value=day)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValidationError(
                f"seed must be an integer, got {seed!r}", field="seed", value=seed
            )
        if (
            isinstance(rate, bool)
            or not isinstance(rate, int | float)
            or not math.isfinite(rate)
            or not 0.0 <= rate <= 1.0
        ):
            raise ValidationError(
                f"rate must be a probability in [0, 1], got {rate!r}", field="rate", value=rate
            )
        self._instruments = _check_instruments(instruments)
        if isinstance(movers, str):
            raise ValidationError(
                "movers must be a sequence of MARKET:TICKER ids, not a string",
                field="movers",
                value=movers,
            )
        self._movers = frozenset(str(m) for m in movers)
        self.seed = seed
        self.day = day
        self.rate = float(rate)

    def __repr__(self) -> str:
        return (
            f"SimulatedNewsSource({len(self._instruments)} instruments, seed={self.seed}, "
            f"day={self.day.isoformat()}, rate={self.rate:g})"
        )

    def fetch(self, *, since: datetime | None = None) -> FetchResult:
        """The day's SIMULATED items, sorted by ``published_at`` (UTC) then URL.

        ``since`` (timezone-aware) drops items published before it.

        Returns:
            ``FetchResult(simulated=True)``; each item's ``instruments`` is the one instrument
            it is about.

        Raises:
            quant.errors.ValidationError: ``since`` is naive.
        """
        since_utc = None if since is None else check_aware(since, "since")
        items: list[NewsItem] = []
        for instrument, name in self._instruments:
            items.extend(self._headlines(instrument, name, instrument in self._movers))
        items.sort(key=lambda item: (item.published_at, item.url))
        return FetchResult(items=keep_since(items, since_utc), rejected=[], simulated=True)

    def _headlines(self, instrument: str, name: str, mover: bool = False) -> list[NewsItem]:
        # A str seed is hashed with SHA-512 by random.Random: stable across processes.
        rng = random.Random(f"quantbeat-news|{self.seed}|{self.day.isoformat()}|{instrument}")
        if rng.random() >= self.rate and not mover:
            return []
        positive = rng.random() < _POSITIVE_SHARE or mover
        templates = POSITIVE_TEMPLATES if positive else NEGATIVE_TEMPLATES
        count = rng.choice((2, 3) if mover else (1, 1, 2, 3))
        start = datetime.combine(self.day, _FIRST, tzinfo=_KST)
        offsets = sorted(rng.randrange(_WINDOW_SECONDS) for _ in range(count))
        market, _, ticker = instrument.partition(":")
        slug = f"{market}-{ticker}".lower().replace("/", "-")
        chosen = rng.sample(templates, count)
        if mover:  # the surge headline first, then ordinary positive ones
            chosen[0] = MOVER_TEMPLATES[rng.randrange(len(MOVER_TEMPLATES))]
        items: list[NewsItem] = []
        for number, (offset, (title, summary)) in enumerate(
            zip(offsets, chosen, strict=True), start=1
        ):
            eok = rng.randrange(50, 5000)  # 억원 = 100 million KRW
            values = {
                "name": name,
                "ticker": ticker,
                "amount": f"{eok:,}",
                "bn": f"{eok / 10:,.1f}",
                "pct": rng.randrange(5, 180),
                "q": rng.randrange(1, 5),
            }
            url = f"https://{SIMULATED_NEWS_HOST}/{self.day:%Y/%m/%d}/{slug}-{number}"
            items.append(
                NewsItem(
                    source=SIMULATED_SOURCE,
                    url=url,
                    title=title.format(**values),
                    summary="[SIMULATED] " + summary.format(**values),
                    published_at=(start + timedelta(seconds=offset)).astimezone(UTC),
                    guid=f"simulated:{self.day.isoformat()}:{instrument}:{number}",
                    instruments=(instrument,),
                )
            )
        return items
