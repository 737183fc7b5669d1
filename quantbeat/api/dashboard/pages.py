"""The dashboard's pages: server-rendered HTML (Jinja2, autoescaped) over the services the
JSON API uses — the same read functions, so a page and its API route show the same numbers
(signals: :mod:`quantbeat.services.signal_reads`; the closing bet:
:func:`quantbeat.services.closing_window.closing_bet_decision`; the track record:
:func:`quantbeat.services.track_record.report`; data status:
:func:`quantbeat.services.data_status.data_status`).

Every page needs the scope ``read`` (submitting a backtest ``run``; jobs and dead letters on
the data page ``admin``): the key comes from the HttpOnly cookie :data:`COOKIE` set by the
sign-in form (or a header, like the API); without a usable key a page redirects to
``/login``, which says why. In open mode no key is needed. Every POST form carries the
per-browser token of the :data:`CSRF_COOKIE` cookie in a hidden field (double submit; the
cookies are ``SameSite=Strict``, and ``Secure`` over https or with
``QUANTBEAT_ENV=production``); a POST whose token does not match is refused (403).

Pages answer (as every response: :mod:`quantbeat.api.middleware`) with ``Server-Timing:
app;dur=<ms>`` (the server-side time), and with a strict
Content-Security-Policy: scripts, styles and frames from this origin only.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.concurrency import run_in_threadpool

from db.backtests import FINAL_STATES
from quant.backtest.strategies import STRATEGIES
from quant.errors import NotFound, ValidationError
from quantbeat.api.dashboard import i18n, svg
from quantbeat.api.problems import ApiProblem
from quantbeat.api.security import COOKIE, Reader, require
from quantbeat.services import (
    backtests,
    closing_window,
    dlq,
    jobs,
    market,
    overview,
    portfolio,
    scans,
    signal_reads,
    track_record,
)
from quantbeat.services.announce import is_simulated, levels
from quantbeat.services.api_keys import KeyRefused, Principal, authenticate
from quantbeat.services.args import parse_date
from quantbeat.services.data_status import data_status
from quantbeat.services.health import check_signals, check_snapshots, run_checks

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
CSRF_COOKIE = "qb_csrf"
CSRF_FIELD = "csrf"
#: Largest form body read (bytes): a backtest's instrument list fits with room.
MAX_FORM_BYTES = 256 * 1024
#: How long (seconds) the data page reuses one :func:`~quantbeat.services.data_status.
#: data_status` report (per app, i.e. per API process): the report reads every instrument's
#: dates of its 260-session gap window for candles and flows (about a second for 2,500
#: instruments) and changes a few times a day, so a reload within this time shows the same
#: report (its ``checked_at`` says when it was made). The API's ``/data/status`` is not
#: cached.
DATA_STATUS_CACHE_SECONDS = 60.0
#: Closing-bet days offered by the date picker.
CLOSING_DAYS = 60
NAV = (
    ("overview", "/"),
    ("signals", "/signals"),
    ("closing", "/closing-bet"),
    ("track", "/track-record"),
    ("backtests", "/backtests"),
    ("data", "/data"),
)
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-src 'self'; frame-ancestors 'none'; form-action 'self'; "
        "base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

router = APIRouter(include_in_schema=False)


# --- formatting -----------------------------------------------------------------------------
def _num(value: Any, digits: int = 0) -> str:
    if value is None or isinstance(value, bool):
        return "–"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if number != number:
        return "–"
    return f"{number:,.{digits}f}"


def _pct(value: Any, digits: int = 1) -> str:
    """A fraction as a percentage (0.123 → 12.3%)."""
    if value is None or isinstance(value, bool):
        return "–"
    return f"{float(value) * 100:+.{digits}f}%"


def _share(value: Any, digits: int = 1) -> str:
    """A fraction that is a share (a win rate) as a percentage without a sign."""
    if value is None or isinstance(value, bool):
        return "–"
    return f"{float(value) * 100:.{digits}f}%"


def _signed(value: Any, digits: int = 2) -> str:
    """A percentage value with its sign (1.234 → +1.23%)."""
    if value is None:
        return "–"
    return f"{float(value):+.{digits}f}%"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "xml"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["pct"] = _pct
    env.filters["signed"] = _signed
    env.filters["share"] = _share
    return env


templates = Jinja2Templates(env=_environment())


# --- requests ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ctx:
    """What a page builder gets: the request, who asks, and the labels of its language."""

    request: Request
    principal: Principal
    lang: str
    t: Callable[[str], str]

    def when(self, iso: str | None) -> str:
        """An ISO time as ``YYYY-MM-DD HH:MM`` in ``QUANTBEAT_TIMEZONE`` ("–" for none)."""
        if not iso:
            return "–"
        moment = dt.datetime.fromisoformat(iso)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        zone = ZoneInfo(self.request.app.state.settings.timezone)
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _lang(request: Request) -> str:
    return i18n.pick(request.query_params.get("lang"), request.cookies.get(i18n.LANG_COOKIE))


def _secure(request: Request) -> bool:
    """Whether cookies are sent ``Secure``: over https, and always with
    ``QUANTBEAT_ENV=production`` — behind the TLS proxy the app itself sees plain http."""
    return request.url.scheme == "https" or request.app.state.settings.env == "production"


def _csrf_token(request: Request) -> tuple[str, bool]:
    """This browser's CSRF token, and whether it is new (to be set as a cookie)."""
    found = request.cookies.get(CSRF_COOKIE, "")
    if re.fullmatch(r"[A-Za-z0-9_-]{32,64}", found):
        return found, False
    return secrets.token_urlsafe(32), True


