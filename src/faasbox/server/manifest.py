"""Function folders that describe themselves: ``faasbox.json`` next to the code.

A manifest holds the deploy settings of the folder's function, so that
``faasbox up --examples`` and ``faasbox deploy FOLDER`` need no flags::

    {"name": "hello", "handler": "app.handler", "memory_mb": 128, "timeout_s": 3,
     "environment": {}, "description": "Says hello"}

``name`` defaults to the folder's name; other keys (triggers...) are left to their
owners and ignored here. Stdlib only: the CLI reads manifests without loading FastAPI.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faasbox.errors import InvalidParameterError

MANIFEST = "faasbox.json"
_DEPLOY_KEYS = ("handler", "memory_mb", "timeout_s", "environment", "description",
                "reserved_concurrency", "network", "role")


@dataclass(frozen=True)
class Manifest:
    """The deploy settings of one function folder."""

    folder: Path
    name: str
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path) -> Manifest | None:
        """The folder's manifest, or None when it has none."""
        path = folder / MANIFEST
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidParameterError(f"{path}: not a valid JSON manifest: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidParameterError(f"{path}: the manifest must be a JSON object")
        settings = {key: data[key] for key in _DEPLOY_KEYS if data.get(key) is not None}
        return cls(folder=folder, name=str(data.get("name") or folder.name), settings=settings)


def find(root: Path) -> Iterator[Manifest]:
    """Every function folder directly under ``root`` that has a manifest, by name."""
    if not root.is_dir():
        return
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        manifest = Manifest.load(folder)
        if manifest is not None:
            yield manifest


def examples_dir() -> Path:
    """The ``examples/`` folder: the current directory's, else the source checkout's."""
    here = Path.cwd() / "examples"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[3] / "examples"
