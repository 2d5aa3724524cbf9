"""Functions, versions and aliases: ``/v1/functions``."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from faasbox.errors import InvalidParameterError
from faasbox.server.auth import may
from faasbox.server.deps import ClientDep

router = APIRouter(prefix="/v1/functions", tags=["functions"])


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeployBody(_Body):
    """A deployment: the package (a zip, base64) and configuration. Omitted or null
    fields keep their current value (or the default on creation)."""

    zip_base64: str | None = Field(None, description="the deployment package, a zip")
    handler: str | None = Field(None, examples=["app.handler"])
    memory_mb: int | None = None
    timeout_s: int | None = None
    environment: dict[str, str] | None = None
    description: str | None = None
    reserved_concurrency: int | None = None
    network: str | None = Field(None, description='"host" (default) or "none"')
    role: str | None = Field(None, description="execution role (default: default)")
    requirements: str | None = Field(None, description="text of a requirements.txt")
    publish: bool = False


class ConfigBody(_Body):
    """Configuration fields of ``$LATEST`` to change; fields left out are unchanged."""

    handler: str | None = None
    memory_mb: int | None = None
    timeout_s: int | None = None
    environment: dict[str, str] | None = None
    description: str | None = None
    reserved_concurrency: int | None = None
    network: str | None = Field(None, description='"host" or "none"')
    role: str | None = Field(None, description="execution role")
    requirements: str | None = Field(
        None, description='text of a requirements.txt to build a layer from; "" removes it'
    )


class PublishBody(_Body):
    description: str = ""


class AliasBody(_Body):
    version: str
    additional_version: str | None = None
    additional_weight: float = Field(0.0, ge=0.0, le=1.0)


@router.get("")
def list_functions(client: ClientDep) -> dict[str, list[dict[str, Any]]]:
    """Every function's ``$LATEST``, sorted by name."""
    return {"functions": client.list_functions()}


@router.post("/{name}")
def deploy(name: str, body: DeployBody, client: ClientDep, request: Request
           ) -> dict[str, Any]:
    """Create the function or update its ``$LATEST`` code and configuration. Naming a
    role needs roles:PassRole on it (its credentials become the function's)."""
    if body.role is not None:
        may(request, "roles:PassRole", f"role:{body.role}")
    zip_bytes = None
    if body.zip_base64 is not None:
        try:
            zip_bytes = base64.b64decode(body.zip_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidParameterError(f"zip_base64 is not valid base64: {exc}") from exc
    return client.deploy(
        name,
        zip_bytes=zip_bytes,
        handler=body.handler,
        memory_mb=body.memory_mb,
        timeout_s=body.timeout_s,
        environment=body.environment,
        description=body.description,
        reserved_concurrency=body.reserved_concurrency,
        network=body.network,
        role=body.role,
        requirements=body.requirements,
        publish=body.publish,
    )


@router.get("/{name}")
def get_function(name: str, client: ClientDep, qualifier: str | None = None) -> dict[str, Any]:
    """One function version (``$LATEST`` by default) plus its versions and aliases."""
    return client.get_function(name, qualifier)


@router.patch("/{name}/config")
def update_config(name: str, body: ConfigBody, client: ClientDep, request: Request
                  ) -> dict[str, Any]:
    """Change configuration fields of ``$LATEST`` (a role: roles:PassRole on it)."""
    if body.role is not None:
        may(request, "roles:PassRole", f"role:{body.role}")
    return client.update_config(name, **body.model_dump(exclude_unset=True))


@router.delete("/{name}", status_code=204)
def delete_function(name: str, client: ClientDep) -> Response:
    """Delete the function, its versions and aliases; records and logs stay."""
    client.delete_function(name)
    return Response(status_code=204)


@router.post("/{name}/versions", status_code=201, responses={200: {"description": (
    "$LATEST is unchanged since the newest version: that version, nothing published"
)}})
def publish(
    name: str, client: ClientDep, response: Response, body: PublishBody | None = None
) -> dict[str, Any]:
    """Snapshot ``$LATEST`` as an immutable numbered version: 201 with the new version,
    or 200 with the newest one when ``$LATEST`` is unchanged since it was published."""
    versions = client.get_function(name)["versions"]
    before = {str(v["version"] if isinstance(v, dict) else v) for v in versions}
    version = client.publish(name, body.description if body else "")
    if str(version["version"]) in before:
        response.status_code = 200
    return version


@router.put("/{name}/aliases/{alias}")
def set_alias(name: str, alias: str, body: AliasBody, client: ClientDep) -> dict[str, Any]:
    """Create or move an alias, optionally splitting traffic with a second version."""
    return client.set_alias(
        name,
        alias,
        body.version,
        additional_version=body.additional_version,
        additional_weight=body.additional_weight,
    )


@router.delete("/{name}/aliases/{alias}", status_code=204)
def delete_alias(name: str, alias: str, client: ClientDep) -> Response:
    """Remove an alias."""
    client.delete_alias(name, alias)
    return Response(status_code=204)
