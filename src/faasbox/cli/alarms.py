"""``faasbox alarm add|ls|show|rm|history``: CloudWatch-style metric alarms."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from faasbox.api.alarms import OPERATOR_SYMBOLS
from faasbox.api.metrics import DIMENSION, LAMBDA, SQS, parse_dimensions
from faasbox.cli import common
from faasbox.cli.common import JSON_OPTION
from faasbox.errors import InvalidParameterError

alarm_app = typer.Typer(help="Metric alarms: watch a metric, act on a change of state.",
                        no_args_is_help=True)

Actions = Annotated[list[str] | None, typer.Option(
    help="function:NAME[:QUALIFIER] or queue:NAME (repeatable).")]
_STATE_STYLE = {"OK": "green", "ALARM": "bold red", "INSUFFICIENT_DATA": "yellow"}


def _target(
    function: str | None, queue: str | None, namespace: str | None, dimension: list[str]
) -> tuple[str, dict[str, str]]:
    """The namespace and dimensions from --function, --queue or --namespace/--dimension."""
    chosen = [flag for flag, value in (("--function", function), ("--queue", queue),
                                       ("--namespace", namespace)) if value]
    if len(chosen) != 1:
        raise InvalidParameterError(
            "name what to watch with one of --function NAME, --queue NAME or "
            "--namespace NS --dimension Name=value"
        )
    if function:
        return LAMBDA, {DIMENSION[LAMBDA]: function}
    if queue:
        return SQS, {DIMENSION[SQS]: queue}
    assert namespace is not None
    return namespace, parse_dimensions(dimension, "--dimension")


@alarm_app.command("add")
def add(
    ctx: typer.Context,
    name: str,
    metric: Annotated[str, typer.Option(help="e.g. Errors, ApproximateNumberOfMessagesVisible")],
    threshold: Annotated[float, typer.Option(help="The value compared with the statistic.")],
    comparison: Annotated[str, typer.Option(
        help="GreaterThanOrEqualToThreshold (>=), GreaterThanThreshold (>), "
             "LessThanThreshold (<), LessThanOrEqualToThreshold (<=).")],
    function: Annotated[str | None, typer.Option(help="Watch this function (AWS/Lambda).")]
    = None,
    queue: Annotated[str | None, typer.Option(help="Watch this queue (AWS/SQS).")] = None,
    namespace: Annotated[str | None, typer.Option(help="Or give the namespace ...")] = None,
    dimension: Annotated[list[str] | None, typer.Option(help="... and Name=value.")] = None,
    statistic: Annotated[str, typer.Option(
        help="SampleCount, Sum, Average, Minimum, Maximum or pNN.")] = "Average",
    period: Annotated[int, typer.Option(help="Seconds per period (multiple of 10).")] = 60,
    evaluation_periods: Annotated[int, typer.Option(help="Periods looked at (N).")] = 1,
    datapoints_to_alarm: Annotated[int | None, typer.Option(
        help="Breaching periods needed (M of N; default N).")] = None,
    treat_missing: Annotated[str, typer.Option(
        help="missing, notBreaching, breaching or ignore.")] = "missing",
    alarm_action: Actions = None,
    ok_action: Actions = None,
    insufficient_action: Actions = None,
    description: Annotated[str, typer.Option()] = "",
    as_json: bool = JSON_OPTION,
) -> None:
    """Create an alarm, or replace one's definition (its state is kept)."""
    ns, dimensions = _target(function, queue, namespace, dimension or [])
    definition: dict[str, Any] = {
        "namespace": ns, "metric": metric, "dimensions": dimensions, "statistic": statistic,
        "period_s": period, "evaluation_periods": evaluation_periods,
        "datapoints_to_alarm": datapoints_to_alarm, "threshold": threshold,
        "comparison_operator": OPERATOR_SYMBOLS.get(comparison, comparison),
        "treat_missing_data": treat_missing, "description": description,
        "alarm_actions": alarm_action or [], "ok_actions": ok_action or [],
        "insufficient_data_actions": insufficient_action or [],
    }
    if datapoints_to_alarm is None:
        del definition["datapoints_to_alarm"]
    with common.client(ctx) as client:
        info = client.alarms.put(name, **definition)
    if as_json:
        common.print_json(info)
        return
    common.say(f"Alarm {info['name']}: {_condition(info)} ({info['state']})", "green")


