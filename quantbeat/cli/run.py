"""``quantbeat run``: the main job and its printed report."""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer
from rich.table import Table

from quantbeat.cli.backtest import _fmt
from quantbeat.cli.common import candidates_table, console, crypto_book_line, parse_date_option
from quantbeat.cli.track import kpi_table
from quantbeat.infra.logging import configure_logging
from quantbeat.infra.settings import get_settings
from quantbeat.services import runner
from quantbeat.services.args import parse_krx_markets

#: Rows of the buy-window comparison table, per kind.
TOP_ROWS = 10


def run(
    date: Annotated[
        str | None, typer.Option(help="Trading day (YYYY-MM-DD); default: latest closed")
    ] = None,
    market: Annotated[str | None, typer.Option(help="KOSPI or KOSDAQ; default: both")] = None,
    distributed: Annotated[
        bool | None,
        typer.Option(
            "--distributed/--embedded",
            help="The configured broker, database and running workers, or everything "
            "in-process; default: embedded unless a database, broker or Redis URL is set",
            show_default=False,
        ),
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="Database URL; default: var/quantbeat.sqlite (embedded)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the work")] = 600.0,
) -> None:
    """Run the main job and print its report (embedded: SQLite, in-process broker and worker)."""
    day = parse_date_option(date, "--date")
    if market is not None:
        market = parse_krx_markets(market, field="--market")[0].value
    settings = get_settings()
    log_file = settings.data_dir / "quantbeat-run.log"
    configure_logging(settings.log_level, json=True, path=log_file)
    report = runner.run(
        trade_date=day,
        market=market,
        distributed=distributed,
        database_url=database_url,
        timeout=timeout,
        log_file=str(log_file),
    )
    _print_report(report)


def _print_report(report: runner.RunReport) -> None:
    label = " [bold yellow](SIMULATED market data)[/]" if report.simulated else ""
    console.print(f"[bold]quantbeat run[/] — {report.mode} mode{label}")
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="dim")
    table.add_column()
    table.add_row("trading day", report.trade_date.isoformat())
    kind = (
        "first run: a year of history"
        if report.history
        else ("the day asked for" if report.explicit else "since the last stored session")
    )
    table.add_row("sessions collected", f"{report.sessions} ({kind})")
    table.add_row(
        "source",
        "simulated market (generated data, not real prices)" if report.simulated else report.source,
    )
    table.add_row("database", report.database)
    table.add_row("instruments", f"{report.instruments:,}")
    if report.candles:
        c = report.candles
        stored = c.get("inserted", 0) + c.get("updated", 0)
        table.add_row(
            "candles stored",
            f"{stored:,} (new {c.get('inserted', 0):,}, changed {c.get('updated', 0):,}, "
            f"unchanged {c.get('unchanged', 0):,})",
        )
    else:
        table.add_row("candles stored", "0 (no KRX session on this day)")
    if report.flows:
        f = report.flows
        table.add_row(
            "investor flows stored",
            f"{f.get('inserted', 0) + f.get('updated', 0):,} (unchanged {f.get('unchanged', 0):,})",
        )
    table.add_row(
        "rows rejected",
        f"{report.rejected:,}" + (" (see data_rejections)" if report.rejected else ""),
    )
    table.add_row("candles in database", f"{report.candle_rows_total:,}")
    if report.indicators:
        ind = report.indicators
        table.add_row(
            "indicators precomputed",
            f"{ind.get('indicators', 0)} scan indicators × {ind.get('with_bars', 0):,} instruments "
            f"= {ind.get('series', 0):,} series in {ind.get('seconds', 0):.1f} s "
            f"(cache: {ind.get('cache')})",
        )
    if report.sample:
        smp = report.sample
        rsi = "n/a (too few bars)" if smp.get("rsi") is None else f"{smp['rsi']:.1f}"
        table.add_row(
            "sample read",
            f"RSI(14) of {smp['instrument']} = {rsi}, from the {smp['source']} "
            f"in {smp['ms']:.1f} ms",
        )
    if report.cache:
        rate = report.cache.get("hit_rate")
        table.add_row(
            "indicator cache",
            f"hits {report.cache.get('hits', 0):,}, misses {report.cache.get('misses', 0):,}"
            + (f", hit rate {rate:.1%}" if rate is not None else ""),
        )
    if report.gate:
        g = report.gate
        score = "–" if g.get("score") is None else f"{g['score']:.1f}"
        table.add_row("Market Gate", f"{g['color']} (score {score}) — {g['reason']}")
        ranking = g.get("sectors") or {}
        if ranking.get("strongest"):
            table.add_row(
                "sectors",
                f"strongest {ranking['strongest']}, weakest {ranking.get('weakest') or '–'} "
                f"(KODEX 200 {g.get('kodex_status')})",
            )
    for name, w in report.window.items():
        compared = w.get("compare") or {}
        at = str(w.get("as_of", ""))[11:16]
        table.add_row(
            f"{name} at {at}",
            f"{w.get('candidates', 0)} preliminary candidates from the {at} snapshot "
            f"({'before' if w.get('tradeable') else 'after'} the 15:20 auction), "
            f"{w.get('analysed', 0)} analysed; the final decision kept "
            f"{len(compared.get('kept', []))}, added {len(compared.get('added', []))}, "
            f"dropped {len(compared.get('lost', []))}",
        )
    for name, scan in report.scans.items():
        table.add_row(
            f"{name} scan",
            f"{scan.get('scanned', 0):,}/{scan.get('total', 0):,} instruments scanned, "
            f"{scan.get('failed', 0)} failed, {scan.get('candidates', 0)} candidates",
        )
    if report.news:
        n = report.news
        table.add_row(
            "news collected",
            f"{n.get('items', 0):,} items ({n.get('new', 0):,} new, {n.get('mentions', 0):,} "
            f"instrument mentions) from {', '.join(n.get('sources') or {}) or 'no source'}",
        )
    for name, a in report.analysis.items():
        offline = " (offline rules: no Gemini key)" if a.get("analyzer") == "offline" else ""
        table.add_row(
            f"{name} analysis",
            f"{a['succeeded']}/{a['analysed']} top candidates analysed, {a['failed']} failed, "
            f"{a['model']}{offline}",
        )
    for name, bt in report.backtests.items():
        table.add_row(
            f"{name} backtest",
            f"{bt['state']}: {bt['instruments']} instruments, {bt.get('seconds', 0):.1f} s "
            f"(run {bt['run_id']})",
        )
    table.add_row("tasks", str(len(report.tasks)))
    table.add_row("time taken", f"{report.seconds:.2f} s")
    if report.log_file:
        table.add_row("log", report.log_file)
    console.print(table)
    for name, scan in report.scans.items():
        top = scan.get("top") or []
        if not top:
            continue
        title = f"top {name} candidates, {report.trade_date}"
        console.print(candidates_table(top, title=title, note=False))
    _print_sectors(report)
    _print_window(report)
    _print_analyses(report)
    _print_backtests(report)
    _print_track(report)
    _print_portfolio(report)
    _print_crypto(report)
    _print_crypto_paper(report)
    _print_notifications(report)


