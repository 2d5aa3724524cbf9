"""Functions, versions and aliases: ``deploy``, ``ls``, ``show``, ``publish``,
``alias``, ``rm``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from faasbox.cli import common
from faasbox.cli.common import JSON_OPTION
from faasbox.errors import InvalidParameterError
from faasbox.server.manifest import Manifest

NameOpt = Annotated[
    str | None,
    typer.Option("--name", "-n", help="Function name (default: manifest, else folder name)"),
]
HandlerOpt = Annotated[
    str | None,
    typer.Option("--handler", help="module.function, required on creation (default: manifest)"),
]
MemoryOpt = Annotated[int | None, typer.Option("--memory", help="Memory size in MB.")]
TimeoutOpt = Annotated[int | None, typer.Option("--timeout", help="Timeout in seconds.")]
EnvOpt = Annotated[
    list[str] | None, typer.Option("--env", "-e", help="Environment variable KEY=VALUE.")
]
RequirementsOpt = Annotated[
    Path | None,
    typer.Option("--requirements", "-r", help="A requirements.txt to build a layer from."),
]
DescriptionOpt = Annotated[str | None, typer.Option("--description")]
NetworkOpt = Annotated[
    str | None, typer.Option("--network", help="host (default) or none (no network at "
                             "all; needs FAASBOX_ISOLATION namespace or cgroup).")
]
RoleOpt = Annotated[
    str | None, typer.Option("--role", help="Execution role: its temporary credentials "
                             "are the sandbox's (default: default).")
]
ReservedOpt = Annotated[
    int | None, typer.Option("--reserved-concurrency", help="At most N concurrent calls.")
]
PathArg = Annotated[Path, typer.Argument(help="A folder or a zip file with the code.")]


def deploy_request(
    path: Path,
    name: str | None,
    handler: str | None = None,
    memory: int | None = None,
    timeout: int | None = None,
    env: list[str] | None = None,
    requirements: Path | None = None,
    description: str | None = None,
    reserved_concurrency: int | None = None,
    network: str | None = None,
    role: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """The function name and ``Client.deploy`` arguments: flags over the folder's
    ``faasbox.json`` manifest (its environment is extended by ``--env``)."""
    if not path.exists():
        raise InvalidParameterError(f"{path}: no such folder or zip file")
    manifest = Manifest.load(path) if path.is_dir() else None
    found: dict[str, Any] = dict(manifest.settings) if manifest else {}
    flags = {
        "handler": handler,
        "memory_mb": memory,
        "timeout_s": timeout,
        "description": description,
        "reserved_concurrency": reserved_concurrency,
        "network": network,
        "role": role,
    }
    found.update({key: value for key, value in flags.items() if value is not None})
    if env:
        found["environment"] = {**found.get("environment", {}), **common.parse_env(env)}
    if requirements is not None:
        try:
            found["requirements"] = requirements.read_text()
        except OSError as exc:
            raise InvalidParameterError(f"--requirements {requirements}: {exc}") from exc
    default_name = manifest.name if manifest else path.resolve().stem
    return name or default_name, found


def deploy(
    ctx: typer.Context,
    path: PathArg,
    name: NameOpt = None,
    handler: HandlerOpt = None,
    memory: MemoryOpt = None,
    timeout: TimeoutOpt = None,
    env: EnvOpt = None,
    requirements: RequirementsOpt = None,
    publish: Annotated[bool, typer.Option("--publish", help="Also publish a version.")] = False,
    description: DescriptionOpt = None,
    reserved_concurrency: ReservedOpt = None,
    network: NetworkOpt = None,
    role: RoleOpt = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a function or update its code and configuration ($LATEST)."""
    fn_name, kwargs = deploy_request(
        path, name, handler, memory, timeout, env, requirements, description,
        reserved_concurrency, network, role,
    )
    with common.client(ctx) as client:
        info = client.deploy(fn_name, path, publish=publish, **kwargs)
    if as_json:
        common.print_json(info)
        return
    common.say(
        f"Deployed {info['function']} version {info['version']} "
        f"(handler {info['handler']}, {info['memory_mb']} MB, {info['timeout_s']} s, "
        f"code {common.short(info.get('code_sha256'))})",
        "green",
    )


