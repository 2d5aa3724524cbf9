"""Async invocation: placeholder, filled in by its owner."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faasbox.platform import Platform


class AsyncInvoker:
    """Accepts events at once, runs them from a durable queue with retries."""

    def invoke(self, name: str, event: bytes, qualifier: str | None = None) -> str:
        """Accept ``event`` for ``name``; returns the request id."""
        raise NotImplementedError

    def put_config(self, name: str, qualifier: str | None = None, **config: Any) -> dict[str, Any]:
        raise NotImplementedError

    def get_config(self, name: str, qualifier: str | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def delete_config(self, name: str, qualifier: str | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop background work. Idempotent."""


def attach(platform: Platform) -> AsyncInvoker:
    return AsyncInvoker()
