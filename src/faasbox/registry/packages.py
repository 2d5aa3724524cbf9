"""Deployment packages: a folder or a zip, checked, extracted and stored by content.

A package is staged under ``layout.staging``, validated entry by entry while it is
written (path traversal, symlinks leaving the package, size, entry-count and
compression-ratio limits), hashed, precompiled, and then moved into
``packages/<sha256>/`` with one ``os.rename``: the rename is the commit point, so a
crash or a refusal never leaves a partially filled package directory.

The sha256 covers the canonical content (sorted relative paths, file bytes, the
executable bit, in-package symlink targets and empty directories), so the same code
gives the same hash whether it came as a folder or as a zip. ``__pycache__`` folders
and ``.pyc`` files in the input are ignored; the store compiles its own.
"""

from __future__ import annotations

import compileall
import errno
import hashlib
import io
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO

from faasbox.config import Limits
from faasbox.errors import InvalidPackageError, InvalidParameterError
from faasbox.layout import Layout

REQUIREMENTS_FILE = "requirements.txt"

_CHUNK = 1 << 16
_MAX_LINK_TARGET = 4096
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class Package:
    """One stored deployment package.

    ``path`` is the extracted code (``packages/<sha256>/``); ``size_bytes`` and
    ``files`` count the package's own files (symlinks included, compiled bytecode
    not); ``requirements`` is the text of ``requirements.txt`` at the package root.
    """

    sha256: str
    path: Path
    size_bytes: int
    files: int
    requirements: str | None


class PackageStore:
    """Ingests deployment packages into ``layout.packages``, content-addressed."""

    def __init__(self, layout: Layout, limits: Limits) -> None:
        self._layout = layout
        self._limits = limits

    def path(self, sha256: str) -> Path:
        """Where the package with this hash lives (whether or not it exists)."""
        if not _SHA256.match(sha256):
            raise InvalidParameterError(f"not a sha256 hex digest: {sha256!r}")
        return self._layout.package(sha256)

    def exists(self, sha256: str) -> bool:
        return bool(_SHA256.match(sha256)) and self._layout.package(sha256).is_dir()

    def ingest(self, path: Path) -> Package:
        """Store the package at ``path``: a folder or a ``.zip`` file.

        Raises :class:`InvalidPackageError` (naming the offending entry) when the
        package is unsafe, too large, corrupt or empty; nothing is stored then.
        """
        path = Path(path)
        if path.is_dir():
            return self._ingest(lambda stage: fill_from_folder(stage, path))
        if not path.is_file():
            raise InvalidPackageError(f"package not found (no such file or folder): {path}")
        size = path.stat().st_size
        if size > self._limits.zip_bytes:
            raise InvalidPackageError(
                f"zip file {path.name!r} is {size} bytes, over the limit of "
                f"{self._limits.zip_bytes} bytes"
            )
        with path.open("rb") as fh:
            return self._ingest_zip(fh, path.name)

    def ingest_zip(self, data: bytes) -> Package:
        """Store a package given as zip bytes (an HTTP upload)."""
        if len(data) > self._limits.zip_bytes:
            raise InvalidPackageError(
                f"zip is {len(data)} bytes, over the limit of {self._limits.zip_bytes} bytes"
            )
        return self._ingest_zip(io.BytesIO(data), "uploaded zip")

    def _ingest_zip(self, fh: BinaryIO, label: str) -> Package:
        try:
            archive = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as exc:
            raise InvalidPackageError(f"{label} is not a valid zip file: {exc}") from exc
        with archive:
            return self._ingest(lambda stage: _fill_from_zip(stage, archive))

    def _ingest(self, fill: Callable[[Stage], None]) -> Package:
        self._layout.staging.mkdir(parents=True, exist_ok=True)
        self._layout.packages.mkdir(parents=True, exist_ok=True)
        stage_dir = Path(tempfile.mkdtemp(prefix="package-", dir=self._layout.staging))
        try:
            root = stage_dir / "code"
            root.mkdir()
            stage = Stage(os.path.realpath(root), self._limits)
            fill(stage)
            stage.make_links()
            sha, size, files = _digest(stage.root)
            if files == 0:
                raise InvalidPackageError("package is empty: it holds no files")
            final = self._layout.package(sha)
            if not final.is_dir():
                _precompile(stage.root, final)
                seal(stage.root)
                try:
                    os.rename(stage.root, final)
                except OSError as exc:  # a concurrent ingest of the same content won
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not final.is_dir():
                        raise
            return Package(sha, final, size, files, _read_requirements(final))
        finally:
            remove_tree(stage_dir)