def _csrf_ok(request: Request, form: dict[str, str]) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = form.get(CSRF_FIELD, "")
    return bool(cookie) and bool(sent) and hmac.compare_digest(cookie, sent)


async def _form(request: Request) -> dict[str, str]:
    """The POSTed form (``application/x-www-form-urlencoded``), last value of each field.

    A body announced (``Content-Length``) or found over :data:`MAX_FORM_BYTES` is refused
    before (or as soon as) that much is read: nothing beyond the limit is buffered.

    Raises:
        ApiProblem: 415 for another content type, 400 for a ``Content-Length`` that is not a
            number, 413 over :data:`MAX_FORM_BYTES`.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise ApiProblem(415, f"a form is sent as application/x-www-form-urlencoded, not {kind!r}")
    too_big = ApiProblem(413, f"the form is over {MAX_FORM_BYTES} bytes")
    announced = request.headers.get("content-length")
    if announced is not None:
        if not announced.strip().isdigit():
            raise ApiProblem(400, f"header Content-Length: {announced[:40]!r} is not a number")
        if int(announced) > MAX_FORM_BYTES:
            raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise too_big
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=50)
    return {key: values[-1] for key, values in parsed.items()}


def _safe_next(value: str | None) -> str:
    """A local path to return to after signing in (anything else: ``/``)."""
    if value and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return "/"


def _here(request: Request) -> str:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return request.url.path + (f"?{urlencode(query)}" if query else "")


def _lang_url(request: Request, lang: str) -> str:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return f"{request.url.path}?{urlencode([*query, ('lang', lang)])}"


def _guard(request: Request, scope: str) -> Principal | Response:
    """The principal allowed ``scope``, or the response that refuses the request: a
    redirect to ``/login`` without a usable key, an error page otherwise (403, 429)."""
    try:
        return require(scope)(request)
    except ApiProblem as exc:
        if exc.status == 401:
            target = "/login?" + urlencode({"next": _here(request)})
            return RedirectResponse(target, status_code=303)
        return _error(request, exc.status, exc.detail, headers=exc.headers)


def _render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    principal: Principal | None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render ``template`` with the frame's context (labels, navigation, banner, token)."""
    lang = _lang(request)
    token, new_token = _csrf_token(request)
    full = {
        "t": i18n.translator(lang),
        "lang": lang,
        "langs": i18n.LANGS,
        "nav": NAV,
        "active": "",
        "principal": principal,
        "open_mode": bool(request.app.state.open),
        "csrf": token,
        "csrf_field": CSRF_FIELD,
        "lang_url": lambda code: _lang_url(request, code),
        **context,
    }
    # Any simulated row shown, or a deployment on the simulated market: the banner.
    full["simulated"] = bool(context.get("simulated")) or is_simulated()
    response = templates.TemplateResponse(request, template, full, status_code=status)
    secure = _secure(request)
    if request.query_params.get("lang") in i18n.LANGS:
        response.set_cookie(
            i18n.LANG_COOKIE, lang, max_age=365 * 86_400, samesite="lax", secure=secure
        )
    if new_token:
        response.set_cookie(
            CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/"
        )
    for name, value in {**SECURITY_HEADERS, **(headers or {})}.items():
        response.headers[name] = value
    return response


