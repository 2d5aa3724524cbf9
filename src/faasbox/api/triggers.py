"""Triggers: placeholder contract, filled in by its owner."""

from __future__ import annotations

import abc


class Triggers(abc.ABC):
    """The triggers of one platform."""
