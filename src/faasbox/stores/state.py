"""The state store port: registry rows and invocation records.

``StateStore`` is the contract; :mod:`faasbox.stores.sql` implements it with SQLAlchemy
Core for SQLite (default) and PostgreSQL. Every method that changes state is one
transaction: a crash leaves either the old or the new state, never half of one.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

from faasbox.model import Alias, FunctionVersion, InvocationRecord, Status


class StateStore(abc.ABC):
    """Durable state of one platform."""

    # -- functions and versions ---------------------------------------------------

    @abc.abstractmethod
    def put_latest(self, version: FunctionVersion, *, create: bool | None = None) -> None:
        """Write ``$LATEST`` of ``version.function``, creating the function if needed.

        ``create=True`` raises ConflictError if the function exists; ``create=False``
        raises FunctionNotFoundError if it does not; None accepts both. Last writer wins.
        """

    @abc.abstractmethod
    def update_latest(
        self, function: str, build: Callable[[FunctionVersion | None], FunctionVersion]
    ) -> FunctionVersion:
        """Read ``$LATEST`` (None if the function does not exist), write ``build(it)``,
        in one write transaction: concurrent updates never drop each other's changes.
        ``build`` may raise to change nothing. Returns what was written."""

    @abc.abstractmethod
    def get_version(self, function: str, version: str) -> FunctionVersion:
        """``$LATEST`` or a published number. Raises FunctionNotFoundError or
        VersionNotFoundError."""

    @abc.abstractmethod
    def list_latest(self) -> list[FunctionVersion]:
        """``$LATEST`` of every function, sorted by name."""

    @abc.abstractmethod
    def list_versions(self, function: str) -> list[FunctionVersion]:
        """Published versions, oldest first (``$LATEST`` excluded). Raises
        FunctionNotFoundError."""

    @abc.abstractmethod
    def publish(self, function: str, description: str = "") -> FunctionVersion:
        """Snapshot ``$LATEST`` as the next number, atomically. If the newest published
        version has the same content, return it instead of adding one."""

    @abc.abstractmethod
    def delete_function(self, function: str) -> None:
        """Remove the function, its versions and aliases. Raises FunctionNotFoundError."""

    # -- aliases ---------------------------------------------------------------------

    @abc.abstractmethod
    def put_alias(self, alias: Alias) -> None:
        """Create or replace an alias. Raises VersionNotFoundError if either version is
        not published (checked in the same transaction)."""

    @abc.abstractmethod
    def get_alias(self, function: str, name: str) -> Alias:
        """Raises FunctionNotFoundError or AliasNotFoundError."""

    @abc.abstractmethod
    def list_aliases(self, function: str) -> list[Alias]:
        """Aliases of a function, sorted by name."""

    @abc.abstractmethod
    def delete_alias(self, function: str, name: str) -> None:
        """Raises AliasNotFoundError."""

    # -- invocation records -----------------------------------------------------------

    @abc.abstractmethod
    def add_records(self, records: list[tuple[InvocationRecord, str]]) -> None:
        """Store finished invocations' records (with their log file) in one transaction."""

    @abc.abstractmethod
    def missing_records(self, request_ids: list[str]) -> set[str]:
        """The request ids of this list that have no record yet."""

    @abc.abstractmethod
    def records(
        self,
        function: str | None = None,
        *,
        request_id: str | None = None,
        since: float | None = None,
        status: Status | None = None,
        limit: int = 100,
    ) -> list[tuple[InvocationRecord, str]]:
        """Records with their log file, newest first; ``since`` keeps those started
        strictly after it."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections. Idempotent."""
