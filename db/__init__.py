"""Persistence: SQLAlchemy 2 typed models (:mod:`db.models`), engines and sessions
(:mod:`db.engine`), idempotent writes (:mod:`db.store`, :mod:`db.jobs`) and Alembic migrations
(:mod:`db.migrate`, ``db/migrations``). PostgreSQL is the production store; SQLite serves the
embedded default of ``quantbeat run``."""
