"""Access: ``faasbox keys``, ``faasbox policy``, ``faasbox role``, ``faasbox sts``,
``faasbox whoami`` and ``faasbox audit``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from faasbox.cli import common
from faasbox.cli.common import JSON_OPTION
from faasbox.cli.metrics import parse_duration
from faasbox.errors import InvalidParameterError

keys_app = typer.Typer(name="keys", help="Access keys (SigV4): who may call the API.",
                       no_args_is_help=True)
policy_app = typer.Typer(name="policy", help="Policies: which actions on which resources.",
                         no_args_is_help=True)
role_app = typer.Typer(name="role", help="Execution roles, for functions and assume-role.",
                       no_args_is_help=True)
sts_app = typer.Typer(name="sts", help="Temporary credentials.", no_args_is_help=True)

PolicyOpt = Annotated[list[str] | None, typer.Option("--policy", "-p",
                                                     help="Attach this policy (repeat).")]


def _q(name: str) -> str:
    return quote(name, safe="")


def _call(ctx: typer.Context, method: str, path: str, **kwargs: Any) -> Any:
    client = common.client(ctx)
    try:
        response = client.request(method, path, **kwargs)
    finally:
        client.close()
    return response.json() if response.content else None


# -- keys -------------------------------------------------------------------------------


@keys_app.command("create")
def create_key(ctx: typer.Context,
               description: Annotated[str, typer.Option("--description", "-d")] = "",
               policy: PolicyOpt = None, as_json: bool = JSON_OPTION) -> None:
    """A new access key; its secret is shown this once."""
    key = _call(ctx, "POST", "/v1/keys",
                json={"description": description, "policies": policy or []})
    if as_json:
        common.print_json(key)
        return
    common.say(f"access key {key['key_id']} created (policies: "
               f"{', '.join(key['policies']) or 'none: it may do nothing yet'})")
    print(f"aws_access_key_id = {key['key_id']}")
    print(f"aws_secret_access_key = {key['secret_access_key']}")
    common.say("The secret is not shown again.", style="yellow")


@keys_app.command("ls")
def list_keys(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Every access key (never a secret)."""
    keys = _call(ctx, "GET", "/v1/keys")["keys"]
    if as_json:
        common.print_json(keys)
        return
    grid = common.table("KEY ID", "STATUS", "POLICIES", "CREATED", "DESCRIPTION")
    for key in keys:
        grid.add_row(key["key_id"], key["status"], ", ".join(key["policies"]) or "-",
                     common.when(key["created_at"]), key["description"])
    common.console.print(grid)


@keys_app.command("rm")
def delete_key(ctx: typer.Context, key_id: str) -> None:
    """Delete an access key: requests it signs are refused from now on."""
    _call(ctx, "DELETE", f"/v1/keys/{_q(key_id)}")
    common.say(f"deleted access key {key_id}")


@keys_app.command("disable")
def disable_key(ctx: typer.Context, key_id: str) -> None:
    """Refuse requests signed with the key, keeping it (``enable`` brings it back)."""
    _call(ctx, "PATCH", f"/v1/keys/{_q(key_id)}", json={"status": "disabled"})
    common.say(f"access key {key_id} disabled")


@keys_app.command("enable")
def enable_key(ctx: typer.Context, key_id: str) -> None:
    _call(ctx, "PATCH", f"/v1/keys/{_q(key_id)}", json={"status": "active"})
    common.say(f"access key {key_id} enabled")


@keys_app.command("attach")
def attach_key(ctx: typer.Context, key_id: str, policy: str) -> None:
    """Attach a policy to a key."""
    _call(ctx, "PUT", f"/v1/keys/{_q(key_id)}/policies/{_q(policy)}")
    common.say(f"policy {policy} attached to {key_id}")


@keys_app.command("detach")
def detach_key(ctx: typer.Context, key_id: str, policy: str) -> None:
    _call(ctx, "DELETE", f"/v1/keys/{_q(key_id)}/policies/{_q(policy)}")
    common.say(f"policy {policy} detached from {key_id}")


# -- policies ---------------------------------------------------------------------------


@policy_app.command("put")
def put_policy(ctx: typer.Context, name: str,
               document: Annotated[str, typer.Argument(
                   help="The policy document: a JSON file, - for stdin, or JSON text.")],
               description: Annotated[str, typer.Option("--description", "-d")] = "") -> None:
    """Create or replace a policy (IAM's format: Statement, Effect, Action, Resource)."""
    if document == "-":
        text = sys.stdin.read()
    elif document.lstrip().startswith("{"):
        text = document
    else:
        try:
            text = Path(document).read_text()
        except OSError as exc:
            raise InvalidParameterError(f"policy document {document}: {exc.strerror}") from None
    _call(ctx, "PUT", f"/v1/policies/{_q(name)}",
          json={"document": text, "description": description})
    common.say(f"policy {name} saved")


