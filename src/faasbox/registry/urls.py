"""Function URLs: which functions (and qualifiers) answer at ``/fn/{name}``, with which auth.

A URL config is a row of ``function_urls`` (function, qualifier or "" for none, auth).
Auth ``none`` lets anyone call the URL; ``platform`` requires ``Authorization: Bearer
<token>`` with the platform's API token, a random secret written at the first start to
``<home>/api_token`` (mode 0600). That token stands in for request signing and access
keys until the platform's authentication exists; the rest of the API is not
authenticated yet.
"""

from __future__ import annotations

import hmac
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from faasbox.errors import (
    ForbiddenError,
    FunctionUrlNotFoundError,
    InvalidParameterError,
    UnauthorizedError,
)
from faasbox.layout import private_file
from faasbox.model import LATEST
from faasbox.registry.functions import Registry, split_qualified
from faasbox.stores.database import Database

if TYPE_CHECKING:
    from faasbox.platform import Platform

AUTH_MODES = ("none", "platform")
TOKEN_FILE = "api_token"

metadata = sa.MetaData()

function_urls = sa.Table(
    "function_urls",
    metadata,
    sa.Column("function", sa.String(64), primary_key=True),
    sa.Column("qualifier", sa.String(128), primary_key=True),
    sa.Column("auth", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


def token_path(home: Path) -> Path:
    """Where the platform's API token lives under ``home``."""
    return Path(home) / TOKEN_FILE


def load_token(home: Path) -> str:
    """The platform's API token, created (random, mode 0600) if it does not exist yet.
    Written to a temporary file and linked into place, so a crash never leaves a
    half-written token and two starts agree on one."""
    made = private_file(token_path(home), lambda: secrets.token_urlsafe(32).encode() + b"\n")
    return made.decode().strip()


class FunctionUrls:
    """URL configs stored on the platform's database, and the check of a caller."""

    def __init__(self, database: Database, registry: Registry, home: Path, endpoint: str
                 ) -> None:
        self._db = database
        self._registry = registry
        self._endpoint = endpoint.rstrip("/")
        self._token = load_token(home)
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

    def authorize(self, config: dict[str, Any], authorization: str | None) -> None:
        """Check a caller of the URL ``config`` (from ``get``). Raises UnauthorizedError
        (auth ``platform`` and no bearer token) or ForbiddenError (a wrong token)."""
        if config["auth"] == "none":
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthorizedError(
                "this function URL needs 'Authorization: Bearer <token>' with the platform's "
                "API token (see `faasbox url token`)"
            )
        if not hmac.compare_digest(token.strip().encode(), self._token.encode()):
            raise ForbiddenError("the bearer token is not the platform's API token")

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
    return FunctionUrls(platform.database, platform.registry, platform.layout.home,
                        platform.settings.endpoint)