def _error(
    request: Request,
    status: int,
    message: str,
    *,
    principal: Principal | None = None,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    return _render(
        request,
        "error.html",
        {"title_key": "error.title", "status": status, "message": message},
        principal=principal,
        status=status,
        headers=headers,
    )


def _page(
    request: Request, template: str, build: Callable[[Ctx], dict[str, Any]], scope: str = "read"
) -> Response:
    """Guard, build the page's context, render; bad input 422 and unknown things 404 as
    error pages naming them. A context may set the page's ``http_status`` (default 200)."""
    found = _guard(request, scope)
    if isinstance(found, Response):
        return found
    lang = _lang(request)
    ctx = Ctx(request, found, lang, i18n.translator(lang))
    try:
        context = build(ctx)
    except ValidationError as exc:
        return _error(request, 422, str(exc), principal=found)
    except NotFound as exc:
        return _error(request, 404, str(exc), principal=found)
    status = int(context.pop("http_status", 200))
    return _render(request, template, context, principal=found, status=status)


def _date_param(request: Request, name: str = "date") -> dt.date | None:
    """The ISO date of query parameter ``name`` (empty: ``None``).

    Raises:
        quant.errors.ValidationError: not a YYYY-MM-DD date (field ``query.<name>``).
    """
    raw = request.query_params.get(name, "").strip()
    return parse_date(raw, field=f"query.{name}") if raw else None


def _has_route(app: FastAPI, path: str) -> bool:
    return any(getattr(route, "path", None) == path for route in app.routes)


def _label_key(kind: str, value: str | None) -> str:
    """The label of a gate colour or sector status (``<kind>.UNKNOWN`` for others)."""
    key = f"{kind}.{(value or '').upper()}"
    return key if key in i18n.LABELS[i18n.DEFAULT_LANG] else f"{kind}.UNKNOWN"


# --- overview ---------------------------------------------------------------------------------
def _overview(ctx: Ctx) -> dict[str, Any]:
    try:
        gate: dict[str, Any] | None = market.gate_report()
    except NotFound:
        gate = None
    ranking = (gate or {}).get("sectors") or {}
    sectors = [
        {**s, "status_label": ctx.t(_label_key("status", s.get("status")))}
        for s in ranking.get("sectors") or []
    ]
    indices = overview.reference_latest()
    counts = overview.today_counts()
    colour = (gate or {}).get("color") or "UNKNOWN"
    label_key = _label_key("color", colour)
    return {
        "title_key": "title.overview",
        "active": "overview",
        "gate": gate,
        "gate_label": ctx.t(label_key),
        "gauge": svg.gauge(gate["score"], colour, label=ctx.t(label_key)) if gate else None,
        "gate_when": ctx.when(gate["as_of"]) if gate else "",
        "sectors": sectors,
        "strongest": ranking.get("strongest"),
        "weakest": ranking.get("weakest"),
        "sector_bars": svg.bar_chart(
            [(s["name"], s.get("score"), s.get("status")) for s in sectors],
            label=ctx.t("sectors.title"),
        )
        if sectors
        else None,
        "indices": indices,
        "counts": counts,
        "simulated": bool(gate and gate["simulated"]) or any(i["simulated"] for i in indices),
    }


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request) -> Response:
    return _page(request, "overview.html", _overview)


