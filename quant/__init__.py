"""quantbeat's pure domain package.

Everything under ``quant`` takes data and returns data: no Celery imports, no database sessions,
no environment reads. Tasks in ``tasks/`` are thin adapters over it.
"""
