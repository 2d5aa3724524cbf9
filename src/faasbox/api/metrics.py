"""Metrics: placeholder contract, filled in by its owner."""

from __future__ import annotations

import abc


class Metrics(abc.ABC):
    """The metrics of one platform."""