# --- signals ---------------------------------------------------------------------------------
def _signals(ctx: Ctx) -> dict[str, Any]:
    """The VCP decision as the API reads it: the latest completed run's ranked signals
    (``/api/v1/signals/latest``), or a chosen day's (:func:`signal_reads.day_signals`), each
    with the stop of its exit plan (:func:`~quantbeat.services.announce.levels`, as
    ``/api/v1/signals/{id}`` gives it) and its run's coverage (``/api/v1/scans/{id}``)."""
    day = _date_param(ctx.request)
    if day is None:
        (decision,) = signal_reads.latest_signals(strategy="vcp")["strategies"]
    else:
        decision = signal_reads.day_signals("vcp", day, field_prefix="query.")
    items = [
        {**item, "stop": levels(item["strategy"], item["entry_price"])[0]}
        for item in decision["signals"]
    ]
    run = scans.scan_run(decision["run_id"]) if decision["run_id"] is not None else None
    return {
        "title_key": "title.signals",
        "active": "signals",
        "decision": decision,
        "items": items,
        "run": run,
        "dates": overview.signal_dates("vcp"),
        "chosen": day.isoformat() if day else "",
        "run_finished": ctx.when(decision["finished_at"]),
        "simulated": decision["simulated"],
    }


@router.get("/signals", response_class=HTMLResponse)
def signals_page(request: Request) -> Response:
    return _page(request, "signals.html", _signals)


# --- the closing bet --------------------------------------------------------------------------
def _closing(ctx: Ctx) -> dict[str, Any]:
    """The closing bet's grade cards exactly as ``/api/v1/closing-bet/{date}`` gives them
    (:func:`closing_window.closing_bet_decision`: the latest completed run of the day and
    phase, stops and targets of the exit plan, the gate as of the decision), each with the
    titles of the news its analysis read (:func:`overview.news_titles`). A day or phase
    asked for that holds no decision renders the page with the reason (404); with nothing
    stored at all the page says "not collected yet" (200)."""
    request = ctx.request
    day = _date_param(request)
    asked = request.query_params.get("phase", "").strip() or None
    dates = closing_window.closing_bet_dates(CLOSING_DAYS)
    base: dict[str, Any] = {
        "title_key": "title.closing",
        "active": "closing",
        "dates": dates,
        "day": day.isoformat() if day else "",
        "phase": asked or "final",
    }
    try:
        decision = closing_window.closing_bet_decision(day, asked, field_prefix="query.")
    except NotFound as exc:
        asked_something = day is not None or asked is not None
        return {
            **base,
            "decision": None,
            "missing": str(exc) if asked_something else "",
            "http_status": 404 if asked_something else 200,
            "simulated": False,
        }
    trade_date = dt.date.fromisoformat(decision["trade_date"])
    titles = overview.news_titles(
        trade_date, [c["signal_id"] for c in decision["cards"] if c["signal_id"] is not None]
    )
    cards = [{**c, "titles": titles.get(c["signal_id"], [])} for c in decision["cards"]]
    gate = decision["gate"]
    colour = (gate or {}).get("color") or "UNKNOWN"
    label_key = _label_key("color", colour)
    return {
        **base,
        "decision": decision,
        "missing": "",
        "cards": cards,
        "day": decision["trade_date"],
        "phase": decision["phase"],
        "decided_at": ctx.when(decision["decided_at"]),
        "gate": gate,
        "gate_label": ctx.t(label_key),
        "gauge": svg.gauge(gate["score"], colour, label=ctx.t(label_key)) if gate else None,
        "gate_when": ctx.when(gate["as_of"]) if gate else "",
        "simulated": decision["simulated"]
        or any(t["simulated"] for c in cards for t in c["titles"]),
    }