@policy_app.command("ls")
def list_policies(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    found = _call(ctx, "GET", "/v1/policies")["policies"]
    if as_json:
        common.print_json(found)
        return
    grid = common.table("POLICY", "ATTACHED TO", "DESCRIPTION")
    for policy in found:
        grid.add_row(policy["name"], ", ".join(policy["attached_to"]) or "-",
                     policy["description"])
    common.console.print(grid)


@policy_app.command("show")
def show_policy(ctx: typer.Context, name: str) -> None:
    common.print_json(_call(ctx, "GET", f"/v1/policies/{_q(name)}"))


@policy_app.command("rm")
def delete_policy(ctx: typer.Context, name: str) -> None:
    _call(ctx, "DELETE", f"/v1/policies/{_q(name)}")
    common.say(f"deleted policy {name}")


# -- roles ------------------------------------------------------------------------------


@role_app.command("create")
def create_role(ctx: typer.Context, name: str, policy: PolicyOpt = None,
                description: Annotated[str, typer.Option("--description", "-d")] = "",
                max_session: Annotated[int, typer.Option(
                    "--max-session", help="Longest session in seconds (900-43200).")] = 43_200,
                ) -> None:
    """A role: functions run with its credentials (``deploy --role``); people assume it."""
    _call(ctx, "PUT", f"/v1/roles/{_q(name)}", json={
        "description": description, "policies": policy or [], "max_session_s": max_session})
    common.say(f"role {name} created")


@role_app.command("ls")
def list_roles(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    found = _call(ctx, "GET", "/v1/roles")["roles"]
    if as_json:
        common.print_json(found)
        return
    grid = common.table("ROLE", "POLICIES", "MAX SESSION", "DESCRIPTION")
    for role in found:
        grid.add_row(role["name"], ", ".join(role["policies"]) or "-",
                     f"{role['max_session_s']} s", role["description"])
    common.console.print(grid)


@role_app.command("show")
def show_role(ctx: typer.Context, name: str) -> None:
    common.print_json(_call(ctx, "GET", f"/v1/roles/{_q(name)}"))


@role_app.command("rm")
def delete_role(ctx: typer.Context, name: str) -> None:
    """Delete a role no function uses."""
    _call(ctx, "DELETE", f"/v1/roles/{_q(name)}")
    common.say(f"deleted role {name}")


@role_app.command("attach")
def attach_role(ctx: typer.Context, name: str, policy: str) -> None:
    _call(ctx, "PUT", f"/v1/roles/{_q(name)}/policies/{_q(policy)}")
    common.say(f"policy {policy} attached to role {name}")


@role_app.command("detach")
def detach_role(ctx: typer.Context, name: str, policy: str) -> None:
    _call(ctx, "DELETE", f"/v1/roles/{_q(name)}/policies/{_q(policy)}")
    common.say(f"policy {policy} detached from role {name}")


# -- temporary credentials, identity, audit ---------------------------------------------


@sts_app.command("assume-role")
def assume_role(ctx: typer.Context, role: str,
                duration: Annotated[int, typer.Option(
                    "--duration", help="Seconds the credentials last (900-43200).")] = 3600,
                session_name: Annotated[str, typer.Option("--session-name")] = "",
                as_json: bool = JSON_OPTION) -> None:
    """Temporary credentials of ROLE: printed as shell exports (or --json)."""
    session = _call(ctx, "POST", f"/v1/roles/{_q(role)}/assume",
                    json={"duration_s": duration, "session_name": session_name})
    if as_json:
        common.print_json(session)
        return
    print(f"export FAASBOX_ACCESS_KEY_ID={session['access_key_id']}")
    print(f"export FAASBOX_SECRET_ACCESS_KEY={session['secret_access_key']}")
    print(f"export FAASBOX_SESSION_TOKEN={session['session_token']}")
    common.err_console.print(f"expires {common.when(session['expiration'])}")


def whoami(ctx: typer.Context) -> None:
    """Who the CLI signs as."""
    common.print_json(_call(ctx, "GET", "/v1/whoami"))


def audit(ctx: typer.Context,
          since: Annotated[str | None, typer.Option(
              "--since", help="How far back: 30m, 2h, 1d.")] = None,
          principal: Annotated[str | None, typer.Option(
              "--principal", help="A key id, a role, or key:ID / role:NAME.")] = None,
          action: Annotated[str | None, typer.Option(
              "--action", help="Action pattern: functions:*, queues:SendMessage.")] = None,
          resource: Annotated[str | None, typer.Option("--resource",
                                                       help="Resource pattern.")] = None,
          outcome: Annotated[str | None, typer.Option(
              "--outcome", help="allowed, denied or failed.")] = None,
          limit: Annotated[int, typer.Option("--limit", "-n")] = 50,
          as_json: bool = JSON_OPTION) -> None:
    """The audit log: who called what, on which resource, with which outcome."""
    params: dict[str, Any] = {"limit": limit}
    if since:
        params["since"] = time.time() - parse_duration(since)
    for key, value in (("principal", principal), ("action", action), ("resource", resource),
                       ("outcome", outcome)):
        if value:
            params[key] = value
    entries = _call(ctx, "GET", "/v1/audit", params=params)["entries"]
    if as_json:
        common.print_json(entries)
        return
    grid = common.table("TIME", "PRINCIPAL", "ACTION", "RESOURCE", "OUTCOME", "STATUS")
    for item in entries:
        grid.add_row(common.when(item["time"]), item["principal"] or "-",
                     item["action"] or f"{item['method']} {item['path']}",
                     item["resource"] or "-", item["outcome"], str(item["status"]))
    common.console.print(grid)


def register(app: typer.Typer) -> None:
    for sub in (keys_app, policy_app, role_app, sts_app):
        app.add_typer(sub)
    app.command("whoami")(whoami)
    app.command("audit")(audit)


