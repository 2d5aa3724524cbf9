"""Execution roles: named sets of policies that temporary credentials act under.

Every function has one (``default`` unless it names another); its sandboxes get the
role's temporary credentials. People assume a role with ``faasbox sts assume-role``.
"""

from __future__ import annotations

import re
import time
from typing import Any

import sqlalchemy as sa

from faasbox.auth.policies import FUNCTION_DEFAULT, PolicyStore, attachments
from faasbox.errors import ConflictError, InvalidParameterError, RoleNotFoundError
from faasbox.stores.database import Database

#: The role of a function that names none: FunctionDefaultAccess (invoke functions,
#: queues, objects), nothing of the control plane.
DEFAULT_ROLE = "default"
_NAME = re.compile(r"^[A-Za-z0-9_+=,.@-]{1,64}$")

metadata = sa.MetaData()
roles = sa.Table(
    "roles",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("description", sa.String(256), nullable=False, default=""),
    sa.Column("max_session_s", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

#: STS's range for a session's duration, and its default.
SESSION_MIN_S = 900
SESSION_MAX_S = 43_200
SESSION_DEFAULT_S = 3_600


def validate_role_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidParameterError(
            f"role name {name!r} must be 1-64 characters of letters, digits and _+=,.@-")
    return name


def principal(role: str) -> str:
    return f"role:{role}"


class RoleStore:
    """Roles in the state database; their policies through the :class:`PolicyStore`."""

    def __init__(self, db: Database, policies: PolicyStore) -> None:
        self.db = db
        self.policies = policies
        db.create(metadata)
        with db.write() as conn:
            if conn.execute(sa.select(roles.c.name).where(roles.c.name == DEFAULT_ROLE)
                            ).first() is None:
                conn.execute(roles.insert().values(
                    name=DEFAULT_ROLE, description="the execution role of functions that "
                    "name none", max_session_s=SESSION_MAX_S, created_at=time.time()))
                conn.execute(attachments.insert().values(principal=principal(DEFAULT_ROLE),
                                                         policy=FUNCTION_DEFAULT))

    def create(self, name: str, description: str = "", *, policies: list[str] | None = None,
               max_session_s: int = SESSION_MAX_S) -> dict[str, Any]:
        validate_role_name(name)
        if not isinstance(description, str) or len(description) > 256:
            raise InvalidParameterError("description must be text of at most 256 characters")
        if (isinstance(max_session_s, bool) or not isinstance(max_session_s, int)
                or not SESSION_MIN_S <= max_session_s <= SESSION_MAX_S):
            raise InvalidParameterError(f"max_session_s={max_session_s!r} is out of range "
                                        f"{SESSION_MIN_S}-{SESSION_MAX_S}")
        for policy in policies or []:
            self.policies.get(policy)  # PolicyNotFoundError before anything is made
        with self.db.write() as conn:
            if conn.execute(sa.select(roles.c.name).where(roles.c.name == name)).first():
                raise ConflictError(f"role {name} already exists")
            conn.execute(roles.insert().values(name=name, description=description,
                                               max_session_s=max_session_s,
                                               created_at=time.time()))
        for policy in policies or []:
            self.policies.attach(principal(name), policy)
        return self.get(name)

    def get(self, name: str) -> dict[str, Any]:
        with self.db.read() as conn:
            row = conn.execute(sa.select(roles).where(roles.c.name == name)).first()
        if row is None:
            raise RoleNotFoundError(name)
        return {"name": row.name, "description": row.description,
                "max_session_s": row.max_session_s, "created_at": row.created_at,
                "policies": self.policies.attached(principal(row.name))}

    def exists(self, name: str) -> bool:
        with self.db.read() as conn:
            return conn.execute(sa.select(roles.c.name).where(roles.c.name == name)
                                ).first() is not None

    def all(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            names = conn.execute(sa.select(roles.c.name).order_by(roles.c.name)
                                 ).scalars().all()
        return [self.get(name) for name in names]

    def delete(self, name: str, used_by: list[str]) -> None:
        """Delete a role no function uses (``used_by``: the functions that name it)."""
        if name == DEFAULT_ROLE:
            raise ConflictError(f"role {DEFAULT_ROLE} is built in and cannot be deleted")
        if used_by:
            raise ConflictError(f"role {name} is the execution role of "
                                f"{', '.join(sorted(used_by))}: change theirs first")
        with self.db.write() as conn:
            if not conn.execute(roles.delete().where(roles.c.name == name)).rowcount:
                raise RoleNotFoundError(name)
        self.policies.detach_all(principal(name))
