"""faasbox: a self-hosted serverless platform for Python with AWS Lambda semantics.

The package root stays import-light: the sandbox runtime never imports it, and the
SDK entry points load the platform only when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faasbox.sdk import Client

__all__ = ["Client", "connect", "local"]
__version__ = "0.1.0"


def local(home: str | None = None, **settings: Any) -> Client:
    """A client that runs the whole platform inside the calling process."""
    from faasbox.sdk import local as _local

    return _local(home=home, **settings)


def connect(url: str | None = None, **kwargs: Any) -> Client:
    """A client that talks to a running ``faasbox up`` server."""
    from faasbox.sdk import connect as _connect

    return _connect(url, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "Client":  # lazily, so `import faasbox` stays light
        from faasbox.sdk import Client as _Client

        return _Client
    raise AttributeError(f"module 'faasbox' has no attribute {name!r}")
