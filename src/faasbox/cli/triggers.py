"""Queue -> function mappings: ``faasbox trigger add|ls|show|update|enable|disable|rm``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from faasbox.api.triggers import BATCH_SIZE
from faasbox.cli import common
from faasbox.cli.common import JSON_OPTION

IdArg = Annotated[str, typer.Argument(metavar="ID", help="The trigger's id (see `ls`).")]
BatchSizeOpt = Annotated[
    int | None, typer.Option("--batch-size", help="Messages per invocation, 1-10000.")
]
WindowOpt = Annotated[
    int | None,
    typer.Option("--window", help="Seconds to gather a batch that is not full, 0-300."),
]
ConcurrencyOpt = Annotated[
    int | None,
    typer.Option("--max-concurrency", help="Most invocations at once, 2-1000."),
]


def add(
    ctx: typer.Context,
    queue: Annotated[str, typer.Argument(help="The queue to poll.")],
    function: Annotated[str, typer.Argument(help="NAME[:QUALIFIER] to invoke.")],
    batch_size: BatchSizeOpt = None,
    window: WindowOpt = None,
    max_concurrency: ConcurrencyOpt = None,
    disabled: Annotated[
        bool, typer.Option("--disabled", help="Create it without starting to poll.")
    ] = False,
    report_failures: Annotated[
        bool,
        typer.Option(
            "--report-batch-item-failures/--no-report-batch-item-failures",
            help="Honour a batchItemFailures answer (delete only the other messages); "
            "off by default, as on Lambda.",
        ),
    ] = False,
    as_json: bool = JSON_OPTION,
) -> None:
    """Invoke FUNCTION with batches of QUEUE's messages."""
    with common.client(ctx) as client:
        info = client.triggers.create(
            queue,
            function,
            batch_size=BATCH_SIZE if batch_size is None else batch_size,
            max_batching_window_s=window or 0,
            max_concurrency=max_concurrency,
            enabled=not disabled,
            report_batch_item_failures=report_failures,
        )
    if as_json:
        common.print_json(info)
        return
    common.say(
        f"Trigger {info['id']}: {info['queue']} -> {info['function']} "
        f"({_settings(info)}, {info['state'].lower()})",
        "green",
    )


def ls(
    ctx: typer.Context,
    queue: Annotated[str | None, typer.Option("--queue", help="Only this queue's.")] = None,
    function: Annotated[
        str | None, typer.Option("--function", help="Only this function's (NAME[:QUALIFIER]).")
    ] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """List triggers."""
    with common.client(ctx) as client:
        triggers = client.triggers.list(queue=queue, function=function)
    if as_json:
        common.print_json(triggers)
        return
    if not triggers:
        common.say("No triggers yet: faasbox trigger add QUEUE FUNCTION")
        return
    grid = common.table("ID", "QUEUE", "FUNCTION", "STATE", "BATCH", "WINDOW", "CONCURRENCY",
                        "LAST RESULT")
    for item in triggers:
        grid.add_row(
            item["id"], item["queue"], item["function"], item["state"],
            str(item["batch_size"]), f"{item['max_batching_window_s']} s",
            _concurrency(item), item["last_processing_result"],
        )
    common.console.print(grid)


def show(ctx: typer.Context, id: IdArg, as_json: bool = JSON_OPTION) -> None:
    """Show a trigger's settings and status."""
    with common.client(ctx) as client:
        info = client.triggers.get(id)
    _print(info, as_json)


def update(
    ctx: typer.Context,
    id: IdArg,
    batch_size: BatchSizeOpt = None,
    window: WindowOpt = None,
    max_concurrency: ConcurrencyOpt = None,
    unlimited: Annotated[
        bool, typer.Option("--no-max-concurrency", help="Remove the concurrency limit.")
    ] = False,
    report_failures: Annotated[
        bool | None,
        typer.Option(
            "--report-batch-item-failures/--no-report-batch-item-failures",
            help="Honour a batchItemFailures answer, or ignore it.",
        ),
    ] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Change a trigger's settings; those not given stay."""
    changes: dict[str, Any] = {
        key: value
        for key, value in (
            ("batch_size", batch_size),
            ("max_batching_window_s", window),
            ("max_concurrency", max_concurrency),
            ("report_batch_item_failures", report_failures),
        )
        if value is not None
    }
    if unlimited:
        changes["max_concurrency"] = None
    with common.client(ctx) as client:
        info = client.triggers.update(id, **changes)
    _print(info, as_json)


def enable(ctx: typer.Context, id: IdArg, as_json: bool = JSON_OPTION) -> None:
    """Start polling again."""
    with common.client(ctx) as client:
        info = client.triggers.enable(id)
    if as_json:
        common.print_json(info)
        return
    common.say(f"Enabled trigger {id}: {info['queue']} -> {info['function']}", "green")


def disable(ctx: typer.Context, id: IdArg, as_json: bool = JSON_OPTION) -> None:
    """Stop polling; batches being processed finish."""
    with common.client(ctx) as client:
        info = client.triggers.disable(id)
    if as_json:
        common.print_json(info)
        return
    common.say(f"Disabled trigger {id}: {info['queue']} -> {info['function']}", "green")


def rm(ctx: typer.Context, id: IdArg) -> None:
    """Delete a trigger (the queue and its messages stay)."""
    with common.client(ctx) as client:
        client.triggers.delete(id)
    common.say(f"Deleted trigger {id}", "green")


def _concurrency(info: dict[str, Any]) -> str:
    return "-" if info["max_concurrency"] is None else str(info["max_concurrency"])


def _settings(info: dict[str, Any]) -> str:
    return (f"batch {info['batch_size']}, window {info['max_batching_window_s']} s, "
            f"max concurrency {_concurrency(info)}")


def _print(info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        common.print_json(info)
        return
    grid = common.table("FIELD", "VALUE", title=f"trigger {info['id']}")
    for key, value in info.items():
        if key in ("created_at", "updated_at"):
            value = common.when(value)
        grid.add_row(key, "-" if value is None else str(value))
    common.console.print(grid)


def register(app: typer.Typer) -> None:
    """Add ``faasbox trigger ...`` to ``app``."""
    group = typer.Typer(
        name="trigger",
        help="Queue -> function mappings: invoke a function with batches of a queue's "
        "messages.",
        no_args_is_help=True,
    )
    for command in (add, ls, show, update, enable, disable, rm):
        group.command()(command)
    app.add_typer(group)
