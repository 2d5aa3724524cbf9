"""What every command shares: the client, option parsing and output."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from faasbox.config import Settings
from faasbox.errors import FaasboxError, InvalidParameterError, ServerUnavailableError
from faasbox.remote import RemoteClient

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
if not console.is_terminal:  # piped or captured: keep table rows whole, not 80 wide
    console.width = max(console.width, 160)

JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")


@dataclass
class Options:
    """Global options, kept on the typer context."""

    endpoint: str | None = None


def settings(**overrides: Any) -> Settings:
    """Settings from ``FAASBOX_*`` variables, with command-line flags winning."""
    try:
        return Settings.from_env(**overrides)
    except ValueError as exc:
        raise InvalidParameterError(str(exc)) from exc


def client(ctx: typer.Context) -> RemoteClient:
    """A client for the server at ``--endpoint`` / ``FAASBOX_ENDPOINT``."""
    options: Options = ctx.obj or Options()
    return RemoteClient(settings(endpoint=options.endpoint).endpoint)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def print_error(exc: FaasboxError) -> None:
    """The one red line an error is shown as: ``errorType: message``."""
    err_console.print(Text(f"{exc.code}: {exc.message}", style="bold red"), soft_wrap=True)


def exit_code(exc: FaasboxError) -> int:
    return 2 if isinstance(exc, ServerUnavailableError) else 1


def say(message: str, style: str | None = None) -> None:
    """A status line for people (stderr stays free of it when piping JSON)."""
    console.print(Text(message, style=style or ""), soft_wrap=True)


def parse_env(pairs: list[str]) -> dict[str, str]:
    """``K=V`` pairs from repeated ``--env`` flags."""
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidParameterError(f"--env {pair!r}: expected KEY=VALUE")
        env[key] = value
    return env


def when(ts: float | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts).strftime(fmt)


def short(sha: str | None, size: int = 12) -> str:
    return sha[:size] if sha else "-"


def table(*columns: str, title: str | None = None) -> Table:
    grid = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
                 pad_edge=False)
    for column in columns:
        grid.add_column(column, overflow="fold")
    return grid


def base_name(name: str) -> str:
    """The function name of ``name[:qualifier]``."""
    return name.partition(":")[0]
