"""Function URLs: which functions (and qualifiers) answer at ``/fn/{name}``, with which auth.

A URL config is a row of ``function_urls`` (function, qualifier or "" for none, auth).
Auth ``none`` lets anyone call the URL; ``platform`` requires a request signed (SigV4)
by a principal whose policies allow ``functions:InvokeFunctionUrl`` on
``function:NAME`` (Lambda's ``AWS_IAM``), checked by the server's route.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from faasbox.errors import FunctionUrlNotFoundError, InvalidParameterError
from faasbox.model import LATEST
from faasbox.registry.functions import Registry, split_qualified
from faasbox.stores.database import Database

if TYPE_CHECKING:
    from faasbox.platform import Platform

AUTH_MODES = ("none", "platform")

metadata = sa.MetaData()

function_urls = sa.Table(
    "function_urls",
    metadata,
    sa.Column("function", sa.String(64), primary_key=True),
    sa.Column("qualifier", sa.String(128), primary_key=True),
    sa.Column("auth", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


class FunctionUrls:
    """URL configs stored on the platform's database, and the check of a caller."""

    def __init__(self, database: Database, registry: Registry, endpoint: str) -> None:
        self._db = database
        self._registry = registry
        self._endpoint = endpoint.rstrip("/")
        database.create(metadata)

    def set(self, name: str, qualifier: str | None = None, *, auth: str = "none") -> dict[str, Any]:
        """Create or replace the URL of ``name[:qualifier]``. Raises InvalidParameterError
        (auth not ``none``/``platform``, bad name) or NotFoundError (function, version
        or alias); nothing changes when it raises."""
        name, qualifier = _key(name, qualifier)
        if auth not in AUTH_MODES:
            raise InvalidParameterError(f"auth={auth!r} must be one of {', '.join(AUTH_MODES)}")
        self._registry.resolve(name, qualifier)
        with self._db.write() as conn:
            conn.execute(function_urls.delete().where(_match(name, qualifier)))
            conn.execute(function_urls.insert().values(
                function=name, qualifier=qualifier or "", auth=auth, created_at=time.time()
            ))
        return self._to_dict(name, qualifier, auth)

    def get(self, name: str, qualifier: str | None = None) -> dict[str, Any]:
        """The URL config of ``name[:qualifier]``. Raises FunctionUrlNotFoundError."""
        name, qualifier = _key(name, qualifier)
        with self._db.read() as conn:
            auth = conn.execute(
                sa.select(function_urls.c.auth).where(_match(name, qualifier))
            ).scalar()
        if auth is None:
            raise FunctionUrlNotFoundError(_shown(name, qualifier))
        return self._to_dict(name, qualifier, auth)

    def delete(self, name: str, qualifier: str | None = None) -> None:
        """Remove the URL; raises FunctionUrlNotFoundError when there is none."""
        name, qualifier = _key(name, qualifier)
        with self._db.write() as conn:
            done = conn.execute(function_urls.delete().where(_match(name, qualifier)))
        if not done.rowcount:
            raise FunctionUrlNotFoundError(_shown(name, qualifier))

    def list(self) -> list[dict[str, Any]]:
        """Every URL config, sorted by function and qualifier."""
        with self._db.read() as conn:
            rows = conn.execute(sa.select(function_urls).order_by(
                function_urls.c.function, function_urls.c.qualifier
            )).all()
        return [self._to_dict(r.function, r.qualifier or None, r.auth) for r in rows]

    def _to_dict(self, name: str, qualifier: str | None, auth: str) -> dict[str, Any]:
        return {"function": name, "qualifier": qualifier, "auth": auth,
                "url": f"{self._endpoint}/fn/{_shown(name, qualifier)}"}

    def close(self) -> None:
        """Nothing to release. Idempotent."""


def _key(name: str, qualifier: str | None) -> tuple[str, str | None]:
    name, qualifier = split_qualified(name, qualifier)
    return name, None if qualifier == LATEST else qualifier


def _match(name: str, qualifier: str | None) -> Any:
    return (function_urls.c.function == name) & (function_urls.c.qualifier == (qualifier or ""))


def _shown(name: str, qualifier: str | None) -> str:
    return f"{name}:{qualifier}" if qualifier else name


def attach(platform: Platform) -> FunctionUrls:
    return FunctionUrls(platform.database, platform.registry, platform.settings.endpoint)