def seal(root: Path | str) -> None:
    """Make a stored tree read-only (files 0444, or 0555 if executable; folders 0555):
    stored code is shared by every function and version that uses it, so no sandbox
    running as an ordinary user may change it. (Root ignores modes: the namespace
    level mounts code read-only.)"""
    for folder, dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                mode = os.stat(path).st_mode
                os.chmod(path, 0o555 if mode & 0o111 else 0o444)
        for name in dirs:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o555)
    os.chmod(root, 0o555)


def remove_tree(path: Path | str) -> None:
    """Remove a folder, sealed (read-only) parts included; missing is fine."""

    def unseal(func: object, failed: str, _exc: object) -> None:
        try:
            os.chmod(os.path.dirname(failed), 0o755)
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, 0o755)
                shutil.rmtree(failed, ignore_errors=True)
            else:
                os.unlink(failed)
        except OSError:
            pass

    shutil.rmtree(path, onerror=unseal)


def precompile(root: Path | str, final: Path | str) -> None:
    """Compile every ``.py`` under ``root`` as if it lived at ``final`` (tracebacks show
    the stored path). Files that do not compile are left to fail at import time."""
    _precompile(str(root), Path(final))


def _precompile(root: str, final: Path) -> None:
    compileall.compile_dir(root, ddir=str(final), quiet=2, optimize=0, force=True, workers=1)


def _read_requirements(root: Path) -> str | None:
    path = root / REQUIREMENTS_FILE
    if not path.is_file():
        return None
    return path.read_bytes().decode("utf-8", errors="replace")


def _refuse(entry: str, why: str) -> InvalidPackageError:
    return InvalidPackageError(f"unsafe package entry {entry!r}: {why}")


def _safe_parts(name: str) -> tuple[str, ...]:
    """The relative path components of an entry name, refusing anything unsafe."""
    if "\x00" in name:
        raise _refuse(name, "the name contains a NUL byte")
    if "\\" in name:
        raise _refuse(name, "the name contains a backslash")
    if name.startswith("/"):
        raise _refuse(name, "absolute path")
    if _DRIVE.match(name):
        raise _refuse(name, "the name starts with a drive letter")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise _refuse(name, "path traversal ('..')")
    return parts


def _ignored(parts: tuple[str, ...]) -> bool:
    return "__pycache__" in parts or parts[-1].endswith(".pyc")


