"""The one place that builds every path under the home folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """Where things live under ``FAASBOX_HOME``.

    ``state.db``                SQLite state (WAL)
    ``records.journal``         invocation records not yet committed to state.db
    ``packages/<sha256>/``      extracted code, content-addressed, read-only by convention
    ``layers/<sha256>/``        dependency layers built by ``pip --target``
    ``logs/<function>.log``     framed invocation logs; records hold offsets into them
    ``sandboxes/<id>/``         each live sandbox's working dir, ``/tmp`` and raw output
    ``tmp/``                    staging for atomic writes (same filesystem as the above)
    ``objects/``                the folder object store (unless ``objects_dir`` says else)
    ``s3-journal/``             the S3 adapter's journal of writes not yet announced
    ``runtime-lib/faasbox``     a link to the faasbox package, the one library sandboxes
                                may import besides the stdlib (its stdlib-only modules:
                                ``faasbox.handlers`` and the folder object store)
    """

    home: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home).resolve())

    @property
    def state_db(self) -> Path:
        return self.home / "state.db"

    @property
    def packages(self) -> Path:
        return self.home / "packages"

    def package(self, sha256: str) -> Path:
        return self.packages / sha256

    @property
    def layers(self) -> Path:
        return self.home / "layers"

    def layer(self, sha256: str) -> Path:
        return self.layers / sha256

    @property
    def records_journal(self) -> Path:
        return self.home / "records.journal"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    def function_log(self, function: str) -> Path:
        return self.logs / f"{function}.log"

    @property
    def sandboxes(self) -> Path:
        return self.home / "sandboxes"

    def sandbox(self, sandbox_id: str) -> Path:
        return self.sandboxes / sandbox_id

    @property
    def objects(self) -> Path:
        return self.home / "objects"

    @property
    def s3_journal(self) -> Path:
        return self.home / "s3-journal"

    @property
    def runtime_lib(self) -> Path:
        return self.home / "runtime-lib"

    @property
    def staging(self) -> Path:
        return self.home / "tmp"

    def ensure(self) -> Layout:
        for path in (self.home, self.packages, self.layers, self.logs, self.sandboxes,
                     self.staging):
            path.mkdir(parents=True, exist_ok=True)
        return self


def private_file(path: Path, make: Callable[[], bytes]) -> bytes:
    """The content of ``path``, a secret of the home: made by ``make()`` the first time,
    written 0600 to a temporary file and linked into place, so a crash never leaves it
    half-written and two processes racing to make it agree on the first one's."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, make())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temp, path)  # fails if another process won the race: keep theirs
    except FileExistsError:
        pass
    finally:
        temp.unlink(missing_ok=True)
    return path.read_bytes()
