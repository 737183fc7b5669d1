"""API routes: track-record."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["track-record"])
