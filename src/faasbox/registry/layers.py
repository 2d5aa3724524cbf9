"""Dependency layers: a function's ``requirements.txt`` built once with ``pip --target``.

A layer is cached under ``layers/<sha256>/`` by the hash of the *normalized*
requirements (comments, blank lines, order and name spelling do not matter), so
equivalent requirements reuse one build without running pip. Builds of the same key are
serialized by a lock (a thread lock plus an ``flock`` for other processes), run in a
stage folder under ``layout.staging`` and committed with one ``os.rename``: a failed or
interrupted build leaves no layer directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from faasbox.errors import DependencyBuildError
from faasbox.layout import Layout
from faasbox.registry.packages import precompile, remove_tree, seal

#: Longest tail of pip's output kept in a :class:`DependencyBuildError` message.
ERROR_TAIL_CHARS = 4000

_NAME = re.compile(r"^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(\[[^\]]*\])?\s*(.*)$")
_COMMENT = re.compile(r"(^|\s+)#.*$")
_LINE_OPTION = re.compile(r"\s(--?[A-Za-z])")
_ARCHIVE = re.compile(r"\.(whl|zip|tar|tgz|tar\.gz|tar\.bz2|tbz|tar\.xz|txz)$", re.IGNORECASE)
#: pip settings that would fight ``--target`` if inherited from the environment.
_PIP_ENV_DROP = ("PIP_USER", "PIP_PREFIX", "PIP_ROOT", "PIP_TARGET", "PIP_REQUIRE_VIRTUALENV")


@dataclass(frozen=True)
class Layer:
    """A built dependency layer; ``path`` is the folder to put on ``sys.path``."""

    sha256: str
    path: Path


def normalize_requirements(text: str) -> str:
    """The canonical form of a requirements text, the key of its layer.

    Joins ``\\`` continuations, strips comments, blank lines and surrounding
    whitespace, lowercases and PEP 503-normalizes project names (and extras), sorts
    version specifiers, drops duplicate lines and sorts the lines. Options (``--...``),
    paths and URLs are kept as written (only whitespace is collapsed).
    """
    logical = re.sub(r"\\\r?\n", " ", text.replace("\r\n", "\n"))
    lines: set[str] = set()
    for raw in logical.split("\n"):
        line = " ".join(_COMMENT.sub("", raw).split())
        if line:
            lines.add(_normalize_line(line))
    return "\n".join(sorted(lines))


def _canonical_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _normalize_line(line: str) -> str:
    if line.startswith("-"):
        return line
    options = ""
    found = _LINE_OPTION.search(line)
    if found:
        line, options = line[: found.start()].rstrip(), " " + line[found.start() :].strip()
    match = _NAME.match(line)
    if match is None:
        return line + options  # a path or URL: case matters
    name, extras, rest = match.groups()
    if (rest and rest[0] not in "<>=!~;@(") or (
        not rest.startswith("@") and _ARCHIVE.search(line.split(";")[0].strip())
    ):
        return line + options  # e.g. ``dir/pkg``, ``git+https://...``, ``pkg-1.0.whl``
    head = _canonical_name(name)
    if extras:
        names = {_canonical_name(e.strip()) for e in extras[1:-1].split(",") if e.strip()}
        head += ("[" + ",".join(sorted(names)) + "]") if names else ""
    if rest.startswith("@"):
        url, _, marker = rest[1:].strip().partition(" ;")
        out = f"{head} @ {url.strip()}"
    else:
        spec, _, marker = rest.partition(";")
        spec = "".join(spec.split()).strip("()")
        out = head + ",".join(sorted(s for s in spec.split(",") if s))
    marker = marker.strip()
    if marker:
        out += f" ; {marker}"
    return out + options


class LayerBuilder:
    """Builds and caches dependency layers under ``layout.layers``."""

    def __init__(self, layout: Layout, pip: str = "", timeout_s: float = 600.0) -> None:
        self._layout = layout
        self._pip = shlex.split(pip) if pip else [sys.executable, "-m", "pip"]
        self._timeout_s = timeout_s
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    @staticmethod
    def key(requirements: str) -> str | None:
        """The layer hash for these requirements; None when they are empty."""
        normalized = normalize_requirements(requirements)
        if not normalized:
            return None
        return _layer_sha(normalized)

    def get(self, sha256: str) -> Layer | None:
        """The built layer with this hash, or None."""
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            return None
        path = self._layout.layer(sha256)
        return Layer(sha256, path) if path.is_dir() else None

    def build(self, requirements: str) -> Layer | None:
        """The layer for ``requirements``, built with pip unless already cached.

        Returns None when the requirements are empty after normalization. Raises
        :class:`DependencyBuildError`, holding pip's own error text, when pip fails or
        times out; no layer directory is left then.
        """
        normalized = normalize_requirements(requirements)
        if not normalized:
            return None
        sha = _layer_sha(normalized)
        final = self._layout.layer(sha)
        if final.is_dir():
            return Layer(sha, final)
        with self._lock(sha):
            if not final.is_dir():
                self._build(normalized, final)
        return Layer(sha, final)

    @contextmanager
    def _lock(self, sha: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(sha, threading.Lock())
        self._layout.staging.mkdir(parents=True, exist_ok=True)
        path = self._layout.staging / f"layer-{sha}.lock"
        with lock, open(path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # other processes; released on close
            try:
                yield
            finally:
                # A process still waiting on the unlinked file may then build too; the
                # stage + rename commit keeps that safe (the loser discards its copy).
                with suppress(FileNotFoundError):
                    path.unlink()

    def _build(self, normalized: str, final: Path) -> None:
        self._layout.layers.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix="layer-", dir=self._layout.staging))
        try:
            requirements = stage / "requirements.txt"
            requirements.write_text(normalized + "\n")
            target = stage / "site"
            self._pip_install(requirements, target, cwd=stage)
            target.mkdir(exist_ok=True)  # requirements that install nothing
            precompile(target, final)
            seal(target)
            try:
                os.rename(target, final)
            except OSError:
                if not final.is_dir():
                    raise
        finally:
            remove_tree(stage)

    def _pip_install(self, requirements: Path, target: Path, cwd: Path) -> None:
        command = [
            *self._pip, "install", "--target", str(target), "--no-input",
            "--disable-pip-version-check", "--no-compile", "--no-warn-script-location",
            "-r", str(requirements),
        ]
        env = {k: v for k, v in os.environ.items() if k not in _PIP_ENV_DROP}
        try:
            proc = subprocess.Popen(
                command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True,
            )
        except OSError as exc:
            raise DependencyBuildError(f"cannot run pip ({shlex.join(self._pip)}): {exc}") \
                from exc
        try:
            out, err = proc.communicate(timeout=self._timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise DependencyBuildError(
                f"pip install timed out after {self._timeout_s:g} s"
            ) from None
        except BaseException:
            _kill_group(proc)
            raise
        if proc.returncode != 0:
            text = err.decode(errors="replace").strip() or out.decode(errors="replace").strip()
            raise DependencyBuildError(
                f"pip install failed (exit status {proc.returncode}):\n"
                f"{text[-ERROR_TAIL_CHARS:]}"
            )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill pip and whatever it started (build backends), then reap it."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def _layer_sha(normalized: str) -> str:
    """Layers hold compiled wheels: key them by the interpreter and platform too."""
    tag = f"{sys.implementation.cache_tag}-{sys.platform}-{platform.machine()}"
    return hashlib.sha256(f"{tag}\n{normalized}".encode()).hexdigest()