@router.get("/closing-bet", response_class=HTMLResponse)
def closing_page(request: Request) -> Response:
    return _page(request, "closing_bet.html", _closing)


# --- the track record -------------------------------------------------------------------------
def _track(ctx: Ctx) -> dict[str, Any]:
    """The API's ``/api/v1/track-record``: KPIs by strategy group and, within each, by grade
    (:func:`track_record.report`), beside the paper portfolios' equity curves."""
    report = track_record.report(by="strategy", grades=True)
    books = []
    for book in portfolio.list_portfolios():
        days = portfolio.history(book["name"])
        books.append(
            {
                **book,
                "chart": svg.line_chart(
                    [(d["trade_date"], d["equity"]) for d in days],
                    label=f"{ctx.t('portfolio.equity')} {book['name']}",
                    baseline=book["capital"],
                ),
                "days": len(days),
            }
        )
    return {
        "title_key": "title.track",
        "active": "track",
        "report": report,
        "grades": report["grades"],
        "portfolios": books,
        "simulated": report["simulated"] or any(b["simulated"] for b in books),
    }


@router.get("/track-record", response_class=HTMLResponse)
def track_page(request: Request) -> Response:
    return _page(request, "track_record.html", _track)


# --- backtests --------------------------------------------------------------------------------
def _strategies() -> list[dict[str, Any]]:
    return [
        {"name": s.name, "title": s.title, "defaults": json.dumps(s.defaults, ensure_ascii=False)}
        for s in STRATEGIES.values()
    ]


def _default_form() -> dict[str, str]:
    today = dt.date.today()
    return {
        "strategy": "sma_crossover",
        "instruments": "",
        "start": (today - dt.timedelta(days=365)).isoformat(),
        "end": today.isoformat(),
        "initial_cash": "100000000",
        "params": "",
        "label": "",
    }


def _backtests(ctx: Ctx, form: dict[str, str] | None = None, error: str = "") -> dict[str, Any]:
    runs = backtests.list_backtests(limit=30)
    for run in runs:
        run["submitted"] = ctx.when(run["submitted_at"])
    return {
        "title_key": "title.backtests",
        "active": "backtests",
        "runs": runs,
        "strategies": _strategies(),
        "can_run": ctx.principal.allows("run"),
        "form": form or _default_form(),
        "form_error": error,
        "simulated": False,
    }


@router.get("/backtests", response_class=HTMLResponse)
def backtests_page(request: Request) -> Response:
    return _page(request, "backtests.html", _backtests)


def _spec(form: dict[str, str]) -> dict[str, Any]:
    """The backtest spec the form describes.

    Raises:
        quant.errors.ValidationError: initial cash that is not a number, parameters that
            are not a JSON object (each naming the field and value).
    """
    spec: dict[str, Any] = {
        "strategy": form.get("strategy", "").strip(),
        "instruments": [p for p in re.split(r"[\s,]+", form.get("instruments", "")) if p],
        "start": form.get("start", "").strip(),
        "end": form.get("end", "").strip(),
    }
    cash = form.get("initial_cash", "").replace(",", "").strip()
    if cash:
        try:
            spec["initial_cash"] = float(cash)
        except ValueError:
            raise ValidationError(
                f"initial_cash: {cash[:40]!r} is not a number of KRW",
                field="initial_cash",
                value=cash[:40],
            ) from None
    raw = form.get("params", "").strip()
    if raw:
        try:
            params = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"params: not JSON ({exc.msg} at character {exc.pos})",
                field="params",
                value=raw[:80],
            ) from None
        if not isinstance(params, dict):
            raise ValidationError(
                'params: a JSON object is needed, e.g. {"fast": 10}',
                field="params",
                value=raw[:80],
            )
        spec["params"] = params
    label = form.get("label", "").strip()
    if label:
        spec["label"] = label
    return spec