def _print_sectors(report: runner.RunReport) -> None:
    """The sector ranking of the day's Market Gate."""
    ranking = (report.gate or {}).get("sectors") or {}
    rows = ranking.get("sectors") or []
    if not rows:
        return
    label = "SIMULATED " if report.simulated else ""
    table = Table(title=f"{label}sectors, {report.trade_date}", title_justify="left")
    for column in ("#", "ETF", "sector", "score", "status"):
        table.add_column(column, justify="right" if column in ("#", "score") else "left")
    for s in rows:
        table.add_row(
            "" if s["rank"] is None else str(s["rank"]),
            s["code"],
            s["name"],
            "–" if s["score"] is None else f"{s['score']:.0f}",
            s["status"] if s["reason"] is None else f"{s['status']} ({s['reason']})",
        )
    console.print(table)


def _print_window(report: runner.RunReport) -> None:
    """Each strategy's buy-window candidates and what the final decision did with them."""
    label = "SIMULATED " if report.simulated else ""
    for name, w in report.window.items():
        compared = w.get("compare") or {}
        rows = [
            (c["instrument"], c["preliminary"], c["final"], "kept")
            for c in compared.get("kept", [])
        ]
        rows += [(c["instrument"], c["preliminary"], "", "dropped") for c in compared["lost"]]
        rows += [(c["instrument"], "", c["final"], "added") for c in compared["added"]]
        if not rows:
            continue
        at = str(w.get("as_of", ""))[11:16]
        table = Table(
            title=f"{label}{name}: the {at} decision vs the final one, {report.trade_date}",
            title_justify="left",
        )
        for column in ("instrument", f"grade at {at}", "final grade", ""):
            table.add_column(column)
        for instrument, early, late, what in rows[: 2 * TOP_ROWS]:
            table.add_row(instrument, early or "–", late or "–", what)
        console.print(table)


