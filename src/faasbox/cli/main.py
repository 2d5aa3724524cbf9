"""The ``faasbox`` console script."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

import faasbox
from faasbox.cli import (
    access,
    alarms,
    common,
    dev,
    functions,
    invoke,
    logs,
    metrics,
    node,
    objects,
    queues,
    schedules,
    server,
    triggers,
    urls,
)
from faasbox.errors import FaasboxError

app = typer.Typer(
    name="faasbox",
    help="Serverless functions for Python on your own machines, with AWS Lambda semantics.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"faasbox {faasbox.__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    ctx: typer.Context,
    endpoint: Annotated[
        str | None,
        typer.Option(
            "--endpoint",
            help="Server URL (default http://127.0.0.1:8642). Env: FAASBOX_ENDPOINT.",
        ),
    ] = None,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = None,
) -> None:
    ctx.obj = common.Options(endpoint=endpoint)


for module in (server, functions, invoke, logs, dev, queues, objects, triggers, schedules,
               metrics, alarms, urls, node, access):
    module.register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a faasbox error is one red line and exit 1 (2: no server)."""
    try:
        app(args=argv, prog_name="faasbox")
    except FaasboxError as exc:
        common.print_error(exc)
        return common.exit_code(exc)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