@router.post("/backtests", response_class=HTMLResponse)
async def submit_backtest(request: Request) -> Response:
    """Submit the form's backtest (scope ``run``) and redirect to its page; a refused spec
    renders the form again with the reason (422)."""
    form = await _form(request)
    found = await run_in_threadpool(_guard, request, "run")
    if isinstance(found, Response):
        return found
    if not _csrf_ok(request, form):
        return _error(request, 403, i18n.translator(_lang(request))("csrf.refused"),
                      principal=found)  # fmt: skip
    fields = {k: form.get(k, "") for k in _default_form()}
    lang = _lang(request)
    ctx = Ctx(request, found, lang, i18n.translator(lang))
    try:
        run_id = await run_in_threadpool(
            lambda: backtests.submit_backtest(_spec(fields), origin="dashboard")
        )
    except ValidationError as exc:
        context = await run_in_threadpool(_backtests, ctx, fields, str(exc))
        return _render(request, "backtests.html", context, principal=found, status=422)
    return RedirectResponse(f"/backtests/{run_id}", status_code=303)


def _backtest(ctx: Ctx) -> dict[str, Any]:
    run_id = ctx.request.path_params["run_id"]
    run = backtests.status(run_id)
    final = run["state"] in FINAL_STATES
    chart = None
    if run["state"] == "completed":
        curve = overview.backtest_equity(run_id)
        initial = (run.get("summary") or {}).get("initial_cash")
        chart = svg.line_chart(curve, label=ctx.t("bt.equity"), baseline=initial)
    app = ctx.request.app
    base = f"/api/v1/backtests/{run_id}"
    return {
        "title_key": "title.backtest",
        "active": "backtests",
        "run": run,
        "live": backtests.progress_payload(run),
        "final": final,
        "chart": chart,
        "metrics": run.get("metrics") or {},
        "submitted": ctx.when(run["submitted_at"]),
        "report_html": f"{base}/report?format=html",
        "report_png": f"{base}/report?format=png",
        "report_csv": f"{base}/report?format=csv",
        "embed": _has_route(app, "/api/v1/backtests/{run_id}/report"),
        "events_url": f"{base}/events"
        if _has_route(app, "/api/v1/backtests/{run_id}/events")
        else "",
        "poll_url": f"/backtests/{run_id}/progress",
        "state_labels": {s: ctx.t(f"state.{s}") for s in ("queued", "running", *FINAL_STATES)},
        "simulated": is_simulated(),
    }


@router.get("/backtests/{run_id}", response_class=HTMLResponse)
def backtest_page(request: Request, run_id: str) -> Response:
    return _page(request, "backtest.html", _backtest)


@router.get("/backtests/{run_id}/progress")
def backtest_progress(run_id: str, _: Reader) -> JSONResponse:
    """The run's ``{"state", "progress" (0–100), "eta_s"}`` for the page's polling, the
    figures of the API's server-sent events (:func:`backtests.progress_payload`), read from
    the live state while the run is queued or running (no database work) and from
    PostgreSQL otherwise (:func:`backtests.live_progress`). 404 for an unknown run."""
    payload = backtests.progress_payload(backtests.live_progress(run_id))
    return JSONResponse(payload, headers={"Cache-Control": "no-store"})


# --- data status ------------------------------------------------------------------------------
_status_lock = threading.Lock()


def _data_status(app: FastAPI) -> dict[str, Any]:
    """:func:`~quantbeat.services.data_status.data_status` (the API's ``/data/status`` with
    its defaults), reused for :data:`DATA_STATUS_CACHE_SECONDS` by this app."""
    now = time.monotonic()
    with _status_lock:
        hit: tuple[float, dict[str, Any]] | None = getattr(app.state, "dashboard_status", None)
    if hit is not None and now - hit[0] < DATA_STATUS_CACHE_SECONDS:
        return hit[1]
    report = data_status()
    with _status_lock:
        app.state.dashboard_status = (now, report)
    return report


