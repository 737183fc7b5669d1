"""Backtest engine, strategies, metrics and reports (pure: no Celery, no sessions, no
environment)."""
