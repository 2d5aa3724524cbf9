"""``ANY /fn/{name}[/{path}]``: placeholder, filled in by its owner."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["function urls"])
