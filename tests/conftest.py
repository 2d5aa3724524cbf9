"""Shared fixtures: real platforms on temporary homes, handler folders written on disk."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from faasbox.config import Settings
from faasbox.platform import LocalClient, Platform


def write_function(folder: Path, source: str, module: str = "app") -> Path:
    """Write ``source`` as ``folder/<module>.py`` and return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    return folder


@pytest.fixture
def make_platform(tmp_path: Path) -> Iterator:
    """Build platforms with chosen settings; every one is closed after the test."""
    made: list[Platform] = []

    def make(**overrides) -> Platform:
        overrides.setdefault("home", tmp_path / "home")
        overrides.setdefault("keep_alive_s", 60.0)
        platform = Platform(Settings.from_env({}, **overrides))
        made.append(platform)
        return platform

    yield make
    for platform in made:
        platform.close()


@pytest.fixture
def client(make_platform) -> LocalClient:
    return make_platform().client()
