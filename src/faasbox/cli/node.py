"""``faasbox ps``: the sandboxes that are alive now."""

from __future__ import annotations

import typer

from faasbox.cli import common
from faasbox.cli.common import JSON_OPTION


def ps(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List live sandboxes (empty once every function has scaled to zero).

    For each: function and version, busy or idle (and for how long), calls served."""
    with common.client(ctx) as client:
        found = client.sandboxes()
    if as_json:
        common.print_json(found)
        return
    if not found:
        common.say("no live sandboxes (every function has scaled to zero)")
        return
    grid = common.table("ID", "PID", "FUNCTION", "VERSION", "STATE", "MEMORY", "CALLS", "IDLE")
    for sb in found:
        grid.add_row(sb["id"], str(sb["pid"]), sb["function"], sb["version"], sb["state"],
                     f"{sb['memory_mb']} MB", str(sb["invocations"]),
                     f"{sb['idle_s']:.1f} s" if sb["state"] == "idle" else "-")
    common.console.print(grid)


def register(app: typer.Typer) -> None:
    """Add ``ps`` to ``app``."""
    app.command()(ps)
