"""Logs and records: ``logs`` (with ``--follow``) and ``records``."""

from __future__ import annotations

import sys
import threading
from typing import Annotated, TextIO

import typer

from faasbox.cli import common
from faasbox.cli.common import JSON_OPTION
from faasbox.errors import FaasboxError
from faasbox.sdk import Client

LimitOpt = Annotated[int, typer.Option("--limit", help="At most this many invocations.")]


class LogFollower:
    """Prints each new invocation's framed log once, as soon as it is complete.

    Every ``interval_s`` it lists the function's newest records (a record exists once a
    call has finished, so its log is whole) and prints the log of each request id it
    has not shown yet, oldest first. A slow call that started before a faster one is
    still shown, which a time cursor alone would miss.
    """

    def __init__(
        self, client: Client, name: str, *, interval_s: float = 0.5, out: TextIO | None = None,
        window: int = 100,
    ) -> None:
        self.client = client
        self.name = name
        self.interval_s = interval_s
        self.out = out or sys.stdout
        self.window = window
        self._seen: set[str] = set()

    def skip_existing(self) -> None:
        """Mark the invocations recorded so far as shown."""
        self._seen = {r.request_id for r in self.client.records(self.name, limit=self.window)}

    def poll(self) -> int:
        """Print the logs of invocations finished since the last poll; how many."""
        records = self.client.records(self.name, limit=self.window)
        shown = 0
        current = set()
        for record in reversed(records):
            current.add(record.request_id)
            if record.request_id in self._seen:
                continue
            text = self.client.logs(self.name, request_id=record.request_id)
            if not text:
                current.discard(record.request_id)  # not written yet: try again next time
                continue
            self.out.write(text if text.endswith("\n") else text + "\n")
            shown += 1
        if shown:
            self.out.flush()
        self._seen = current
        return shown

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set; errors are shown once per kind and retried."""
        last_error = ""
        while not stop.is_set():
            try:
                self.poll()
                last_error = ""
            except FaasboxError as exc:
                if exc.code != last_error:
                    common.print_error(exc)
                    last_error = exc.code
            stop.wait(self.interval_s)


def logs(
    ctx: typer.Context,
    name: str,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new invocations' logs.")
    ] = False,
    request_id: Annotated[str | None, typer.Option("--request-id", help="One invocation.")] = None,
    since: Annotated[
        float | None, typer.Option("--since", help="Invocations started after (epoch s).")
    ] = None,
    limit: LimitOpt = 100,
) -> None:
    """Print a function's framed logs (START/END/REPORT)."""
    name = common.base_name(name)
    with common.client(ctx) as client:
        follower = LogFollower(client, name)
        if follow:
            follower.skip_existing()  # before reading, so nothing falls between the two
        text = client.logs(name, request_id=request_id, since=since, limit=limit)
        if text:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
            sys.stdout.flush()
        if not follow:
            return
        stop = threading.Event()
        try:
            follower.run(stop)
        except KeyboardInterrupt:
            stop.set()


def records(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Function name (all when left out).")] = None,
    request_id: Annotated[str | None, typer.Option("--request-id")] = None,
    limit: LimitOpt = 20,
    as_json: bool = JSON_OPTION,
) -> None:
    """List invocation records, newest first (every attempt of an async invocation).

    With --request-id of an async invocation, each of its attempts is listed."""
    with common.client(ctx) as client:
        found = client.records(
            common.base_name(name) if name else None, request_id=request_id, limit=limit
        )
    if as_json:
        common.print_json([record.to_dict() for record in found])
        return
    columns = ["REQUEST ID", "VER", "STATUS", "STARTED", "DURATION", "MAX MEM", "INIT", "ERROR"]
    errors = any(r.error_type for r in found)
    if not errors:
        columns.pop()
    attempts = any(r.attempt for r in found)  # async invocations: one record per attempt
    if attempts:
        columns.insert(1, "ATTEMPT")
    if name is None:
        columns.insert(1, "FUNCTION")
    grid = common.table(*columns)
    grid.columns[0].no_wrap = True
    for r in found:
        style = "green" if r.status.value == "success" else "red"
        row = [
            r.request_id, r.version, f"[{style}]{r.status.value}[/]",
            common.when(r.started_at, "%H:%M:%S"), f"{r.duration_ms:.1f} ms",
            f"{r.max_memory_used_mb} MB",
            f"{r.init_duration_ms:.1f} ms" if r.init_duration_ms is not None else "-",
        ]
        if errors:
            row.append(r.error_type or "")
        if attempts:
            row.insert(1, f"{r.attempt} of {r.async_request_id}" if r.attempt else "-")
        if name is None:
            row.insert(1, r.function)
        grid.add_row(*row)
    common.console.print(grid)


def register(app: typer.Typer) -> None:
    app.command()(logs)
    app.command()(records)