def _print_analyses(report: runner.RunReport) -> None:
    """The analysed candidates: news score, sentiment and catalyst per instrument."""
    for name, a in report.analysis.items():
        rows = a.get("rows") or []
        if not rows:
            continue
        table = Table(title=f"{name} candidates analysed ({a['model']})", title_justify="left")
        for column in ("instrument", "news", "sentiment", "items", "catalyst"):
            table.add_column(
                column, justify="right" if column in ("news", "sentiment", "items") else "left"
            )
        for r in rows:
            ok = r["status"] == "succeeded"
            table.add_row(
                r["instrument"],
                str(r["news_score"]) if ok else "failed",
                f"{r['sentiment']:+.2f}" if ok and r["sentiment"] is not None else "",
                str(r["news_count"]),
                (r["catalyst"] or "")[:70],
            )
        console.print(table)


def _figure(run: dict[str, Any], name: str) -> Any:
    found = (run.get("metrics") or {}).get(name)
    return found if found is not None else (run.get("summary") or {}).get(name)


def _print_backtests(report: runner.RunReport) -> None:
    """The run's closing section: each strategy's backtest metrics and its report path."""
    if not report.backtests:
        return
    names = list(report.backtests)
    table = Table(
        title=f"backtests over the stored history{' (SIMULATED data)' if report.simulated else ''}",
        title_justify="left",
    )
    table.add_column("metric")
    for name in names:
        table.add_column(name, justify="right")
    rows = ("total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown",
            "max_drawdown_days", "calmar", "win_rate", "profit_factor", "expectancy",
            "exposure", "trades", "open_trades")  # fmt: skip
    for metric in rows:
        table.add_row(
            metric,
            *(_fmt(metric, _figure(report.backtests[n], metric)) for n in names),
        )
    table.add_row(
        "final equity",
        *(
            f"{(report.backtests[n].get('summary') or {}).get('final_equity', 0):,.0f}"
            for n in names
        ),
    )
    console.print(table)
    for name in names:
        bt = report.backtests[name]
        if bt.get("report"):
            console.print(f"{name} report: {bt['report']}", soft_wrap=True)
        elif bt.get("error"):
            console.print(f"{name} backtest {bt['state']}: {bt['error']}", soft_wrap=True)


def _print_track(report: runner.RunReport) -> None:
    """The track record: every stored signal followed to its exit (quantbeat.track.update at
    the end of the run), honest about how many have closed yet."""
    found = report.track.get("report")
    if not found:
        return
    label = "SIMULATED " if found["simulated"] else ""
    states = found["states"]
    followed = sum(states.values())
    update = report.track.get("update") or {}
    console.print(f"[bold]{label}track record[/] (every stored signal, net of costs and tax)")
    if not followed:
        console.print("no signals stored yet: nothing to follow")
        return
    parts = ", ".join(f"{n} {state}" for state, n in states.items())
    console.print(
        f"{label}{followed} signals followed: {parts} (this run wrote {update.get('inserted', 0)} "
        f"new and {update.get('updated', 0)} changed outcomes)",
        soft_wrap=True,
    )
    history = report.signal_history
    if history.get("since"):
        made = ", ".join(
            f"{name} {s['inserted']:,} new of {s['signals']:,}"
            for name, s in history["strategies"].items()
        )
        console.print(
            f"{label}signal history {history['since']} … {history['until']}: each strategy's "
            f"past signals replayed without look-ahead by its backtest strategy ({made}; "
            "source backfill: not the full scan, no news or AI)",
            soft_wrap=True,
        )
    closed = states.get("closed", 0)
    if not closed:
        console.print(
            f"{label}none closed yet: quantbeat run scans one day ({report.trade_date}), so its "
            "signals are entered on that day and exit on the next sessions' bars; later runs "
            "(or beat's quantbeat.track.update after each collection) follow them to their exits",
            soft_wrap=True,
        )
        return
    console.print(kpi_table(found, f"{label}track record by strategy (closed signals)"))


def _print_portfolio(report: runner.RunReport) -> None:
    """The paper portfolio stepped at the end of the run: equity, return, drawdown, trades."""
    p = report.portfolio
    if not p.get("name"):
        return
    label = "SIMULATED " if p.get("simulated") or report.simulated else ""
    console.print(
        f"[bold]{label}paper portfolio {p['name']}[/] from {p['start_date']} through "
        f"{p['through'] or '–'}: equity {p['equity']:,.0f} KRW ({p['return'] * 100:+.2f}% on "
        f"{p['capital']:,.0f}), cash {p['cash']:,.0f}, max drawdown "
        f"{p['max_drawdown'] * 100:.2f}%, {p['entries']} entries, {p['exits']} exits, "
        f"{p['refused']} refused, {p['positions']} open; fees {p['fees']:,.0f}, "
        f"tax {p['tax']:,.0f} KRW",
        soft_wrap=True,
    )


