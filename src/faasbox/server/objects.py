"""HTTP routes of objects: placeholder, filled in by its owner."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["objects"])