def _day_or_moment(ctx: Ctx, iso: str | None) -> str | None:
    """A stored day as is, a stored moment in local time (:meth:`Ctx.when`)."""
    return ctx.when(iso) if iso and "T" in iso else iso


def _data(ctx: Ctx) -> dict[str, Any]:
    """The API's data status (freshness, the latest day of every dataset, gaps, job counts),
    the health checks of the scans and intraday snapshots, and for an admin key the recent
    jobs and dead letters (their errors masked by the services)."""
    status = _data_status(ctx.request.app)
    checks = run_checks(
        [("signals", check_signals), ("snapshots", check_snapshots)],
        timeout=5.0,
        settings=ctx.request.app.state.settings,
    )
    admin = ctx.principal.allows("admin")
    recent = jobs.list_jobs(limit=15) if admin else []
    for job in recent:
        job["started"] = ctx.when(job["started_at"])
    letters = dlq.list_letters(limit=15) if admin else []
    for letter in letters:
        letter["seen"] = ctx.when(letter["last_seen"])
    fresh = status["freshness"]
    return {
        "title_key": "title.data",
        "active": "data",
        "status": status,
        "checked": ctx.when(status["checked_at"]),
        "fresh": fresh,
        "datasets": [
            (key, fresh["details"][key])
            for key in ("candles", "flows", "crypto")
            if key in fresh["details"]
        ],
        "stored": [
            (name, _day_or_moment(ctx, d["latest"]), d["simulated"])
            for name, d in status["latest"].items()
        ],
        "gaps": status["gaps"],
        "scans": checks.component("signals"),
        "snapshots": checks.component("snapshots"),
        "admin": admin,
        "jobs": recent,
        "letters": letters,
        "simulated": status["simulated"],
    }


@router.get("/data", response_class=HTMLResponse)
def data_page(request: Request) -> Response:
    return _page(request, "data.html", _data)


# --- signing in and out -----------------------------------------------------------------------
def _login_context(request: Request, reason: str = "") -> dict[str, Any]:
    token = request.cookies.get(COOKIE)
    if not reason and token:
        try:
            authenticate(token)
        except KeyRefused as exc:
            reason = exc.reason
    return {
        "title_key": "title.login",
        "active": "",
        "reason": reason,
        "next": _safe_next(request.query_params.get("next")),
        "signed_out": request.query_params.get("out") == "1",
        "asked": bool(request.query_params.get("next")),
    }


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    """The sign-in form; says why the key in the cookie (if any) is refused."""
    return _render(request, "login.html", _login_context(request), principal=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the pasted key and keep it in the HttpOnly cookie; a refused key renders the
    form again with the reason (401); a failed CSRF check 403."""
    form = await _form(request)
    if not _csrf_ok(request, form):
        return _error(request, 403, i18n.translator(_lang(request))("csrf.refused"))
    key = form.get("key", "").strip()
    try:
        await run_in_threadpool(authenticate, key)
    except KeyRefused as exc:
        context = await run_in_threadpool(_login_context, request, exc.reason)
        context["next"] = _safe_next(form.get("next"))
        return _render(request, "login.html", context, principal=None, status=401)
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    response.set_cookie(
        COOKIE, key, httponly=True, samesite="strict", secure=_secure(request), path="/"
    )
    return response


@router.get("/logout", response_class=HTMLResponse)
def logout_page(request: Request) -> Response:
    """A confirmation form (signing out is a POST)."""
    return _render(
        request, "logout.html", {"title_key": "title.logout", "active": ""}, principal=None
    )


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Forget the key cookie (CSRF-checked) and go to the sign-in page."""
    form = await _form(request)
    if not _csrf_ok(request, form):
        return _error(request, 403, i18n.translator(_lang(request))("csrf.refused"))
    response = RedirectResponse("/login?out=1", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                           secure=_secure(request))  # fmt: skip
    return response
