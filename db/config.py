"""Operator settings stored in the database (table ``stored_settings``).

Callers validate values first (:mod:`quantbeat.services.settings_store`) and commit; these functions
read and write what they are given.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from db.models import StoredSetting
from db.store import insert_for


def load_all(session: Session) -> dict[str, Any]:
    """Every stored setting, ``{key: value}``."""
    rows = session.execute(select(StoredSetting.key, StoredSetting.value)).all()
    return {key: value for key, value in rows}


def list_settings(session: Session) -> list[StoredSetting]:
    """Every stored setting row, by key."""
    return list(session.execute(select(StoredSetting).order_by(StoredSetting.key)).scalars())


def put(session: Session, key: str, value: Any, *, updated_by: str | None) -> None:
    """Insert or replace the setting ``key``."""
    table = StoredSetting.__table__
    stmt = insert_for(session, table).values(  # type: ignore[arg-type]
        key=key, value=value, updated_by=updated_by
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={
            "value": stmt.excluded.value,
            "updated_by": stmt.excluded.updated_by,
            "updated_at": func.now(),
        },
    )
    session.execute(stmt)


def remove(session: Session, key: str) -> bool:
    """Delete the setting ``key``; whether it existed."""
    result = session.execute(delete(StoredSetting).where(StoredSetting.key == key))
    return bool(getattr(result, "rowcount", 0))