@dataclass
class Stage:
    """The folder a package is extracted into, with the limits counted as it fills.

    Public as a sink: :func:`fill_from_folder` feeds any subclass (the remote client
    writes a zip instead of files), so a folder is judged by one set of rules.
    """

    root: str
    limits: Limits
    entries: int = 0
    total_bytes: int = 0
    links: list[tuple[str, str, str]] = field(default_factory=list)

    def _count(self, label: str) -> None:
        self.entries += 1
        if self.entries > self.limits.package_entries:
            raise InvalidPackageError(
                f"package has more than {self.limits.package_entries} entries "
                f"(at entry {label!r})"
            )

    def _parent(self, parts: tuple[str, ...], label: str) -> str:
        parent = os.path.join(self.root, *parts[:-1])
        try:
            os.makedirs(parent, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise _refuse(label, "it conflicts with a file entry of the same path") from exc
        if os.path.realpath(parent) != parent:
            raise _refuse(label, "it lies under a symlink entry")
        return parent

    def add_dir(self, parts: tuple[str, ...], label: str) -> None:
        self._count(label)
        path = os.path.join(self._parent(parts, label), parts[-1])
        try:
            os.mkdir(path)
        except FileExistsError as exc:
            if os.path.islink(path) or not os.path.isdir(path):
                raise _refuse(label, "it conflicts with another entry") from exc

    def add_file(
        self, parts: tuple[str, ...], src: IO[bytes], executable: bool, label: str,
        max_bytes: int | None = None,
    ) -> None:
        """Copy ``src`` in, counting real bytes; ``max_bytes`` caps this one entry
        (the compression-ratio limit for zip entries)."""
        self._count(label)
        path = os.path.join(self._parent(parts, label), parts[-1])
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            fd = os.open(path, flags, 0o600)
        except (FileExistsError, IsADirectoryError) as exc:
            raise _refuse(label, "it conflicts with another entry") from exc
        with os.fdopen(fd, "wb") as out:
            os.fchmod(fd, 0o755 if executable else 0o644)
            written = 0
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                self.total_bytes += len(chunk)
                if self.total_bytes > self.limits.unzipped_bytes:
                    raise InvalidPackageError(
                        f"package is over the unzipped size limit of "
                        f"{self.limits.unzipped_bytes} bytes (at entry {label!r})"
                    )
                if max_bytes is not None and written > max_bytes:
                    raise _refuse(
                        label,
                        f"compression ratio over the limit of {self.limits.compression_ratio}",
                    )
                out.write(chunk)

    def add_link(self, parts: tuple[str, ...], target: str, label: str) -> None:
        """Record a symlink; links are made after every file, by :meth:`make_links`."""
        self._count(label)
        if not target or "\x00" in target or "\\" in target:
            raise _refuse(label, f"symlink with an invalid target {target!r}")
        if os.path.isabs(target):
            raise _refuse(label, f"symlink to {target!r} points outside the package")
        self.links.append(("/".join(parts), target, label))

    def make_links(self) -> None:
        """Create the recorded symlinks, refuse any that resolves outside the package,
        and rewrite each target as the canonical relative path of what it resolves to."""
        made: list[tuple[str, str, str]] = []
        for rel, target, label in self.links:
            parts = tuple(rel.split("/"))
            path = os.path.join(self._parent(parts, label), parts[-1])
            try:
                os.symlink(target, path)
            except FileExistsError as exc:
                raise _refuse(label, "it conflicts with another entry") from exc
            made.append((path, target, label))
        for path, target, label in made:
            try:
                os.stat(path)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise _refuse(label, f"symlink to {target!r} is a loop") from exc
            real = os.path.realpath(path)
            if real != self.root and not real.startswith(self.root + os.sep):
                raise _refuse(label, f"symlink to {target!r} points outside the package")
        for path, target, _ in made:
            canonical = os.path.relpath(os.path.realpath(path), os.path.dirname(path))
            if canonical != target:
                os.unlink(path)
                os.symlink(canonical, path)


def _fill_from_zip(stage: Stage, archive: zipfile.ZipFile) -> None:
    limits = stage.limits
    infos = archive.infolist()
    if len(infos) > limits.package_entries:
        raise InvalidPackageError(
            f"package has {len(infos)} entries, more than the limit of "
            f"{limits.package_entries} (at entry {infos[limits.package_entries].filename!r})"
        )
    seen: set[str] = set()
    plan: list[tuple[str, tuple[str, ...], zipfile.ZipInfo]] = []
    declared = 0
    for info in infos:
        name = info.filename
        parts = _safe_parts(name)
        if not parts:
            if info.is_dir():
                continue
            raise _refuse(name, "empty file name")
        key = "/".join(parts)
        if key in seen:
            raise InvalidPackageError(f"duplicate entry {name!r} in package")
        seen.add(key)
        if _ignored(parts):
            continue
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            kind = "link"
        elif info.is_dir() or stat.S_ISDIR(mode):
            kind = "dir"
        else:
            kind = "file"
        if kind != "dir":
            declared += info.file_size
            if declared > limits.unzipped_bytes:
                raise InvalidPackageError(
                    f"package is over the unzipped size limit of {limits.unzipped_bytes} "
                    f"bytes (at entry {name!r})"
                )
            if info.file_size > max(
                limits.compression_ratio * max(info.compress_size, 1),
                limits.compression_floor_bytes,
            ):
                raise _refuse(
                    name, f"compression ratio over the limit of {limits.compression_ratio}"
                )
        plan.append((kind, parts, info))

    for kind, parts, info in plan:
        name = info.filename
        try:
            if kind == "dir":
                stage.add_dir(parts, name)
                continue
            max_bytes = max(
                limits.compression_ratio * max(info.compress_size, 1),
                limits.compression_floor_bytes,
            )
            with archive.open(info) as src:
                if kind == "link":
                    raw = src.read(_MAX_LINK_TARGET + 1)
                    if len(raw) > _MAX_LINK_TARGET:
                        raise _refuse(name, "symlink target is too long")
                    stage.add_link(parts, raw.decode("utf-8", errors="replace"), name)
                else:
                    executable = bool((info.external_attr >> 16) & 0o111)
                    stage.add_file(parts, src, executable, name, max_bytes)
        except InvalidPackageError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError,
                RuntimeError, ValueError) as exc:
            raise InvalidPackageError(f"corrupt zip entry {name!r}: {exc}") from exc


