"""RemoteMetrics: placeholder, filled in by its owner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faasbox.api.metrics import Metrics

if TYPE_CHECKING:
    from faasbox.remote import RemoteClient


class RemoteMetrics(Metrics):
    """:class:`Metrics` over HTTP."""

    def __init__(self, remote: RemoteClient) -> None:
        self._remote = remote
