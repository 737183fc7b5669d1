"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the API returns is one JSON object: ``type`` (a relative URI naming the kind of
problem), ``title``, ``status``, ``detail`` (one sentence naming the bad value and where it
came from), ``instance`` (the request path), ``request_id`` and, for bad input, ``errors``: one
item per bad field, ``{"field": "query.limit", "message": …}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from quant.errors import (
    ConfigError,
    NotFound,
    PermanentError,
    QuantbeatError,
    TransientError,
    ValidationError,
)
from quantbeat.infra.masking import mask_text
from quantbeat.services.api_keys import KeyRefused

log = structlog.get_logger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


class FieldProblem(BaseModel):
    """One bad field: where it is (``query.limit``, ``body.items.3.instrument``) and what is
    wrong with it."""

    field: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    type: str = Field(description="Relative URI of the kind of problem")
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldProblem] | None = None


class ApiProblem(Exception):
    """Raised by a route to answer with a problem (``headers``: e.g. ``Retry-After``)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        errors: list[FieldProblem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug
        self.errors = errors
        self.headers = headers or {}


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    errors: list[FieldProblem] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The problem response for ``request``."""
    title = _TITLES.get(status, "Error")
    body = Problem(
        type=f"/problems/{slug or title.lower().replace(' ', '-')}",
        title=title,
        status=status,
        detail=mask_text(detail),
        instance=request.url.path,
        request_id=getattr(request.state, "request_id", None),
        errors=None
        if errors is None
        else [FieldProblem(field=e.field, message=mask_text(e.message)) for e in errors],
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc)


#: FastAPI's 400 when a body cannot be read (JSON that is not UTF-8, a broken form).
_FASTAPI_BODY_ERROR = "There was an error parsing the body"


def _unreadable_body(cause: BaseException | None) -> str:
    """Why FastAPI could not read a body, in a sentence."""
    if isinstance(cause, UnicodeDecodeError):
        return (
            f"not UTF-8 text (byte 0x{cause.object[cause.start]:02x} at offset "
            f"{cause.start}); send it encoded as UTF-8"
        )
    reason = f" ({type(cause).__name__})" if cause is not None else ""
    return f"could not be parsed{reason}"


