"""``faasbox invoke``: run a function and print its result."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from faasbox.cli import common
from faasbox.cli.common import JSON_OPTION
from faasbox.errors import InvalidParameterError


def read_payload(payload: str | None) -> bytes | None:
    """The event as JSON bytes from ``--payload JSON`` or ``--payload @FILE`` (``@-`` is
    stdin); checked here so that nothing is sent when it is not JSON."""
    if payload is None:
        return None
    text = payload
    if payload.startswith("@"):
        source = payload[1:]
        try:
            text = sys.stdin.read() if source == "-" else Path(source).read_text()
        except OSError as exc:
            raise InvalidParameterError(f"--payload {payload}: {exc.strerror or exc}") from exc
    try:
        json.loads(text)
    except ValueError as exc:
        raise InvalidParameterError(f"--payload is not valid JSON: {exc}") from exc
    return text.encode()


def invoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="NAME[:QUALIFIER] (version or alias)")],
    payload: Annotated[
        str | None, typer.Option("--payload", "-p", help="The event: JSON, or @FILE (@- stdin).")
    ] = None,
    log: Annotated[bool, typer.Option("--log", help="Also print the framed log.")] = False,
    run_async: Annotated[
        bool,
        typer.Option("--async", help="Queue the event and print its request id at once "
                     "(retries and destinations: `faasbox async-config`)."),
    ] = False,
    as_json: bool = JSON_OPTION,
) -> None:
    """Invoke a function synchronously and print its result (exit 1 on a function error)."""
    raw = read_payload(payload)
    if run_async:
        if log:
            raise InvalidParameterError(
                "--log needs a synchronous call; read an async call's attempts with "
                "`faasbox logs NAME --request-id ID`"
            )
        with common.client(ctx) as client:
            request_id = client.invoke_async(name, raw=raw)
        if as_json:
            common.print_json({"request_id": request_id, "status": 202})
        else:
            sys.stdout.write(request_id + "\n")
            sys.stdout.flush()
        return
    with common.client(ctx) as client:
        result = client.invoke(name, raw=raw)
        text = client.logs(common.base_name(name), request_id=result.request_id) if log else ""
    if as_json:
        data = {
            "request_id": result.request_id,
            "executed_version": result.executed_version,
            "function_error": result.function_error,
            "payload": result.json(),
        }
        if log:
            data["log"] = text
        common.print_json(data)
    else:
        if text:
            sys.stderr.write(text if text.endswith("\n") else text + "\n")
            sys.stderr.flush()
        sys.stdout.buffer.write(result.payload + b"\n")
        sys.stdout.flush()
    if result.function_error:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(invoke)
