"""Access keys, policies, roles, temporary credentials and the audit log over HTTP."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from faasbox.auth.roles import SESSION_DEFAULT_S, SESSION_MAX_S
from faasbox.server.auth import authority_of, principal_of
from faasbox.server.deps import ClientDep

router = APIRouter(prefix="/v1", tags=["access"])


class NewKey(BaseModel):
    description: str = Field("", max_length=256)
    policies: list[str] = Field(default_factory=list, max_length=10)


class KeyUpdate(BaseModel):
    status: str


class PolicyBody(BaseModel):
    document: dict[str, Any] | str
    description: str = Field("", max_length=256)


class RoleBody(BaseModel):
    description: str = Field("", max_length=256)
    policies: list[str] = Field(default_factory=list, max_length=10)
    max_session_s: int = SESSION_MAX_S


class AssumeRole(BaseModel):
    duration_s: int = SESSION_DEFAULT_S
    session_name: str = Field("", max_length=64)


# -- keys -------------------------------------------------------------------------------


@router.get("/keys")
def list_keys(request: Request) -> dict[str, list[dict[str, Any]]]:
    """Every access key (never a secret)."""
    authority = authority_of(request)
    return {"keys": [authority.describe_key(k) for k in authority.keys.list()]}


@router.post("/keys", status_code=201)
def create_key(body: NewKey, request: Request) -> dict[str, Any]:
    """A new access key with ``policies`` attached; its secret is in this answer only."""
    authority = authority_of(request)
    key, secret = authority.mutate(lambda: authority.create_key(body.description,
                                                                body.policies))
    return {**authority.describe_key(key), "secret_access_key": secret}


@router.get("/keys/{key_id}")
def get_key(key_id: str, request: Request) -> dict[str, Any]:
    authority = authority_of(request)
    return authority.describe_key(authority.keys.get(key_id))


@router.patch("/keys/{key_id}")
def update_key(key_id: str, body: KeyUpdate, request: Request) -> dict[str, Any]:
    """Enable or disable a key (``status``: ``active`` or ``disabled``)."""
    authority = authority_of(request)
    key = authority.mutate(lambda: authority.keys.set_status(key_id, body.status))
    return authority.describe_key(key)


@router.delete("/keys/{key_id}", status_code=204)
def delete_key(key_id: str, request: Request) -> None:
    authority_of(request).delete_key(key_id)


@router.put("/keys/{key_id}/policies/{policy}")
def attach_key_policy(key_id: str, policy: str, request: Request) -> dict[str, Any]:
    authority = authority_of(request)
    key = authority.keys.get(key_id)
    authority.mutate(lambda: authority.policies.attach(f"key:{key_id}", policy))
    return authority.describe_key(key)


@router.delete("/keys/{key_id}/policies/{policy}")
def detach_key_policy(key_id: str, policy: str, request: Request) -> dict[str, Any]:
    authority = authority_of(request)
    key = authority.keys.get(key_id)
    authority.mutate(lambda: authority.policies.detach(f"key:{key_id}", policy))
    return authority.describe_key(key)


# -- policies ---------------------------------------------------------------------------


@router.get("/policies")
def list_policies(request: Request) -> dict[str, list[dict[str, Any]]]:
    return {"policies": authority_of(request).policies.all()}


@router.put("/policies/{name}")
def put_policy(name: str, body: PolicyBody, request: Request) -> dict[str, Any]:
    """Create or replace a managed policy (IAM's document format)."""
    authority = authority_of(request)
    result: dict[str, Any] = authority.mutate(
        lambda: authority.policies.put(name, body.document, body.description))
    return result


@router.get("/policies/{name}")
def get_policy(name: str, request: Request) -> dict[str, Any]:
    return authority_of(request).policies.get(name)


@router.delete("/policies/{name}", status_code=204)
def delete_policy(name: str, request: Request) -> None:
    authority = authority_of(request)
    authority.mutate(lambda: authority.policies.delete(name))


# -- roles and temporary credentials ----------------------------------------------------


@router.get("/roles")
def list_roles(request: Request) -> dict[str, list[dict[str, Any]]]:
    return {"roles": authority_of(request).roles.all()}


@router.put("/roles/{name}", status_code=201)
def create_role(name: str, body: RoleBody, request: Request) -> dict[str, Any]:
    authority = authority_of(request)
    result: dict[str, Any] = authority.mutate(lambda: authority.roles.create(
        name, body.description, policies=body.policies, max_session_s=body.max_session_s))
    return result


@router.get("/roles/{name}")
def get_role(name: str, request: Request) -> dict[str, Any]:
    return authority_of(request).roles.get(name)


@router.delete("/roles/{name}", status_code=204)
def delete_role(name: str, request: Request, client: ClientDep) -> None:
    """Delete a role that no function version (``$LATEST`` or published) names."""
    authority = authority_of(request)
    users: list[str] = []
    for latest in client.list_functions():
        versions = [latest, *client.get_function(latest["function"])["versions"]]
        users += sorted({v["function"] if v["version"] == "$LATEST"
                         else f"{v['function']}:{v['version']}"
                         for v in versions if v.get("role") == name})
    authority.mutate(lambda: authority.roles.delete(name, users))


@router.put("/roles/{name}/policies/{policy}")
def attach_role_policy(name: str, policy: str, request: Request) -> dict[str, Any]:
    authority = authority_of(request)
    authority.roles.get(name)
    authority.mutate(lambda: authority.policies.attach(f"role:{name}", policy))
    return authority.roles.get(name)


@router.delete("/roles/{name}/policies/{policy}")
def detach_role_policy(name: str, policy: str, request: Request) -> dict[str, Any]:
    authority = authority_of(request)
    authority.roles.get(name)
    authority.mutate(lambda: authority.policies.detach(f"role:{name}", policy))
    return authority.roles.get(name)


@router.post("/roles/{name}/assume")
def assume_role(name: str, body: AssumeRole, request: Request) -> dict[str, Any]:
    """Temporary credentials of the role (STS AssumeRole): access key, secret, session
    token and expiration; ``duration_s`` 900-43,200 (default 3,600)."""
    session = authority_of(request).assume_role(name, body.duration_s, body.session_name)
    return session.to_dict()


@router.get("/whoami")
def whoami(request: Request) -> dict[str, Any]:
    """Who signed this request (STS GetCallerIdentity): allowed to every valid key."""
    principal = principal_of(request)
    return principal.to_dict() if principal else {}


@router.get("/audit")
def audit(request: Request, since: float | None = None, until: float | None = None,
          principal: str | None = None, action: str | None = None,
          resource: str | None = None, outcome: str | None = None,
          limit: int = 100) -> dict[str, list[dict[str, Any]]]:
    """The newest ``limit`` audit entries that match, oldest first."""
    return {"entries": authority_of(request).audit.query(
        since=since, until=until, principal=principal, action=action, resource=resource,
        outcome=outcome, limit=limit)}