def _validation_problems(exc: RequestValidationError) -> list[FieldProblem]:
    out = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            # FastAPI's loc is ("body", <character offset>) and its input {}: say what is
            # wrong and where instead.
            loc = tuple(error.get("loc", ()))
            offset = loc[1] if len(loc) > 1 else 0
            reason = str((error.get("ctx") or {}).get("error", "invalid JSON"))
            message = f"not valid JSON: {reason} at character {offset}"
            out.append(FieldProblem(field="body", message=message))
            continue
        field = _location(error.get("loc", ()))
        message = str(error.get("msg", "invalid"))
        if "input" in error and error.get("type") != "missing":
            shown = repr(error["input"])
            message = f"{message} (got {shown[:80]}{'…' if len(shown) > 80 else ''})"
        out.append(FieldProblem(field=field, message=message))
    return out


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` as a problem, and document problem bodies under their
    media type (:func:`document_problems`)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_problems(exc)
        first = errors[0] if errors else FieldProblem(field="request", message="invalid")
        return problem_response(
            request, 422, f"{first.field}: {first.message}", slug="invalid-input", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no resource at {request.url.path}"
        if exc.status_code == 400 and detail == _FASTAPI_BODY_ERROR:
            # A body that is not UTF-8 is bad input like one that is not JSON: 422 naming it.
            detail = _unreadable_body(exc.__cause__)
            return problem_response(
                request,
                422,
                f"body: {detail}",
                slug="invalid-input",
                errors=[FieldProblem(field="body", message=detail)],
            )
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
            headers["Allow"] = allowed_methods(request) or headers.get("Allow", "")
        return problem_response(request, exc.status_code, detail, headers=headers or None)

    @app.exception_handler(ApiProblem)
    async def _problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem_response(
            request, exc.status, exc.detail, slug=exc.slug, errors=exc.errors, headers=exc.headers
        )

    @app.exception_handler(QuantbeatError)
    async def _domain(request: Request, exc: QuantbeatError) -> JSONResponse:
        return quantbeat_problem(request, exc)

    # An exception no handler answers becomes a 500 problem in
    # quantbeat.api.middleware.RequestContext, which keeps the request id on it.


_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def allowed_methods(request: Request) -> str:
    """Every method the OpenAPI document lists at the request's path, for ``Allow`` (a path
    served by several routes, one per method, is one resource: Starlette's own 405 names
    only the first route's methods); ``""`` for a path it does not list.

    As OpenAPI matches paths, a concrete template wins over templated ones: the methods of
    ``/indicators/batch`` (POST), not also those of ``/indicators/{instrument}`` (GET) —
    the templates matching with the fewest parameters are the resource."""
    path = request.url.path
    matches: list[tuple[int, set[str]]] = []
    for template, operations in request.app.openapi().get("paths", {}).items():
        regex, _, convertors = compile_path(template)
        if regex.match(path):
            matches.append((len(convertors), {m.upper() for m in operations if m in _METHODS}))
    if not matches:
        return ""
    fewest = min(count for count, _ in matches)
    methods = set().union(*(found for count, found in matches if count == fewest))
    return ", ".join(sorted(methods))


def document_problems(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (an OpenAPI document) with every problem response's body schema under
    ``application/problem+json``, the type the API sends, and not under
    ``application/json``, where FastAPI puts a response's ``model`` (a response that gives
    the problem type a schema of its own keeps both). Changes it in place; returns it."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                problem = content.get(PROBLEM_MEDIA_TYPE)
                if (
                    problem is not None
                    and "schema" not in problem
                    and "application/json" in content
                ):
                    content[PROBLEM_MEDIA_TYPE] = {**content.pop("application/json"), **problem}
    return document


def quantbeat_problem(request: Request, exc: QuantbeatError) -> JSONResponse:
    """The problem a domain error becomes: bad input 422 (its field named), unknown 404, a
    refused key 401, a dependency down 503 with ``Retry-After``, a permanent failure 409."""
    if isinstance(exc, KeyRefused):
        return problem_response(
            request,
            401,
            exc.reason,
            slug="unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="quantbeat"'},
        )
    if isinstance(exc, ValidationError):
        field = exc.field or "request"
        detail = str(exc)
        return problem_response(
            request,
            422,
            detail,
            slug="invalid-input",
            errors=[FieldProblem(field=field, message=detail)],
        )
    if isinstance(exc, NotFound):
        return problem_response(request, 404, str(exc), slug="not-found")
    if isinstance(exc, TransientError):
        retry = max(1, round(exc.retry_after or 5))
        return problem_response(
            request,
            503,
            str(exc),
            slug="unavailable",
            headers={"Retry-After": str(retry)},
        )
    if isinstance(exc, ConfigError):
        return problem_response(request, 503, str(exc), slug="not-configured")
    if isinstance(exc, PermanentError):
        return problem_response(request, 409, str(exc), slug="conflict")
    return problem_response(request, 500, str(exc), slug="internal-error")


@contextmanager
def fields_as(places: Mapping[str, str]) -> Iterator[None]:
    """Within the block, a :class:`~quant.errors.ValidationError` naming a service's field is
    raised again naming where the request carried it: ``places`` maps a field
    (``"strategy"``) or a prefix ending in ``.`` (``"request."``) to the request's place
    (``"query.strategy"``, ``"query."``); an exact field wins over prefixes, the longest
    prefix over shorter ones. A dotted name is renamed in the message too. Other errors pass
    unchanged."""
    try:
        yield
    except ValidationError as exc:
        match = None if exc.field is None else _place(exc.field, places)
        if exc.field is None or match is None:
            raise
        old, new = match
        renamed = new + exc.field[len(old) :]
        message = str(exc).replace(old, new) if "." in old else str(exc)
        raise ValidationError(message, field=renamed, value=exc.value) from None


def _place(field: str, places: Mapping[str, str]) -> tuple[str, str] | None:
    """The ``(name, place)`` of ``places`` that ``field`` is, or starts with."""
    if field in places:
        return field, places[field]
    for prefix in sorted(places, key=len, reverse=True):
        if prefix.endswith(".") and field.startswith(prefix):
            return prefix, places[prefix]
    return None


def problem_docs(**descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of a route's own problem statuses (beyond
    :data:`PROBLEM_RESPONSES`), e.g. ``problem_docs(s404="no such run")``: each a problem
    body with its description."""
    return {int(key.removeprefix("s")): _problem_doc(text) for key, text in descriptions.items()}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The problem responses of ``statuses`` for the OpenAPI document (a route's
    ``responses``, e.g. ``problem_responses(404)`` where a resource may be unknown)."""
    return {status: _problem_doc(title) for status, title in _TITLES.items() if status in statuses}


def _problem_doc(description: str) -> dict[str, Any]:
    return {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": description}


#: The problem responses every route may give, for the OpenAPI document.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = problem_responses(401, 403, 422, 429, 503)
