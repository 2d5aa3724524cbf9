"""Objects: placeholder contract, filled in by its owner."""

from __future__ import annotations

import abc


class Objects(abc.ABC):
    """The objects of one platform."""
