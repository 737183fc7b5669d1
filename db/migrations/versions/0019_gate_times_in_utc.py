"""stored Market Gate times in UTC on SQLite (some were written as Korean clock readings)

SQLite keeps a datetime's clock reading and drops its zone. A gate computed for a session's
close was stored with its ``as_of`` as a Korea Standard Time reading (15:30, UTC+9, no
daylight saving) and read back 9 hours late; one computed from an intraday snapshot was
already in UTC. Gates are now always stored in UTC (``db.store.to_store``). A gate's moment
lies within a KRX session (09:00–15:30 KST, i.e. 00:00–06:30 UTC), so a stored clock reading
from 07:00 on can only be Korean time: those rows are moved to UTC. PostgreSQL stored every
gate correctly and is left alone. Downgrading keeps the UTC times (every version reads them
as UTC).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 14:10:00
"""

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KST = dt.timedelta(hours=9)  # Korea Standard Time: UTC+9 all year
#: A UTC gate time is at most 06:30 (15:30 KST); a stored reading from here on is KST.
_KOREAN_FROM = dt.time(7, 0)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    gates = sa.table("market_gates", sa.column("id", sa.Integer), sa.column("as_of", sa.DateTime()))
    rows = [
        (ident, as_of)
        for ident, as_of in bind.execute(sa.select(gates.c.id, gates.c.as_of)).all()
        if as_of.time() >= _KOREAN_FROM
    ]
    # Through a temporary offset of a century first, so no intermediate state collides with
    # another row's (trade_date, as_of).
    far = dt.timedelta(days=36_525)
    for ident, as_of in rows:
        bind.execute(gates.update().where(gates.c.id == ident).values(as_of=as_of + far))
    for ident, as_of in rows:
        bind.execute(gates.update().where(gates.c.id == ident).values(as_of=as_of - _KST))


def downgrade() -> None:
    pass  # UTC times are what every version reads