def _print_crypto(report: runner.RunReport) -> None:
    """The crypto volatility check: each market's last hour in sigmas, and the verdict."""
    c = report.crypto
    if not c.get("markets"):
        return
    label = "SIMULATED " if c.get("simulated") else ""
    for market, r in c["markets"].items():
        if r.get("unusual") is None:
            verdict = f"no verdict: {r.get('reason')}"
            figures = ""
        else:
            announced = " — announced (crypto.volatility)" if r.get("announced") else ""
            verdict = f"UNUSUAL{announced}" if r["unusual"] else "usual"
            figures = (
                f"last hour {math.expm1(r['move']) * 100:+.2f}% ({r['move_sigma']:+.1f}σ), "
                f"realized {r['realized_sigma']:.1f}σ against {r['hourly_returns']} hourly "
                f"returns of the trailing 30 days, threshold {c['threshold']:g}σ: "
            )
        console.print(
            f"[bold]{label}crypto volatility[/] {market} at {c['at']}: {figures}{verdict}",
            soft_wrap=True,
            highlight=False,
        )


def _print_crypto_paper(report: runner.RunReport) -> None:
    """The hourly crypto signals of the run and the paper portfolio after them."""
    if not report.crypto_signals:
        return
    label = "SIMULATED " if report.crypto_signals[-1].get("simulated") else ""
    first, last = report.crypto_signals[0], report.crypto_signals[-1]
    for market in last.get("signals", {}):
        actions = [
            s["signals"].get(market, {}).get("action") or "none" for s in report.crypto_signals
        ]
        counts = ", ".join(f"{a} ×{actions.count(a)}" for a in dict.fromkeys(actions))
        final = last["signals"][market]
        flags = ", ".join(final.get("risk_flags") or []) or "none"
        detail = (
            f"last {final['action']} at {final['confidence']:.0%} confidence by "
            f"{final['analyst']} ({final['model']}), risk flags: {flags}"
            if final.get("action")
            else f"no signal: {final.get('reason')}"
        )
        console.print(
            f"[bold]{label}crypto signals[/] {market}, the hours ending {first['at']} … "
            f"{last['at']}: {counts}; {detail}",
            soft_wrap=True,
            highlight=False,
        )
    b = report.crypto_book
    if b:
        t = b["totals"]
        console.print(
            f"{crypto_book_line(b, label)}; orders in these hours: {t['placed']} placed, "
            f"{t['filled']} filled, {t['rejected']} rejected, {b['pending']} pending",
            soft_wrap=True,
            highlight=False,
        )


#: Lines of a message the report shows in full (the whole message is in the file).
MESSAGE_LINES = 14
#: Messages shown in full: what a trader acts on (the closing bet's lists, the day's summary);
#: the others show their subject line.
FULL_MESSAGES = ("signals.published", "daily.summary")


def _print_notifications(report: runner.RunReport) -> None:
    """The messages the run delivered to the file subscription, as a subscriber reads them
    (each message of simulated data says SIMULATED in its first line)."""
    n = report.notifications
    messages = n.get("messages")
    if messages is None:
        if n.get("ledger"):
            console.print(f"notifications: deliveries {n['ledger']}", highlight=False)
        return
    label = "SIMULATED " if report.simulated else ""
    console.print(
        f"[bold]{label}notifications[/] ({n.get('subscription')}, file channel: {n.get('file')}): "
        f"{len(messages)} message(s) this run"
        + (f", {n['open']} delivery(ies) still open" if n.get("open") else "")
        + " — `quantbeat notify add` sends them to Telegram, Slack, Discord, e-mail or a webhook",
        soft_wrap=True,
        highlight=False,
    )
    for message in messages:
        text = str(message.get("text") or "").splitlines()
        full = message.get("type") in FULL_MESSAGES and "VCP" not in (text[0] if text else "")
        if not full:
            console.print(f"  {text[0] if text else message.get('subject')}", highlight=False,
                          soft_wrap=True, markup=False)  # fmt: skip
            continue
        shown = text[:MESSAGE_LINES] + (["…"] if len(text) > MESSAGE_LINES else [])
        for i, line in enumerate(shown):
            console.print(("  " if i == 0 else "    ") + line, highlight=False, soft_wrap=True,
                          markup=False)  # fmt: skip
