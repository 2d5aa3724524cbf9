"""RemoteQueues: placeholder, filled in by its owner."""

from __future__ import annotations

from typing import TYPE_CHECKING



if TYPE_CHECKING:
    from faasbox.remote import RemoteClient


class RemoteQueues:  # placeholder
    """:class:`Queues` over HTTP."""

    def __init__(self, remote: RemoteClient) -> None:
        self._remote = remote