def ls(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List functions."""
    with common.client(ctx) as client:
        functions = client.list_functions()
    if as_json:
        common.print_json(functions)
        return
    grid = common.table("NAME", "HANDLER", "MEMORY", "TIMEOUT", "CODE", "MODIFIED")
    for fn in functions:
        grid.add_row(
            fn["function"], fn["handler"], f"{fn['memory_mb']} MB", f"{fn['timeout_s']} s",
            common.short(fn.get("code_sha256")), common.when(fn.get("created_at")),
        )
    if functions:
        common.console.print(grid)
    else:
        common.say("No functions yet: faasbox deploy PATH --name NAME --handler app.handler")


def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="NAME[:QUALIFIER]")],
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a function's configuration, versions and aliases."""
    fn_name, _, qualifier = name.partition(":")
    with common.client(ctx) as client:
        info = client.get_function(fn_name, qualifier or None)
    if as_json:
        common.print_json(info)
        return
    grid = common.table("FIELD", "VALUE", title=f"{info['function']}:{info['version']}")
    for key, value in info.items():
        if key in ("versions", "aliases"):
            continue
        if key == "environment":
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        elif key == "created_at":
            value = common.when(value)
        grid.add_row(key, "-" if value is None else str(value))
    common.console.print(grid)
    versions = info.get("versions") or []
    if versions:
        listing = common.table("VERSION", "CODE", "DESCRIPTION", "CREATED", title="Versions")
        for item in versions:
            if isinstance(item, dict):
                listing.add_row(
                    str(item.get("version")), common.short(item.get("code_sha256")),
                    item.get("version_description") or "", common.when(item.get("created_at")),
                )
            else:
                listing.add_row(str(item), "", "", "")
        common.console.print(listing)
    aliases = info.get("aliases") or []
    if aliases:
        routing = common.table("ALIAS", "VERSION", "ADDITIONAL", "WEIGHT", title="Aliases")
        for item in aliases:
            routing.add_row(
                item["name"], str(item["version"]), item.get("additional_version") or "-",
                f"{item.get('additional_weight') or 0:.0%}",
            )
        common.console.print(routing)


def publish(
    ctx: typer.Context,
    name: str,
    description: DescriptionOpt = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Publish $LATEST as an immutable numbered version."""
    with common.client(ctx) as client:
        info = client.publish(name, description or "")
    if as_json:
        common.print_json(info)
        return
    common.say(f"Published {info['function']} version {info['version']}", "green")


def alias(
    ctx: typer.Context,
    name: str,
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS")],
    version: str,
    weight: Annotated[
        str | None,
        typer.Option("--weight", help="Send FRACTION (0-1) of calls to VERSION: VERSION=FRACTION"),
    ] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Point ALIAS at VERSION, optionally splitting traffic with another version."""
    additional_version, additional_weight = None, 0.0
    if weight is not None:
        other, sep, fraction = weight.partition("=")
        try:
            additional_weight = float(fraction)
        except ValueError:
            sep = ""
        if not sep or not other:
            raise InvalidParameterError(f"--weight {weight!r}: expected VERSION=FRACTION")
        additional_version = other
    with common.client(ctx) as client:
        info = client.set_alias(
            name, alias_name, version,
            additional_version=additional_version, additional_weight=additional_weight,
        )
    if as_json:
        common.print_json(info)
        return
    split = ""
    if info.get("additional_version"):
        split = f" ({info['additional_weight']:.0%} to version {info['additional_version']})"
    common.say(f"Alias {name}:{info['name']} -> version {info['version']}{split}", "green")


def rm(ctx: typer.Context, name: str) -> None:
    """Delete a function, its versions and aliases (records and logs stay)."""
    with common.client(ctx) as client:
        client.delete_function(name)
    common.say(f"Deleted {name}", "green")


def register(app: typer.Typer) -> None:
    app.command()(deploy)
    app.command()(ls)
    app.command()(show)
    app.command()(publish)
    app.command()(alias)
    app.command()(rm)
