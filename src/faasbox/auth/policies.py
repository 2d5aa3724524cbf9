"""Policies: JSON documents that allow or deny actions on resources, as IAM's.

A document has one or more statements, each with ``Effect`` (``Allow`` or ``Deny``),
``Action`` (``service:Operation``, wildcards ``*`` and ``?``: ``functions:Invoke``,
``objects:*``) and ``Resource`` (``kind:name`` patterns: ``function:report-*``,
``object:incoming/*``, ``*``). A request is allowed when some statement of the
principal's policies allows it and none denies it: deny by default, explicit deny wins.

Managed policies are named and stored; keys and roles have policies attached.
``AdministratorAccess`` (everything) and ``FunctionDefaultAccess`` (what the default
execution role may do) are built in and cannot be changed.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from faasbox.errors import ConflictError, InvalidParameterError, PolicyNotFoundError
from faasbox.stores.database import Database

#: The services whose actions policies name (an action of another service is a typo).
SERVICES = ("functions", "objects", "queues", "triggers", "schedules", "alarms", "metrics",
            "node", "keys", "policies", "roles", "sts", "audit")
#: IAM's limit on a managed policy document.
DOCUMENT_CHARS = 6144
STATEMENTS_MAX = 100
_NAME = re.compile(r"^[A-Za-z0-9_+=,.@-]{1,128}$")
_ACTION = re.compile(r"^(\*|[a-z*?]+:[A-Za-z*?]+)$")

ADMINISTRATOR = "AdministratorAccess"
FUNCTION_DEFAULT = "FunctionDefaultAccess"
BUILT_IN: dict[str, dict[str, Any]] = {
    ADMINISTRATOR: {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"}]},
    FUNCTION_DEFAULT: {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["functions:Invoke", "queues:*", "objects:*"],
         "Resource": "*"}]},
}

metadata = sa.MetaData()
policies = sa.Table(
    "policies",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("description", sa.String(256), nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
#: principal: "key:<key id>" or "role:<name>".
attachments = sa.Table(
    "policy_attachments",
    metadata,
    sa.Column("principal", sa.String(160), primary_key=True),
    sa.Column("policy", sa.String(128), primary_key=True),
)


@functools.lru_cache(maxsize=4096)
def _pattern(text: str, ignore_case: bool) -> re.Pattern[str]:
    body = re.escape(text).replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(f"^{body}$", re.IGNORECASE if ignore_case else 0)


def matches(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM's wildcard match: ``*`` any run of characters, ``?`` one character."""
    return _pattern(pattern, ignore_case).match(value) is not None


@dataclass(frozen=True)
class Statement:
    allow: bool
    actions: tuple[str, ...]
    resources: tuple[str, ...]

    def applies(self, action: str, resource: str) -> bool:
        return (any(matches(a, action, ignore_case=True) for a in self.actions)
                and any(matches(r, resource) for r in self.resources))


def parse(document: Any) -> tuple[Statement, ...]:
    """The statements of a policy document (JSON text or a parsed object);
    InvalidParameterError saying what is wrong."""
    if isinstance(document, (str, bytes)):
        if len(document) > DOCUMENT_CHARS:
            raise InvalidParameterError(f"the policy document is over {DOCUMENT_CHARS} "
                                        "characters")
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise InvalidParameterError(f"the policy document is not JSON: {exc}") from None
    if not isinstance(document, Mapping):
        raise InvalidParameterError("a policy document is a JSON object with a Statement")
    unknown = set(document) - {"Version", "Id", "Statement"}
    if unknown:
        raise InvalidParameterError(f"unknown policy document fields: {sorted(unknown)}")
    statements = document.get("Statement")
    if isinstance(statements, Mapping):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise InvalidParameterError("Statement must be a statement or a non-empty list of them")
    if len(statements) > STATEMENTS_MAX:
        raise InvalidParameterError(f"a policy has at most {STATEMENTS_MAX} statements")
    return tuple(_statement(i, s) for i, s in enumerate(statements))


def _statement(index: int, raw: Any) -> Statement:
    where = f"Statement[{index}]"
    if not isinstance(raw, Mapping):
        raise InvalidParameterError(f"{where} must be an object")
    unknown = set(raw) - {"Sid", "Effect", "Action", "Resource"}
    if unknown:
        raise InvalidParameterError(
            f"{where} has fields faasbox does not support: {sorted(unknown)} (use Effect, "
            "Action, Resource)")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise InvalidParameterError(f"{where}.Effect must be Allow or Deny, not {effect!r}")
    actions = _strings(raw.get("Action"), f"{where}.Action")
    for action in actions:
        service = action.partition(":")[0]
        if not _ACTION.match(action) or not (
                "*" in service or "?" in service or service in SERVICES or action == "*"):
            raise InvalidParameterError(
                f"{where}.Action {action!r} is not service:Operation with a service of "
                f"{', '.join(SERVICES)} (wildcards * and ? allowed)")
    resources = _strings(raw.get("Resource"), f"{where}.Resource")
    for resource in resources:
        if resource != "*" and ":" not in resource:
            raise InvalidParameterError(
                f"{where}.Resource {resource!r} is not kind:name (function:hello, "
                "queue:jobs-*, object:bucket/prefix/*) or *")
    return Statement(effect == "Allow", actions, resources)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, str) and 0 < len(v) <= 1024 for v in value)):
        raise InvalidParameterError(f"{where} must be a string or a non-empty list of strings")
    return tuple(value)


