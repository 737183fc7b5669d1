"""The dead-letter queue: what ``quantbeat dlq list|show|replay|purge`` and the API's
``/dead-letters`` do.

Dead letters (table ``dead_letters``) are written by the base task class
(:mod:`workers.base`: retries exhausted, validation and permanent errors, time-outs, poisoned
messages, …) and by the worker's consumer (:mod:`workers.consumer`: unknown tasks, undecodable
and invalid messages). Each holds the masked payload, the reason and the error.

**Replay** re-sends a letter's task by name with its stored arguments, as a new task (new task
id, routed like any other send) and records the new id, the time and one more replay on the
letter, which stays for the record (``purge`` removes letters). A letter is refused — with the
letter, its task and why — when:

* its task is not registered in the worker app (an ``unknown_task`` letter, a renamed task);
* it holds no arguments (an undecodable or invalid message);
* its stored arguments contain the mask ``***``: secrets were masked when the letter was
  stored, and replaying would send the mask in their place. Such a task must be re-submitted
  with the real values.

The public functions open their own session (one transaction each) and return JSON-ready
rows, so every entry point (the CLI, later the HTTP API) only formats them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from db.engine import session_scope
from db.jobs import (
    contains_escape,
    get_dead_letter,
    list_dead_letters,
    mark_replayed,
    purge_dead_letters,
)
from db.models import DeadLetter
from db.store import iso_utc
from quant.errors import NotFound, PermanentError, ValidationError
from quantbeat.infra.masking import MASK, mask_text
from workers.app import app as worker_app


def letter_summary(letter: DeadLetter) -> dict[str, Any]:
    """The columns ``dlq list`` shows, JSON-ready (times as ISO 8601 UTC strings; the error
    masked: :func:`quantbeat.infra.masking.mask_text`)."""
    return {
        "id": letter.id,
        "reason": letter.reason,
        "task_name": letter.task_name,
        "task_id": letter.task_id,
        "occurrences": letter.occurrences,
        "first_seen": iso_utc(letter.first_seen),
        "last_seen": iso_utc(letter.last_seen),
        "replays": letter.replays or 0,
        "replayed_at": iso_utc(letter.replayed_at),
        "error": None if letter.error is None else mask_text(letter.error),
    }


def letter_detail(letter: DeadLetter) -> dict[str, Any]:
    """Every column of a letter, JSON-ready (the payload as stored, already masked)."""
    return {
        **letter_summary(letter),
        "fingerprint": letter.fingerprint,
        "replayed_task_id": letter.replayed_task_id,
        "created_at": iso_utc(letter.created_at),
        "updated_at": iso_utc(letter.updated_at),
        "payload": letter.payload,
    }


def list_letters(
    *,
    reasons: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    since: dt.datetime | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Dead letters as :func:`letter_summary` rows, most recently seen first (``tasks``: names
    or globs such as ``quantbeat.collect.*``; ``since``: last seen at or after).

    Raises:
        quant.errors.ValidationError: ``limit`` is not positive.
    """
    if limit < 1:
        raise ValidationError(f"--limit must be at least 1, got {limit}", field="--limit")
    with session_scope() as session:
        letters = list_dead_letters(
            session, reasons=reasons, task_patterns=tasks, since=since, limit=limit
        )
        return [letter_summary(letter) for letter in letters]


def show_letter(letter_id: int) -> dict[str, Any]:
    """Every column of the dead letter ``letter_id`` (:func:`letter_detail`).

    Raises:
        quant.errors.NotFound: there is no such letter (the message names the id).
    """
    with session_scope() as session:
        return letter_detail(get_letter(session, letter_id))


def get_letter(session: Session, letter_id: int, *, for_update: bool = False) -> DeadLetter:
    """The dead letter ``letter_id``, in the caller's ``session``.

    Raises:
        quant.errors.NotFound: there is no such letter (the message names the id).
    """
    letter = get_dead_letter(session, letter_id, for_update=for_update)
    if letter is None:
        raise NotFound(f"no dead letter with id {letter_id}")
    return letter


def masked_fields(value: Any, path: str) -> list[str]:
    """The places in ``value`` (``kwargs.password``, ``args[0]``) whose text holds the mask."""
    if isinstance(value, str):
        return [path] if MASK in value else []
    if isinstance(value, dict):
        return [f for key, item in value.items() for f in masked_fields(item, f"{path}.{key}")]
    if isinstance(value, list | tuple):
        return [f for i, item in enumerate(value) for f in masked_fields(item, f"{path}[{i}]")]
    return []


def replay_problem(letter: DeadLetter, registered: Any) -> str | None:
    """Why ``letter`` cannot be replayed through an app whose task registry is ``registered``
    (a container of task names), or ``None`` when it can."""
    payload = letter.payload if isinstance(letter.payload, dict) else {}
    name = letter.task_name or payload.get("task")
    label = f"dead letter {letter.id} ({name or 'no task name'}, {letter.reason})"
    if letter.reason == "undecodable":
        return f"{label}: the message could not be decoded, so there are no arguments to send"
    if not name:
        return f"{label}: it names no task"
    if name not in registered:
        return (
            f"{label}: task {name!r} is not registered in the worker app (workers.app), "
            "so no worker would run it"
        )
    args, kwargs = payload.get("args"), payload.get("kwargs")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return f"{label}: its payload holds no task arguments (args list and kwargs mapping)"
    masked = masked_fields(args, "args") + masked_fields(kwargs, "kwargs")
    if masked:
        return (
            f"{label}: {', '.join(masked)} {'was' if len(masked) == 1 else 'were'} masked "
            f"({MASK!r}) when the letter was stored, so a replay would send the mask instead "
            "of the real value; submit the task again with the real arguments"
        )
    if contains_escape(args) or contains_escape(kwargs):
        return (
            f"{label}: its arguments held characters PostgreSQL cannot store (NUL or a lone "
            "surrogate), stored escaped, so a replay would send the escape instead of the "
            "original; submit the task again with the real arguments"
        )
    return None


