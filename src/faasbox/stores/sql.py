"""SQLAlchemy Core adapter of the state store: SQLite (WAL) by default, PostgreSQL too.

Writes run in ``BEGIN IMMEDIATE`` transactions on SQLite, so two writers never both
read-then-upgrade and fail with "database is locked"; readers never block writers (WAL).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from faasbox.errors import (
    AliasNotFoundError,
    ConflictError,
    FunctionNotFoundError,
    VersionNotFoundError,
)
from faasbox.model import (
    LATEST,
    VERSION_RE,
    Alias,
    FunctionConfig,
    FunctionVersion,
    InvocationRecord,
    Status,
)
from faasbox.stores.database import Database
from faasbox.stores.state import StateStore

metadata = sa.MetaData()

functions = sa.Table(
    "functions",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("last_version", sa.Integer, nullable=False, default=0),
)

# version 0 is $LATEST; published versions count from 1.
versions = sa.Table(
    "versions",
    metadata,
    sa.Column("function", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("code_sha256", sa.String(64), nullable=False),
    sa.Column("layer_sha256", sa.String(64)),
    sa.Column("requirements_sha256", sa.String(64)),
    sa.Column("requirements_source", sa.String(16)),
    sa.Column("content_sha256", sa.String(64), nullable=False),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("function", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("additional_version", sa.Integer),
    sa.Column("additional_weight", sa.Float, nullable=False, default=0.0),
)

invocations = sa.Table(
    "invocations",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("function", sa.String(64), nullable=False),
    sa.Column("version", sa.String(16), nullable=False),
    sa.Column("qualifier", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("billed_duration_ms", sa.Integer, nullable=False),
    sa.Column("memory_size_mb", sa.Integer, nullable=False),
    sa.Column("max_memory_used_mb", sa.Integer, nullable=False),
    sa.Column("init_duration_ms", sa.Float),
    sa.Column("error_type", sa.String(128)),
    sa.Column("error_message", sa.Text),
    sa.Column("log_file", sa.Text, nullable=False, default=""),
    sa.Column("log_offset", sa.BigInteger, nullable=False, default=0),
    sa.Column("log_length", sa.Integer, nullable=False, default=0),
    # Attempts of an async invocation share the request id the caller got (202).
    sa.Column("async_request_id", sa.String(64)),
    sa.Column("attempt", sa.Integer),
    sa.Column("cpu_time_ms", sa.Float),
    sa.Index("ix_invocations_function_started", "function", "started_at"),
    sa.Index("ix_invocations_async_request_id", "async_request_id"),
)

#: Columns added to ``invocations`` after its first release: (name, SQL type).
_ADDED_COLUMNS = (("async_request_id", "VARCHAR(64)"), ("attempt", "INTEGER"),
                  ("cpu_time_ms", "FLOAT"))


def _add_missing_columns(db: Database) -> None:
    """Bring an ``invocations`` table made by an older faasbox up to date (``create_all``
    adds missing tables, never missing columns)."""
    present = {c["name"] for c in sa.inspect(db.engine).get_columns("invocations")}
    missing = [(name, kind) for name, kind in _ADDED_COLUMNS if name not in present]
    if not missing:
        return
    with db.write() as conn:
        for name, kind in missing:
            conn.exec_driver_sql(f"ALTER TABLE invocations ADD COLUMN {name} {kind}")
        conn.exec_driver_sql(
            "CREATE INDEX IF NOT EXISTS ix_invocations_async_request_id "
            "ON invocations (async_request_id)"
        )


def _version_number(version: str) -> int:
    """``$LATEST`` is row 0; published versions are canonical numbers from 1."""
    if version == LATEST:
        return 0
    if not VERSION_RE.fullmatch(version):
        raise ValueError(version)
    return int(version)


def _version_text(number: int) -> str:
    return LATEST if number == 0 else str(number)


class SqlStateStore(StateStore):
    """State in a SQL database through SQLAlchemy Core."""

    def __init__(self, database: Database | str) -> None:
        self.db = Database(database) if isinstance(database, str) else database
        self._owns_db = isinstance(database, str)
        self.db.create(metadata)
        _add_missing_columns(self.db)
        self._write = self.db.write
        self._read = self.db.read
        self._insert_record = invocations.insert()

    # -- functions and versions ---------------------------------------------------

    def put_latest(self, version: FunctionVersion, *, create: bool | None = None) -> None:
        def build(current: FunctionVersion | None) -> FunctionVersion:
            if current is not None and create is True:
                raise ConflictError(f"function already exists: {version.function}")
            if current is None and create is False:
                raise FunctionNotFoundError(version.function)
            return version

        self.update_latest(version.function, build)

    def update_latest(
        self, function: str, build: Callable[[FunctionVersion | None], FunctionVersion]
    ) -> FunctionVersion:
        now = time.time()
        with self._write() as conn:
            row = conn.execute(
                sa.select(versions).where(
                    (versions.c.function == function) & (versions.c.version == 0)
                )
            ).first()
            current = self._to_version(row) if row is not None else None
            version = build(current)
            if current is not None:
                conn.execute(
                    functions.update().where(functions.c.name == function).values(updated_at=now)
                )
                conn.execute(
                    versions.delete().where(
                        (versions.c.function == function) & (versions.c.version == 0)
                    )
                )
            else:
                conn.execute(
                    functions.insert().values(
                        name=function, created_at=now, updated_at=now, last_version=0
                    )
                )
            conn.execute(versions.insert().values(**self._version_row(version, 0)))
        return version

    @staticmethod
    def _version_row(version: FunctionVersion, number: int) -> dict[str, Any]:
        return {
            "function": version.function,
            "version": number,
            "code_sha256": version.code_sha256,
            "layer_sha256": version.layer_sha256,
            "requirements_sha256": version.requirements_sha256,
            "requirements_source": version.requirements_source,
            "content_sha256": version.content_sha256,
            "config": json.dumps(version.config.to_dict()),
            "description": version.version_description,
            "created_at": version.created_at,
        }

    @staticmethod
    def _to_version(row: Any) -> FunctionVersion:
        return FunctionVersion(
            function=row.function,
            version=_version_text(row.version),
            code_sha256=row.code_sha256,
            layer_sha256=row.layer_sha256,
            requirements_sha256=row.requirements_sha256,
            requirements_source=row.requirements_source,
            config=FunctionConfig.from_dict(json.loads(row.config)),
            created_at=row.created_at,
            version_description=row.description or "",
        )

    def _require_function(self, conn: Connection, function: str) -> None:
        found = conn.execute(
            sa.select(functions.c.name).where(functions.c.name == function)
        ).first()
        if not found:
            raise FunctionNotFoundError(function)

    def get_version(self, function: str, version: str) -> FunctionVersion:
        try:
            number = _version_number(version)
        except ValueError:
            raise VersionNotFoundError(function, version) from None
        with self._read() as conn:
            row = conn.execute(
                sa.select(versions).where(
                    (versions.c.function == function) & (versions.c.version == number)
                )
            ).first()
            if row is None:
                self._require_function(conn, function)
                raise VersionNotFoundError(function, version)
        return self._to_version(row)

    def list_latest(self) -> list[FunctionVersion]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(versions).where(versions.c.version == 0).order_by(versions.c.function)
            ).all()
        return [self._to_version(r) for r in rows]

    def list_versions(self, function: str) -> list[FunctionVersion]:
        with self._read() as conn:
            self._require_function(conn, function)
            rows = conn.execute(
                sa.select(versions)
                .where((versions.c.function == function) & (versions.c.version > 0))
                .order_by(versions.c.version)
            ).all()
        return [self._to_version(r) for r in rows]

    def publish(self, function: str, description: str = "") -> FunctionVersion:
        with self._write() as conn:
            fn = conn.execute(sa.select(functions).where(functions.c.name == function)).first()
            if fn is None:
                raise FunctionNotFoundError(function)
            latest = conn.execute(
                sa.select(versions).where(
                    (versions.c.function == function) & (versions.c.version == 0)
                )
            ).one()
            newest = conn.execute(
                sa.select(versions)
                .where((versions.c.function == function) & (versions.c.version > 0))
                .order_by(versions.c.version.desc())
                .limit(1)
            ).first()
            if newest is not None and newest.content_sha256 == latest.content_sha256:
                return self._to_version(newest)
            number = fn.last_version + 1
            row = dict(latest._mapping)
            row.update(version=number, description=description, created_at=time.time())
            conn.execute(versions.insert().values(**row))
            conn.execute(
                functions.update().where(functions.c.name == function).values(last_version=number)
            )
        return self._to_version(_RowView(row))

    def delete_function(self, function: str) -> None:
        with self._write() as conn:
            self._require_function(conn, function)
            conn.execute(aliases.delete().where(aliases.c.function == function))
            conn.execute(versions.delete().where(versions.c.function == function))
            conn.execute(functions.delete().where(functions.c.name == function))

    # -- aliases ------------------------------------------------------------------------

    def put_alias(self, alias: Alias) -> None:
        with self._write() as conn:
            self._require_function(conn, alias.function)
            wanted = [alias.version] + (
                [alias.additional_version] if alias.additional_version else []
            )
            for version in wanted:
                try:
                    number = _version_number(version)
                except ValueError:
                    raise VersionNotFoundError(alias.function, version) from None
                if number == 0:
                    continue  # $LATEST always exists for an existing function
                found = conn.execute(
                    sa.select(versions.c.version).where(
                        (versions.c.function == alias.function) & (versions.c.version == number)
                    )
                ).first()
                if not found:
                    raise VersionNotFoundError(alias.function, version)
            conn.execute(
                aliases.delete().where(
                    (aliases.c.function == alias.function) & (aliases.c.name == alias.name)
                )
            )
            conn.execute(
                aliases.insert().values(
                    function=alias.function,
                    name=alias.name,
                    version=_version_number(alias.version),
                    additional_version=(
                        _version_number(alias.additional_version)
                        if alias.additional_version
                        else None
                    ),
                    additional_weight=alias.additional_weight,
                )
            )

    @staticmethod
    def _to_alias(row: Any) -> Alias:
        return Alias(
            function=row.function,
            name=row.name,
            version=_version_text(row.version),
            additional_version=(
                _version_text(row.additional_version)
                if row.additional_version is not None
                else None
            ),
            additional_weight=row.additional_weight,
        )

    def get_alias(self, function: str, name: str) -> Alias:
        with self._read() as conn:
            row = conn.execute(
                sa.select(aliases).where(
                    (aliases.c.function == function) & (aliases.c.name == name)
                )
            ).first()
            if row is None:
                self._require_function(conn, function)
                raise AliasNotFoundError(function, name)
        return self._to_alias(row)

    def list_aliases(self, function: str) -> list[Alias]:
        with self._read() as conn:
            self._require_function(conn, function)
            rows = conn.execute(
                sa.select(aliases).where(aliases.c.function == function).order_by(aliases.c.name)
            ).all()
        return [self._to_alias(r) for r in rows]

    def delete_alias(self, function: str, name: str) -> None:
        with self._write() as conn:
            self._require_function(conn, function)
            deleted = conn.execute(
                aliases.delete().where(
                    (aliases.c.function == function) & (aliases.c.name == name)
                )
            )
            if deleted.rowcount == 0:
                raise AliasNotFoundError(function, name)

    # -- records --------------------------------------------------------------------------

    def add_records(self, records: list[tuple[InvocationRecord, str]]) -> None:
        if not records:
            return
        rows = []
        for record, log_file in records:
            values = record.to_dict()
            values.update(
                log_file=log_file, log_offset=record.log_offset, log_length=record.log_length
            )
            rows.append(values)
        with self._write() as conn:
            conn.execute(self._insert_record, rows)

    def missing_records(self, request_ids: list[str]) -> set[str]:
        missing = set(request_ids)
        ids = list(missing)
        with self._read() as conn:
            for start in range(0, len(ids), 500):
                found = conn.execute(
                    sa.select(invocations.c.request_id).where(
                        invocations.c.request_id.in_(ids[start : start + 500])
                    )
                ).scalars()
                missing.difference_update(found)
        return missing

    def records(
        self,
        function: str | None = None,
        *,
        request_id: str | None = None,
        since: float | None = None,
        status: Status | None = None,
        limit: int = 100,
    ) -> list[tuple[InvocationRecord, str]]:
        query = sa.select(invocations)
        if function is not None:
            query = query.where(invocations.c.function == function)
        if request_id is not None:  # one call, or every attempt of an async one
            query = query.where(
                (invocations.c.request_id == request_id)
                | (invocations.c.async_request_id == request_id)
            )
        if since is not None:
            query = query.where(invocations.c.started_at > since)
        if status is not None:
            query = query.where(invocations.c.status == status.value)
        query = query.order_by(invocations.c.started_at.desc()).limit(limit)
        with self._read() as conn:
            rows = conn.execute(query).all()
        out = []
        for row in rows:
            data = dict(row._mapping)
            record = InvocationRecord.from_dict(data)
            record = _with_log(record, data["log_offset"], data["log_length"])
            out.append((record, data["log_file"]))
        return out

    def close(self) -> None:
        if self._owns_db:
            self.db.close()


class _RowView:
    """Attribute access over a dict, to reuse ``_to_version`` on a row built in Python."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.__dict__.update(data)


def _with_log(record: InvocationRecord, offset: int, length: int) -> InvocationRecord:
    return replace(record, log_offset=offset, log_length=length)
