"""Schedules: placeholder contract, filled in by its owner."""

from __future__ import annotations

import abc


class Schedules(abc.ABC):
    """The schedules of one platform."""
