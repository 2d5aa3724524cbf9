"""``faasbox metrics``: a function's (or queue's) metrics as a table with trends, and
the raw metrics query.

``faasbox metrics NAME`` is short for ``faasbox metrics show NAME``: the group sends
any first word that is not one of its commands (``show``, ``datapoints``, ``list``) to
``show``. A function named like a command is shown with ``faasbox metrics show NAME``.
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from faasbox.api.metrics import LAMBDA, METRICS, SQS, parse_dimensions
from faasbox.cli import common
from faasbox.cli.common import JSON_OPTION
from faasbox.errors import InvalidParameterError

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_BARS = "▁▂▃▄▅▆▇█"


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``2d`` -> seconds; raises InvalidParameterError."""
    found = _DURATION.match(text.strip())
    if not found or float(found.group(1)) <= 0:
        raise InvalidParameterError(
            f"--since {text!r}: expected a duration such as 90s, 15m, 1h or 2d"
        )
    return float(found.group(1)) * _UNITS[found.group(2)]


def sparkline(values: list[Any]) -> str:
    """One character per period: bar height by value, a space where there is no data."""
    numbers = [v for v in values if v is not None]
    top = max(numbers, default=0)
    if top <= 0:
        return "".join(" " if v is None else _BARS[0] for v in values)
    return "".join(
        " " if v is None else _BARS[min(len(_BARS) - 1, int(v / top * (len(_BARS) - 1) + 0.5))]
        for v in values
    )


