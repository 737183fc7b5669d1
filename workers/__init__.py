"""Celery side of quantbeat: the app (:mod:`workers.app`), queue families
(:mod:`workers.queues`), the base task class (:mod:`workers.base`) and worker process setup
(:mod:`workers.process`)."""