def allowed(statements: Iterable[Statement], action: str, resource: str) -> bool:
    """Deny by default; an explicit Deny wins over any Allow."""
    allow = False
    for statement in statements:
        if statement.applies(action, resource):
            if not statement.allow:
                return False
            allow = True
    return allow


def validate_policy_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidParameterError(
            f"policy name {name!r} must be 1-128 characters of letters, digits and _+=,.@-")
    return name


class PolicyStore:
    """Managed policies and what they are attached to, in the state database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.create(metadata)
        now = time.time()
        with db.write() as conn:
            for name, document in BUILT_IN.items():
                text = json.dumps(document)
                found = conn.execute(sa.select(policies.c.document)
                                     .where(policies.c.name == name)).scalar()
                if found is None:
                    conn.execute(policies.insert().values(
                        name=name, document=text, description="built in", created_at=now,
                        updated_at=now))
                elif found != text:  # a newer faasbox's built-in wins
                    conn.execute(policies.update().where(policies.c.name == name)
                                 .values(document=text, updated_at=now))

    def put(self, name: str, document: Any, description: str = "") -> dict[str, Any]:
        """Create or replace a managed policy."""
        validate_policy_name(name)
        if name in BUILT_IN:
            raise ConflictError(f"policy {name} is built in and cannot be changed")
        if not isinstance(description, str) or len(description) > 256:
            raise InvalidParameterError("description must be text of at most 256 characters")
        parse(document)
        text = document if isinstance(document, str) else json.dumps(document)
        now = time.time()
        with self.db.write() as conn:
            done = conn.execute(policies.update().where(policies.c.name == name).values(
                document=text, description=description, updated_at=now)).rowcount
            if not done:
                conn.execute(policies.insert().values(
                    name=name, document=text, description=description, created_at=now,
                    updated_at=now))
        return self.get(name)

    def get(self, name: str) -> dict[str, Any]:
        with self.db.read() as conn:
            row = conn.execute(sa.select(policies).where(policies.c.name == name)).first()
            used = conn.execute(sa.select(attachments.c.principal)
                                .where(attachments.c.policy == name)
                                .order_by(attachments.c.principal)).scalars().all()
        if row is None:
            raise PolicyNotFoundError(name)
        return {"name": row.name, "document": json.loads(row.document),
                "description": row.description, "built_in": row.name in BUILT_IN,
                "attached_to": list(used), "created_at": row.created_at,
                "updated_at": row.updated_at}

    def all(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.execute(sa.select(policies.c.name).order_by(policies.c.name)
                                ).scalars().all()
        return [self.get(name) for name in rows]

    def delete(self, name: str) -> None:
        if name in BUILT_IN:
            raise ConflictError(f"policy {name} is built in and cannot be deleted")
        with self.db.write() as conn:
            used = conn.execute(sa.select(attachments.c.principal)
                                .where(attachments.c.policy == name)).scalars().all()
            if used:
                raise ConflictError(f"policy {name} is attached to {', '.join(sorted(used))}: "
                                    "detach it first")
            if not conn.execute(policies.delete().where(policies.c.name == name)).rowcount:
                raise PolicyNotFoundError(name)

    def attach(self, principal: str, policy: str) -> None:
        with self.db.write() as conn:
            if conn.execute(sa.select(policies.c.name).where(policies.c.name == policy)
                            ).first() is None:
                raise PolicyNotFoundError(policy)
            exists = conn.execute(sa.select(attachments.c.policy).where(
                attachments.c.principal == principal, attachments.c.policy == policy)).first()
            if exists is None:
                conn.execute(attachments.insert().values(principal=principal, policy=policy))

    def detach(self, principal: str, policy: str) -> None:
        with self.db.write() as conn:
            if not conn.execute(attachments.delete().where(
                    attachments.c.principal == principal, attachments.c.policy == policy)
                    ).rowcount:
                raise PolicyNotFoundError(f"{policy} (not attached to {principal})")

    def detach_all(self, principal: str) -> None:
        with self.db.write() as conn:
            conn.execute(attachments.delete().where(attachments.c.principal == principal))

    def attached(self, principal: str) -> list[str]:
        with self.db.read() as conn:
            return list(conn.execute(sa.select(attachments.c.policy).where(
                attachments.c.principal == principal).order_by(attachments.c.policy)
            ).scalars().all())

    def statements(self, principal: str) -> tuple[Statement, ...]:
        """Every statement of every policy attached to ``principal``."""
        with self.db.read() as conn:
            texts = conn.execute(
                sa.select(policies.c.document).join(
                    attachments, attachments.c.policy == policies.c.name)
                .where(attachments.c.principal == principal)).scalars().all()
        return tuple(s for text in texts for s in parse(text))
