"""Schedules: ``faasbox schedule create|update|ls|show|rm|enable|disable``."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from faasbox.cli import common
from faasbox.cli.common import JSON_OPTION
from faasbox.errors import InvalidParameterError
from faasbox.events.expressions import zone

schedule_app = typer.Typer(
    name="schedule", help="Run functions on a schedule (rate, cron, at).",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="Schedule name.")]
ExpressionOpt = Annotated[
    str | None,
    typer.Option("--expression", "-x",
                 help="rate(5 minutes), cron(0 9 ? * MON-FRI *), at(2030-01-31T09:00:00) "
                      "or a five-field cron."),
]
TargetOpt = Annotated[str | None, typer.Option("--target", "-t", help="FUNCTION[:QUALIFIER]")]
TimezoneOpt = Annotated[str | None, typer.Option("--timezone", "--tz", help="IANA timezone.")]
InputOpt = Annotated[
    str | None,
    typer.Option("--input", help="Fixed JSON event, or @FILE (default: a scheduled event)."),
]
OverlapOpt = Annotated[
    str | None, typer.Option("--overlap", help="skip (default): no run while one is going; "
                             "allow: runs may overlap."),
]
StartOpt = Annotated[
    str | None,
    typer.Option("--start-at", help="ISO time (naive = the schedule's timezone) or epoch "
                                     "seconds: rate() ticks count from it."),
]


def _input(raw: str | None) -> Any:
    if raw is None:
        return None
    text = raw
    if raw.startswith("@"):
        try:
            text = Path(raw[1:]).read_text()
        except OSError as exc:
            raise InvalidParameterError(f"--input {raw}: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidParameterError(f"--input is not valid JSON: {exc}") from exc


def _start(raw: str | None, timezone: str | None) -> float | None:
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameterError(
            f"--start-at {raw!r}: give an ISO time (2030-01-31T09:00:00) or epoch seconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone(timezone or "UTC"))
    return moment.timestamp()


def _when(ts: float | None, timezone: str) -> str:
    if ts is None:
        return "-"
    try:
        tz = ZoneInfo(timezone)
    except (KeyError, ValueError):
        tz = ZoneInfo("UTC")
    return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def _result(schedule: dict[str, Any]) -> str:
    status = schedule.get("last_status")
    if not status:
        return "-"
    error = schedule.get("last_error")
    return f"{status} ({error})" if error and status != "Running" else status


@schedule_app.command()
def create(
    ctx: typer.Context,
    name: NameArg,
    expression: ExpressionOpt = None,
    target: TargetOpt = None,
    timezone: TimezoneOpt = None,
    input: InputOpt = None,
    overlap: OverlapOpt = None,
    start_at: StartOpt = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled.")] = False,
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a schedule that invokes a function."""
    if not expression or not target:
        raise InvalidParameterError("schedule create needs --expression and --target")
    with common.client(ctx) as client:
        info = client.schedules.create(
            name, expression, target, timezone=timezone or "UTC", input=_input(input),
            overlap=overlap or "skip", enabled=not disabled, start_at=_start(start_at, timezone),
        )
    if as_json:
        common.print_json(info)
        return
    common.say(f"Created schedule {info['name']}: {info['expression']} -> {info['target']}, "
               f"next run {_when(info['next_run_at'], info['timezone'])}", "green")


@schedule_app.command()
def update(
    ctx: typer.Context,
    name: NameArg,
    expression: ExpressionOpt = None,
    target: TargetOpt = None,
    timezone: TimezoneOpt = None,
    input: InputOpt = None,
    no_input: Annotated[bool, typer.Option("--no-input", help="Send the scheduled event "
                                           "instead of a fixed input.")] = False,
    overlap: OverlapOpt = None,
    start_at: StartOpt = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Change a schedule; options left out are unchanged."""
    changes: dict[str, Any] = {
        key: value for key, value in {
            "expression": expression, "target": target, "timezone": timezone,
            "overlap": overlap, "start_at": _start(start_at, timezone),
        }.items() if value is not None
    }
    if input is not None:
        changes["input"] = _input(input)
    elif no_input:
        changes["input"] = None
    with common.client(ctx) as client:
        info = client.schedules.update(name, **changes)
    if as_json:
        common.print_json(info)
        return
    common.say(f"Updated schedule {info['name']}: next run "
               f"{_when(info['next_run_at'], info['timezone'])}", "green")


@schedule_app.command("ls")
def ls(
    ctx: typer.Context,
    prefix: Annotated[str | None, typer.Option("--prefix", help="Names starting so.")] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """List schedules with their last run, its result, and their next run."""
    with common.client(ctx) as client:
        schedules = client.schedules.list(prefix)
    if as_json:
        common.print_json(schedules)
        return
    if not schedules:
        common.say("No schedules yet: faasbox schedule create NAME --expression "
                   "'rate(5 minutes)' --target FUNCTION")
        return
    grid = common.table("NAME", "EXPRESSION", "TARGET", "STATE", "LAST RUN", "RESULT",
                        "NEXT RUN")
    for item in schedules:
        tz = item["timezone"]
        grid.add_row(
            item["name"], item["expression"] + ("" if tz == "UTC" else f" {tz}"),
            item["target"], "enabled" if item["enabled"] else "disabled",
            _when(item["last_run_at"], tz), _result(item), _when(item["next_run_at"], tz),
        )
    common.console.print(grid)


@schedule_app.command()
def show(ctx: typer.Context, name: NameArg, as_json: bool = JSON_OPTION) -> None:
    """Show one schedule."""
    with common.client(ctx) as client:
        info = client.schedules.get(name)
    if as_json:
        common.print_json(info)
        return
    grid = common.table("FIELD", "VALUE", title=info["name"])
    for key, value in info.items():
        if key.endswith("_at"):
            shown = _when(value, info["timezone"])
        elif key == "input":
            shown = "-" if value is None else json.dumps(value)
        else:
            shown = "-" if value is None else str(value)
        grid.add_row(key, shown)
    common.console.print(grid)


@schedule_app.command()
def rm(ctx: typer.Context, name: NameArg) -> None:
    """Delete a schedule."""
    with common.client(ctx) as client:
        client.schedules.delete(name)
    common.say(f"Deleted schedule {name}", "green")


@schedule_app.command()
def enable(ctx: typer.Context, name: NameArg, as_json: bool = JSON_OPTION) -> None:
    """Enable a schedule: it runs next at its first tick from now."""
    with common.client(ctx) as client:
        info = client.schedules.enable(name)
    if as_json:
        common.print_json(info)
        return
    common.say(f"Enabled schedule {name}: next run {_when(info['next_run_at'], info['timezone'])}",
               "green")


@schedule_app.command()
def disable(ctx: typer.Context, name: NameArg, as_json: bool = JSON_OPTION) -> None:
    """Disable a schedule (a run in progress finishes)."""
    with common.client(ctx) as client:
        info = client.schedules.disable(name)
    if as_json:
        common.print_json(info)
        return
    common.say(f"Disabled schedule {name}", "green")


def register(app: typer.Typer) -> None:
    """Add ``faasbox schedule ...`` to ``app``."""
    app.add_typer(schedule_app)
