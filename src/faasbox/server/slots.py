"""Bounded thread pools for routes that may block for long: invocations, long polls.

Each kind has slots of its own, apart from the server's shared pool of sync routes, so
a thousand waiting long polls or running functions never keep a listing or a send
from answering; beyond its slots a request is refused at once (429), never queued
without bound -- waiting could outlast the caller's own deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from faasbox.errors import TooManyRequestsError

T = TypeVar("T")


class Slots:
    """At most ``size`` calls at a time, each in a worker thread of this pool; one that
    finds every slot taken raises :class:`TooManyRequestsError` naming ``what``."""

    def __init__(self, size: int, what: str) -> None:
        if size < 1:
            raise ValueError(f"{what} slots must be at least 1, not {size}")
        self.size = size
        self.what = what
        self._admission = anyio.CapacityLimiter(size)
        # Threads are taken only by admitted calls, so this one never makes a call wait.
        self._threads = anyio.CapacityLimiter(size)

    @property
    def in_use(self) -> int:
        return int(self._admission.borrowed_tokens)

    async def run(self, func: Callable[[], T]) -> T:
        token = object()
        try:
            self._admission.acquire_on_behalf_of_nowait(token)
        except anyio.WouldBlock:
            raise TooManyRequestsError(
                f"the server's {self.size} concurrent {self.what} are in use; retry later"
            ) from None
        try:
            return await anyio.to_thread.run_sync(func, limiter=self._threads)
        finally:
            self._admission.release_on_behalf_of(token)
