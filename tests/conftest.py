"""Shared fixtures: real platforms on temporary homes, handler folders written on disk.

Platforms made here run their sandboxes at the ``process`` isolation level unless a test
asks for another: these tests are about Lambda's semantics, which are the same at every
level; tests/security runs the namespace and cgroup levels (and ``auto``) on purpose.
Clients find their credentials in a credentials file of the test session's own, never
in the user's ``~/.faasbox``.
"""

from __future__ import annotations

import os
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faasbox.auth.credentials import Credentials
from faasbox.config import Settings
from faasbox.platform import LocalClient, Platform
from faasbox.remote.signing import SigV4

TEST_ISOLATION = os.environ.setdefault("FAASBOX_TEST_ISOLATION", "process")
os.environ["FAASBOX_CREDENTIALS_FILE"] = os.path.join(
    tempfile.mkdtemp(prefix="faasbox-credentials-"), "credentials")


def write_function(folder: Path, source: str, module: str = "app") -> Path:
    """Write ``source`` as ``folder/<module>.py`` and return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    return folder


def admin_credentials(platform: Platform, *policies: str) -> Credentials:
    """A new access key of ``platform`` (AdministratorAccess unless ``policies`` say)."""
    key, secret = platform.auth.create_key("test", list(policies or ["AdministratorAccess"]))
    return Credentials(key.key_id, secret)


def sign_with(http: Any, credentials: Credentials) -> Any:
    """Make an httpx-based client (a TestClient too) sign every request."""
    http.auth = SigV4(credentials)
    return http


@pytest.fixture
def make_platform(tmp_path: Path) -> Iterator:
    """Build platforms with chosen settings; every one is closed after the test."""
    made: list[Platform] = []

    def make(**overrides) -> Platform:
        overrides.setdefault("home", tmp_path / "home")
        overrides.setdefault("keep_alive_s", 60.0)
        overrides.setdefault("isolation", TEST_ISOLATION)
        platform = Platform(Settings.from_env({}, **overrides))
        made.append(platform)
        return platform

    yield make
    for platform in made:
        platform.close()


@pytest.fixture
def client(make_platform) -> LocalClient:
    return make_platform().client()
