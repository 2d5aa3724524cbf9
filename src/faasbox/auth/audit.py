"""The audit log: one JSON line per API call (who, action, resource, outcome, time).

Lines are appended with one ``write`` on an ``O_APPEND`` descriptor: a kill of the
server never leaves half a line, and appending costs microseconds, so every call is
logged, the refused ones too. At :data:`ROTATE_BYTES` the file becomes ``audit.log.1``
(the one before it is dropped); queries read both.
"""

from __future__ import annotations

import fnmatch
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from faasbox.errors import InvalidParameterError

ROTATE_BYTES = 64 * 1024 * 1024
OUTCOMES = ("allowed", "denied", "failed")
LIMIT_MAX = 10_000


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                           0o600)
        self._size = os.fstat(self._fd).st_size
        if self._size:
            with self.path.open("rb") as tail:
                tail.seek(-1, os.SEEK_END)
                if tail.read(1) != b"\n":  # a line cut short (a full disk): the next
                    os.write(self._fd, b"\n")  # one starts on a line of its own
                    self._size += 1

    def append(self, entry: dict[str, Any]) -> None:
        line = orjson.dumps(entry) + b"\n"
        with self._lock:
            if self._fd < 0:
                return
            os.write(self._fd, line)
            self._size += len(line)
            if self._size >= ROTATE_BYTES:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                os.close(self._fd)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                                   | os.O_CLOEXEC, 0o600)
                self._size = 0

    def query(self, *, since: float | None = None, until: float | None = None,
              principal: str | None = None, action: str | None = None,
              resource: str | None = None, outcome: str | None = None,
              limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` entries that match, oldest first. ``action`` and
        ``resource`` may hold ``*`` wildcards; ``principal`` matches a key id, a role, or
        the whole principal."""
        if outcome is not None and outcome not in OUTCOMES:
            raise InvalidParameterError(f"outcome={outcome!r}: use one of {', '.join(OUTCOMES)}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIMIT_MAX:
            raise InvalidParameterError(f"limit={limit!r} is out of range 1-{LIMIT_MAX}")
        found: list[dict[str, Any]] = []
        for entry in self._entries():
            if since is not None and entry["time"] < since:
                continue
            if until is not None and entry["time"] > until:
                continue
            if outcome is not None and entry["outcome"] != outcome:
                continue
            if principal is not None and principal not in (
                    entry.get("principal"), entry.get("key_id"), entry.get("role")):
                continue
            if action is not None and not fnmatch.fnmatchcase(entry.get("action") or "",
                                                              action):
                continue
            if resource is not None and not fnmatch.fnmatchcase(entry.get("resource") or "",
                                                                resource):
                continue
            found.append(entry)
            if len(found) > limit:
                del found[0]
        return found

    def _entries(self) -> Iterator[dict[str, Any]]:
        for path in (self.path.with_name(self.path.name + ".1"), self.path):
            try:
                with path.open("rb") as lines:
                    for line in lines:
                        try:
                            yield orjson.loads(line)
                        except orjson.JSONDecodeError:
                            continue  # a disk that filled up mid-line: skip it
            except FileNotFoundError:
                continue

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def entry(*, principal: str | None, key_id: str | None, role: str | None, action: str | None,
          resource: str | None, outcome: str, status: int, method: str, path: str,
          source: str | None, message: str | None = None) -> dict[str, Any]:
    return {"time": round(time.time(), 6), "principal": principal, "key_id": key_id,
            "role": role, "action": action, "resource": resource, "outcome": outcome,
            "status": status, "method": method, "path": path[:512], "source": source,
            "message": (message or "")[:512] or None}
