"""``faasbox url set|show|rm|ls`` and ``faasbox async-config set|show|rm``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from faasbox.cli import common
from faasbox.cli.common import JSON_OPTION
from faasbox.registry.urls import AUTH_MODES

url_app = typer.Typer(help="Function URLs: HTTP endpoints at /fn/NAME.", no_args_is_help=True)
async_app = typer.Typer(
    help="How async invocations of a function are retried and where outcomes go.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="NAME[:QUALIFIER] (version or alias)")]


def _show_url(config: dict[str, Any], as_json: bool) -> None:
    if as_json:
        common.print_json(config)
        return
    grid = common.table("FUNCTION", "QUALIFIER", "AUTH", "URL")
    grid.add_row(config["function"], config["qualifier"] or "-", config["auth"], config["url"])
    common.console.print(grid)


@url_app.command("set")
def set_url(
    ctx: typer.Context,
    name: NameArg,
    auth: Annotated[
        str, typer.Option("--auth", help=f"Who may call it: {' or '.join(AUTH_MODES)}.")
    ] = "none",
    as_json: bool = JSON_OPTION,
) -> None:
    """Give a function an HTTP endpoint (or change its auth)."""
    with common.client(ctx) as client:
        config = client.set_function_url(name, auth=auth)
    _show_url(config, as_json)


@url_app.command("show")
def show_url(ctx: typer.Context, name: NameArg, as_json: bool = JSON_OPTION) -> None:
    """Show a function's URL config."""
    with common.client(ctx) as client:
        config = client.get_function_url(name)
    _show_url(config, as_json)


@url_app.command("rm")
def remove_url(ctx: typer.Context, name: NameArg) -> None:
    """Remove a function's URL (it answers 404 afterwards)."""
    with common.client(ctx) as client:
        client.delete_function_url(name)
    common.say(f"removed the URL of {name}")


@url_app.command("ls")
def list_urls(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List every function URL."""
    with common.client(ctx) as client:
        found = client.list_function_urls()
    if as_json:
        common.print_json(found)
        return
    grid = common.table("FUNCTION", "QUALIFIER", "AUTH", "URL")
    for config in found:
        grid.add_row(config["function"], config["qualifier"] or "-", config["auth"],
                     config["url"])
    common.console.print(grid)


def _show_config(config: dict[str, Any], as_json: bool) -> None:
    if as_json:
        common.print_json(config)
        return
    grid = common.table("FUNCTION", "QUALIFIER", "MAX RETRIES", "MAX EVENT AGE", "ON SUCCESS",
                        "ON FAILURE")
    grid.add_row(config["function"], config["qualifier"] or "-", str(config["max_retries"]),
                 f"{config['max_event_age_s']} s", config["on_success"] or "-",
                 config["on_failure"] or "-")
    common.console.print(grid)


@async_app.command("set")
def set_async_config(
    ctx: typer.Context,
    name: NameArg,
    max_retries: Annotated[
        int | None, typer.Option("--max-retries", help="Retries after a failure, 0-2.")
    ] = None,
    max_event_age_s: Annotated[
        int | None, typer.Option("--max-event-age", help="Seconds an event may wait, 60-21600.")
    ] = None,
    on_success: Annotated[
        str | None,
        typer.Option("--on-success", help='queue:NAME or function:NAME[:Q] ("" removes it).'),
    ] = None,
    on_failure: Annotated[
        str | None,
        typer.Option("--on-failure", help='queue:NAME or function:NAME[:Q] ("" removes it).'),
    ] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Set retries, maximum event age and destinations; options left out keep their value."""
    with common.client(ctx) as client:
        config = client.put_async_config(
            name, max_retries=max_retries, max_event_age_s=max_event_age_s,
            on_success=on_success, on_failure=on_failure,
        )
    _show_config(config, as_json)


@async_app.command("show")
def show_async_config(ctx: typer.Context, name: NameArg, as_json: bool = JSON_OPTION) -> None:
    """Show the async config in force (the defaults when none was set)."""
    with common.client(ctx) as client:
        config = client.get_async_config(name)
    _show_config(config, as_json)


@async_app.command("rm")
def remove_async_config(ctx: typer.Context, name: NameArg) -> None:
    """Go back to the default async config."""
    with common.client(ctx) as client:
        client.delete_async_config(name)
    common.say(f"{name} uses the default async config")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.add_typer(url_app, name="url")
    app.add_typer(async_app, name="async-config")
