"""Running faasbox here: ``up`` (the server) and ``doctor`` (what this host allows)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from faasbox.cli import common
from faasbox.cli.common import JSON_OPTION

HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", help="Data folder (state, packages, logs). Env: FAASBOX_HOME."),
]


def up(
    host: Annotated[
        str | None, typer.Option("--host", help="Interface (default 127.0.0.1). Env: FAASBOX_HOST.")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port (default 8642). Env: FAASBOX_PORT.")
    ] = None,
    home: HomeOpt = None,
    examples: Annotated[
        bool, typer.Option("--examples", help="Deploy every function under examples/.")
    ] = False,
) -> None:
    """Run the platform and its HTTP API in the foreground (Ctrl-C stops it)."""
    from faasbox.server.app import serve

    serve(common.settings(host=host, port=port, home=home), examples=examples)


def doctor(home: HomeOpt = None, as_json: bool = JSON_OPTION) -> None:
    """Show what this host offers: Python, isolation, memory enforcement, capacity."""
    from faasbox.runtime.node import doctor as diagnose

    report: dict[str, Any] = diagnose(common.settings(home=home))
    if as_json:
        common.print_json(report)
        return
    labels = {
        "python": "Python",
        "isolation": "Isolation",
        "isolation_setting": "  setting (FAASBOX_ISOLATION)",
        "isolation_reason": "  why",
        "memory_enforcement": "Memory enforcement",
        "memory_enforcement_reason": "  why",
        "capacity_mb": "Capacity",
        "home": "Data folder",
    }
    grid = common.table("CHECK", "RESULT", title="faasbox doctor")
    for key, value in report.items():
        if key == "isolation_levels":
            for level, state in value.items():
                grid.add_row(f"  level {level}", state)
            continue
        if key == "isolation_reason" and not value:
            continue
        shown = f"{value} MB" if key == "capacity_mb" else str(value)
        grid.add_row(labels.get(key, key), shown)
    common.console.print(grid)


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(doctor)