def fill_from_folder(stage: Stage, folder: Path) -> None:
    """Feed ``folder``'s entries to ``stage`` under the package rules: links leaving the
    folder, special files and the limits are refused with the entry named."""
    source = os.path.realpath(folder)

    def failed(exc: OSError) -> None:
        raise InvalidPackageError(f"cannot read package folder entry {exc.filename!r}: {exc}")

    for dirpath, dirnames, filenames in os.walk(source, onerror=failed):
        rel = os.path.relpath(dirpath, source)
        base: tuple[str, ...] = () if rel == "." else tuple(rel.split(os.sep))
        descend = []
        for name in sorted(dirnames):
            parts = (*base, name)
            if _ignored(parts):
                continue
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                _folder_link(stage, source, full, parts)
            else:
                stage.add_dir(parts, "/".join(parts))
                descend.append(name)
        dirnames[:] = descend
        for name in sorted(filenames):
            parts = (*base, name)
            if _ignored(parts):
                continue
            full = os.path.join(dirpath, name)
            label = "/".join(parts)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                _folder_link(stage, source, full, parts)
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as src:
                    stage.add_file(parts, src, bool(st.st_mode & 0o111), label)
            else:
                raise _refuse(label, "not a regular file, folder or symlink")


def _folder_link(stage: Stage, source: str, full: str, parts: tuple[str, ...]) -> None:
    label = "/".join(parts)
    real = os.path.realpath(full)
    if real != source and not real.startswith(source + os.sep):
        raise _refuse(label, f"symlink to {os.readlink(full)!r} points outside the package")
    stage.add_link(parts, os.path.relpath(real, os.path.dirname(full)), label)


def _digest(root: str) -> tuple[str, int, int]:
    """(sha256, bytes, files) of the canonical content of the extracted tree."""
    records: list[tuple[str, str, str]] = []  # (relative path, kind, absolute path)
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        if not dirnames and not filenames and prefix:
            records.append((prefix[:-1], "D", dirpath))
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                records.append((prefix + name, "L", full))
            elif name in filenames:
                records.append((prefix + name, "F", full))
    records.sort()
    digest = hashlib.sha256()
    size = files = 0
    for rel, kind, full in records:
        head = [kind.encode(), os.fsencode(rel)]
        if kind == "L":
            head.append(os.fsencode(os.readlink(full)))
        elif kind == "F":
            st = os.stat(full)
            head += [b"x" if st.st_mode & 0o100 else b"-", str(st.st_size).encode()]
        digest.update(b"\0".join(head) + b"\0")
        if kind == "F":
            with open(full, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
        files += kind != "D"
    return digest.hexdigest(), size, files
