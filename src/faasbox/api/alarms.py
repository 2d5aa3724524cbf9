"""Alarms: placeholder contract, filled in by its owner."""

from __future__ import annotations

import abc


class Alarms(abc.ABC):
    """The alarms of one platform."""
