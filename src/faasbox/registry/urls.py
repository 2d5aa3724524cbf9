"""Function URLs: placeholder, filled in by its owner."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faasbox.platform import Platform


class FunctionUrls:
    """Which functions (and qualifiers) answer at ``/fn/{name}``, and with which auth."""

    def set(self, name: str, qualifier: str | None = None, *, auth: str = "none") -> dict[str, Any]:
        raise NotImplementedError

    def get(self, name: str, qualifier: str | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def delete(self, name: str, qualifier: str | None = None) -> None:
        raise NotImplementedError

    def list(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        """Nothing to release. Idempotent."""


def attach(platform: Platform) -> FunctionUrls:
    return FunctionUrls()
