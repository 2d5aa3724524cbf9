"""Invocation logs: Lambda's framing, appended per function to one file.

Each invocation's framed block (START, the handler's output, END, REPORT) is written
with a single ``write`` and its offset and length kept in the invocation record, so a
request id finds its log with one ``pread`` and ``--follow`` is a tail.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

from faasbox.layout import Layout
from faasbox.model import InvocationRecord


def billed_ms(duration_ms: float) -> int:
    """Lambda bills each invocation in whole milliseconds, rounded up, at least 1."""
    return max(1, math.ceil(duration_ms))


def frame(record: InvocationRecord, output: str) -> str:
    """The CloudWatch-style block of one invocation."""
    rid = record.request_id
    lines = [f"START RequestId: {rid} Version: {record.version}\n"]
    if output:
        lines.append(output if output.endswith("\n") else output + "\n")
    lines.append(f"END RequestId: {rid}\n")
    report = (
        f"REPORT RequestId: {rid}\tDuration: {record.duration_ms:.2f} ms\t"
        f"Billed Duration: {record.billed_duration_ms} ms\t"
        f"Memory Size: {record.memory_size_mb} MB\t"
        f"Max Memory Used: {record.max_memory_used_mb} MB"
    )
    if record.init_duration_ms is not None:
        report += f"\tInit Duration: {record.init_duration_ms:.2f} ms"
    if record.cpu_time_ms is not None:  # the cgroup isolation level measures it
        report += f"\tCPU Time: {record.cpu_time_ms:.2f} ms"
    if record.error_type and record.status.value in {"timeout", "oom", "crash"}:
        report += f"\tStatus: {record.status.value}\tError Type: {record.error_type}"
    lines.append(report + "\t\n")
    return "".join(lines)


class LogStore:
    """Append-only per-function log files under the home folder."""

    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        self._lock = threading.Lock()
        self._files: dict[str, tuple[int, str]] = {}  # function -> (open fd, file name)

    def append(self, function: str, text: str) -> tuple[str, int, int]:
        """Append one block; return (file name, offset, length)."""
        data = text.encode("utf-8", "replace")
        with self._lock:
            entry = self._files.get(function)
            if entry is None:
                path = self._layout.function_log(function)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                entry = self._files[function] = (fd, path.name)
            fd, name = entry
            # One control plane holds the home (faasbox.lock), and this lock orders our
            # threads: the end of the file is where this block lands.
            offset = os.lseek(fd, 0, os.SEEK_END)
            os.write(fd, data)
        return name, offset, len(data)

    def read(self, log_file: str, offset: int, length: int) -> str:
        if not log_file or length <= 0:
            return ""
        path = self._layout.logs / Path(log_file).name
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                return fh.read(length).decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def forget(self, function: str) -> None:
        """Close the function's file handle (the file itself stays, as logs outlive it)."""
        with self._lock:
            entry = self._files.pop(function, None)
        if entry is not None:
            os.close(entry[0])

    def close(self) -> None:
        with self._lock:
            for fd, _ in self._files.values():
                os.close(fd)
            self._files.clear()