def _condition(alarm: dict[str, Any]) -> str:
    symbol = {v: k for k, v in OPERATOR_SYMBOLS.items()}[alarm["comparison_operator"]]
    dims = ",".join(f"{k}={v}" for k, v in alarm["dimensions"].items())
    m, n = alarm["datapoints_to_alarm"], alarm["evaluation_periods"]
    return (f"{alarm['statistic']}({alarm['metric']} {dims}) {symbol} "
            f"{alarm['threshold']:g} for {m} of {n} x {alarm['period_s']} s")


@alarm_app.command("ls")
def ls(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="Only alarms in this state.")] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """List alarms with their state."""
    with common.client(ctx) as client:
        alarms = client.alarms.list(state=state)
    if as_json:
        common.print_json(alarms)
        return
    if not alarms:
        common.say("No alarms yet: faasbox alarm add NAME --function FN --metric Errors "
                   "--statistic Sum --threshold 1 --comparison '>='")
        return
    grid = common.table("NAME", "STATE", "CONDITION", "ACTIONS", "SINCE")
    for alarm in alarms:
        actions = len(alarm["alarm_actions"]) + len(alarm["ok_actions"]) + len(
            alarm["insufficient_data_actions"])
        grid.add_row(alarm["name"], f"[{_STATE_STYLE[alarm['state']]}]{alarm['state']}[/]",
                     _condition(alarm), str(actions), common.when(alarm["state_updated_at"]))
    common.console.print(grid)


@alarm_app.command("show")
def show(ctx: typer.Context, name: str, as_json: bool = JSON_OPTION) -> None:
    """Show one alarm: its definition, state and why it is in that state."""
    with common.client(ctx) as client:
        alarm = client.alarms.get(name)
    if as_json:
        common.print_json(alarm)
        return
    grid = common.table("FIELD", "VALUE", title=f"alarm {name}")
    grid.add_row("state", f"[{_STATE_STYLE[alarm['state']]}]{alarm['state']}[/]")
    grid.add_row("condition", _condition(alarm))
    for key, value in alarm.items():
        if key in ("name", "state"):
            continue
        if key.endswith("_at"):
            shown = common.when(value)
        elif isinstance(value, list | dict):
            shown = ", ".join(value) if isinstance(value, list) else ",".join(
                f"{k}={v}" for k, v in value.items())
        else:
            shown = str(value)
        grid.add_row(key, escape(shown) or "-")  # reasons hold [datapoints]
    common.console.print(grid)


@alarm_app.command("rm")
def rm(ctx: typer.Context, name: str) -> None:
    """Delete an alarm and its history."""
    with common.client(ctx) as client:
        client.alarms.delete(name)
    common.say(f"Deleted alarm {name}", "green")


@alarm_app.command("history")
def history(
    ctx: typer.Context,
    name: str,
    limit: Annotated[int, typer.Option(help="At most this many items.")] = 100,
    as_json: bool = JSON_OPTION,
) -> None:
    """An alarm's state changes, configuration updates and actions, newest first."""
    with common.client(ctx) as client:
        items = client.alarms.history(name, limit=limit)
    if as_json:
        common.print_json(items)
        return
    grid = common.table("TIME", "TYPE", "SUMMARY", title=f"alarm {name}")
    for item in items:
        summary = item["summary"]
        if item["type"] == "StateUpdate":
            summary = f"{summary}: {item['data']['reason']}"
        grid.add_row(common.when(item["timestamp"]), item["type"], summary)
    common.console.print(grid)


def register(app: typer.Typer) -> None:
    """Add ``faasbox alarm ...`` to ``app``."""
    app.add_typer(alarm_app, name="alarm")