@dataclass(frozen=True)
class Replay:
    """One letter's replay: the new task id (``None`` on a dry run or when refused), or why
    it was refused."""

    letter_id: int
    task_name: str | None
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    task_id: str | None = None
    refused: str | None = None


def worker_app_with_tasks() -> Any:
    """The production Celery app (:data:`workers.app.app`) with every task module imported:
    its registry is what a replay checks task names against."""
    worker_app.loader.import_default_modules()
    return worker_app


def replay(
    *,
    ids: Sequence[int] = (),
    replay_all: bool = False,
    reasons: Sequence[str] | None = None,
    dry_run: bool = False,
    app: Any = None,
) -> list[Replay]:
    """Re-send dead letters' tasks through the Celery ``app`` (default
    :func:`worker_app_with_tasks`; its ``tasks`` registry must be loaded) and record each
    replay on its letter, in one transaction.

    With explicit ``ids`` it is all or nothing: if any letter is missing or refused, nothing is
    sent. With ``replay_all`` or ``reasons`` (and no ids) every matching letter that can be
    replayed is sent, and the others are returned with ``refused`` set. ``dry_run`` sends and
    records nothing.

    Raises:
        quant.errors.ValidationError: no selection was given, or both ids and ``replay_all``;
            an explicit letter cannot be replayed (the message names each letter and why).
        quant.errors.NotFound: an id does not exist.
    """
    if ids and replay_all:
        raise ValidationError("give dead letter IDs or --all, not both", field="--all")
    if not ids and not replay_all and not reasons:
        raise ValidationError("name the dead letters to replay: IDs, --all or --reason")
    with session_scope() as session:
        return _replay(
            session,
            app or worker_app_with_tasks(),
            ids=ids,
            reasons=reasons,
            dry_run=dry_run,
        )


def _replay(
    session: Session,
    app: Any,
    *,
    ids: Sequence[int],
    reasons: Sequence[str] | None,
    dry_run: bool,
) -> list[Replay]:
    if ids:
        letters = [get_letter(session, i, for_update=not dry_run) for i in dict.fromkeys(ids)]
        if reasons:
            letters = [letter for letter in letters if letter.reason in reasons]
    else:
        found = list_dead_letters(session, reasons=reasons, limit=None)
        letters = [get_letter(session, letter.id, for_update=not dry_run) for letter in found]
    plans = [_plan(letter, app.tasks) for letter in letters]
    refused = [p.refused for p in plans if p.refused]
    if ids and refused:
        raise ValidationError("; ".join(r for r in refused if r), field="ID")
    done: list[Replay] = []
    for plan in plans:
        if plan.refused or dry_run:
            done.append(plan)
            continue
        done.append(_send(session, app, plan))
    return done


def _send(session: Session, app: Any, plan: Replay) -> Replay:
    result = app.send_task(plan.task_name, args=plan.args, kwargs=plan.kwargs)
    mark_replayed(session, plan.letter_id, task_id=result.id, replayed_at=_utcnow())
    return Replay(plan.letter_id, plan.task_name, plan.args, plan.kwargs, task_id=result.id)


def replay_letter(letter_id: int, *, app: Any = None) -> Replay:
    """Re-send the task of dead letter ``letter_id`` (as :func:`replay` does for one id) and
    return the replay with its new task id.

    Raises:
        quant.errors.NotFound: there is no such letter.
        quant.errors.PermanentError: the letter cannot be replayed (the message says why:
            see :func:`replay_problem`); nothing was sent.
    """
    with session_scope() as session:
        registry = app or worker_app_with_tasks()
        plan = _plan(get_letter(session, letter_id, for_update=True), registry.tasks)
        if plan.refused:
            raise PermanentError(plan.refused)
        return _send(session, registry, plan)


def _plan(letter: DeadLetter, registered: Any) -> Replay:
    problem = replay_problem(letter, registered)
    if problem is not None:
        return Replay(letter.id, letter.task_name, refused=problem)
    payload = letter.payload
    return Replay(
        letter.id,
        letter.task_name or payload.get("task"),
        list(payload["args"]),
        dict(payload["kwargs"]),
    )


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def purge(
    *,
    older_than: dt.datetime | None = None,
    reasons: Sequence[str] | None = None,
    ids: Sequence[int] | None = None,
) -> int:
    """Delete the dead letters matching every given filter (``older_than``: last seen before
    this instant); return how many were deleted.

    Raises:
        quant.errors.ValidationError: no filter was given.
    """
    with session_scope() as session:
        return purge_dead_letters(session, older_than=older_than, reasons=reasons, ids=ids)