def _number(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    shown = f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"
    return f"{shown}{unit}"


def _function_rows(summary: dict[str, Any]) -> list[tuple[str, str, str, list[Any]]]:
    totals, series = summary["totals"], summary["series"]
    duration = totals["Duration"]
    shown = {
        "Invocations": ("Sum", _number(totals["Invocations"])),
        "Errors": ("Sum", _number(totals["Errors"])),
        "Throttles": ("Sum", _number(totals["Throttles"])),
        "Duration": ("avg / p50 / p99 / max", " / ".join(
            _number(duration[k], " ms") for k in ("average", "p50", "p99", "maximum"))),
        "ConcurrentExecutions": ("Maximum", _number(totals["ConcurrentExecutions"])),
        "ColdStarts": ("Sum", _number(totals["ColdStarts"])),
    }
    return [(metric, stat, value, [p[1] for p in series[metric]])
            for metric, (stat, value) in shown.items()]


def _queue_rows(summary: dict[str, Any]) -> list[tuple[str, str, str, list[Any]]]:
    unit = {"ApproximateAgeOfOldestMessage": " s"}
    return [
        (metric, "latest / max",
         f"{_number(summary['latest'][metric], unit.get(metric, ''))} / "
         f"{_number(summary['maximum'][metric], unit.get(metric, ''))}",
         [p[1] for p in summary["series"][metric]])
        for metric in METRICS[SQS]
    ]


class _ShowByDefault(TyperGroup):
    """A group whose first argument, when it names no command, is a NAME for ``show``
    (``faasbox metrics hello`` = ``faasbox metrics show hello``)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's click Context
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["show", *args]
        return super().parse_args(ctx, args)


metrics_app = typer.Typer(
    cls=_ShowByDefault, no_args_is_help=True,
    help="Metrics: `faasbox metrics NAME` shows a function's (or, with --queue, a "
         "queue's) metrics; `datapoints` and `list` query any metric.",
)


@metrics_app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A function name (or a queue with --queue).")],
    since: Annotated[str, typer.Option("--since", help="How far back: 90s, 15m, 1h, 2d.")] = "1h",
    metric: Annotated[
        list[str] | None, typer.Option("--metric", "-m", help="Only this metric (repeatable).")
    ] = None,
    queue: Annotated[bool, typer.Option("--queue", help="NAME is a queue.")] = False,
    period: Annotated[
        int | None, typer.Option("--period", help="Seconds per trend point (multiple of 10).")
    ] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a function's (or a queue's) metrics, with a trend line each.

    A function: invocations, errors, throttles, duration, concurrency, cold starts.
    A queue (--queue): visible, in flight, age of the oldest message."""
    namespace = SQS if queue else LAMBDA
    for wanted in metric or []:
        if wanted not in METRICS[namespace]:
            raise InvalidParameterError(
                f"unknown metric {wanted!r} in {namespace}: use one of "
                f"{', '.join(METRICS[namespace])}"
            )
    start = time.time() - parse_duration(since)
    with common.client(ctx) as client:
        client.metrics.collect_now()  # show calls that just returned, not the last tick's
        if queue:
            summary = client.metrics.queue_summary(name, since=start, period_s=period)
        else:
            summary = client.metrics.function_summary(name, since=start, period_s=period)
    if as_json:
        common.print_json(summary)
        return
    rows = _queue_rows(summary) if queue else _function_rows(summary)
    title = (f"{'queue' if queue else 'function'} {name}: since "
             f"{common.when(summary['since'])}, {summary['period_s']} s per point")
    grid = common.table("METRIC", "STATISTIC", "VALUE", "TREND", title=title)
    for metric_name, stat, value, points in rows:
        if not metric or metric_name in metric:
            grid.add_row(metric_name, stat, value, sparkline(points))
    common.console.print(grid)


@metrics_app.command("datapoints")
def datapoints(
    ctx: typer.Context,
    namespace: Annotated[str, typer.Argument(help="AWS/Lambda or AWS/SQS.")],
    metric: Annotated[str, typer.Argument(help="e.g. Duration, Errors, "
                                                "ApproximateNumberOfMessagesVisible.")],
    dimension: Annotated[list[str] | None, typer.Option(
        "--dimension", "--dim", help="Name=value, e.g. FunctionName=hello.")] = None,
    statistic: Annotated[str, typer.Option(
        "--statistic", "--stat", help="SampleCount, Sum, Average, Minimum, Maximum or pNN.")
    ] = "Sum",
    period: Annotated[int, typer.Option(
        "--period", help="Seconds per datapoint (multiple of 10).")] = 60,
    since: Annotated[str, typer.Option("--since", help="How far back: 90s, 15m, 1h, 2d.")] = "1h",
    as_json: bool = JSON_OPTION,
) -> None:
    """One statistic of one metric per period, oldest first (SDK metrics.get)."""
    dimensions = parse_dimensions(dimension or [], "--dimension")
    start = time.time() - parse_duration(since)
    with common.client(ctx) as client:
        client.metrics.collect_now()  # include calls that just returned
        points = client.metrics.get(namespace, metric, dimensions, statistic=statistic,
                                    period_s=period, since=start)
    if as_json:
        common.print_json(points)
        return
    dims = ",".join(f"{k}={v}" for k, v in dimensions.items())
    common.say(f"{statistic}({metric} {dims}) per {period} s since {common.when(start)}")
    if not points:
        common.say("No datapoints.")
        return
    grid = common.table("TIME", "VALUE", "SAMPLES")
    for point in points:
        grid.add_row(common.when(point["timestamp"]), _number(point["value"]),
                     f"{int(point['sample_count']):,}")
    common.console.print(grid)


@metrics_app.command("list")
def list_metrics(
    ctx: typer.Context,
    namespace: Annotated[str | None, typer.Option(help="Only AWS/Lambda or AWS/SQS.")] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Metrics that have datapoints kept (SDK metrics.list_metrics)."""
    with common.client(ctx) as client:
        found = client.metrics.list_metrics(namespace)
    if as_json:
        common.print_json(found)
        return
    grid = common.table("NAMESPACE", "METRIC", "DIMENSIONS")
    for item in found:
        dims = ",".join(f"{k}={v}" for k, v in item["dimensions"].items())
        grid.add_row(item["namespace"], item["metric"], dims)
    common.console.print(grid)


def register(app: typer.Typer) -> None:
    """Add ``faasbox metrics ...`` to ``app``."""
    app.add_typer(metrics_app, name="metrics")
