"""The function registry: create, update, publish, alias, resolve, delete.

Packages and dependency layers are built *before* the registry's single write
transaction, so a failed build (bad zip, pip error) changes nothing and the previous
code keeps serving. The state store makes each change atomic; last writer wins.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from faasbox.config import Settings
from faasbox.errors import FunctionNotFoundError, InvalidParameterError
from faasbox.model import (
    LATEST,
    VERSION_RE,
    Alias,
    FunctionConfig,
    FunctionVersion,
    validate_alias_name,
    validate_name,
)
from faasbox.registry.layers import LayerBuilder, normalize_requirements
from faasbox.registry.packages import Package, PackageStore
from faasbox.stores.state import StateStore

CONFIG_FIELDS = (
    "handler",
    "memory_mb",
    "timeout_s",
    "environment",
    "description",
    "reserved_concurrency",
    "network",
    "role",
)

#: Called after a function's live revisions change: (function, revisions still live).
OnChange = Callable[[str, frozenset[str]], None]


def split_qualified(name: str, qualifier: str | None = None) -> tuple[str, str | None]:
    """``fn:qual`` -> (fn, qual); an explicit ``qualifier`` must not contradict it."""
    if ":" in name:
        name, _, inline = name.partition(":")
        if qualifier is not None and qualifier != inline:
            raise InvalidParameterError(
                f"qualifier {qualifier!r} contradicts the one in the name ({inline!r})"
            )
        qualifier = inline
    validate_name(name)
    if qualifier is not None and qualifier == "":
        raise InvalidParameterError("empty qualifier")
    return name, qualifier


class Registry:
    """Functions, versions and aliases, stored in a :class:`StateStore`."""

    def __init__(
        self,
        store: StateStore,
        packages: PackageStore,
        layers: LayerBuilder,
        settings: Settings,
        on_change: OnChange | None = None,
        role_exists: Callable[[str], bool] | None = None,
    ) -> None:
        self._store = store
        self._role_exists = role_exists
        self._packages = packages
        self._layers = layers
        self._settings = settings
        self._on_change = on_change
        self._rng = random.Random()
        # Version lookups are on every invoke's path: cache them by (function, version)
        # and drop a function's entries on every change made through this registry.
        self._cache: dict[tuple[str, str], FunctionVersion] = {}
        self._alias_cache: dict[tuple[str, str], Alias] = {}
        self._cache_lock = threading.Lock()
        self._generation = 0  # bumped on every change: a read that raced one isn't cached

    # -- writes -------------------------------------------------------------------------

    def deploy(
        self,
        name: str,
        *,
        path: str | Path | None = None,
        zip_bytes: bytes | None = None,
        requirements: str | None = None,
        **changes: Any,
    ) -> FunctionVersion:
        """Create the function or update ``$LATEST``'s code and/or configuration.

        The package and any dependency layer are built first, outside the store's write
        transaction (a pip build can take minutes); the merge with the current
        ``$LATEST`` happens inside it, so concurrent updates keep each other's changes.
        ``requirements`` given here are configuration: they stay across later code
        updates until given again ("" removes them). Without them, a package's own
        requirements.txt decides, and is replaced with the package.
        """
        validate_name(name)
        changes = {k: v for k, v in changes.items() if v is not None}
        self._check_fields(changes)
        self._check_role(changes)
        if path is not None and zip_bytes is not None:
            raise InvalidParameterError("give a package path or zip bytes, not both")
        package: Package | None = None
        if path is not None:
            path = Path(path)
            if not path.exists():
                raise InvalidParameterError(f"package path does not exist: {path}")
            package = self._packages.ingest(path)
        elif zip_bytes is not None:
            package = self._packages.ingest_zip(zip_bytes)
        layer = self._requirements_layer(requirements, package)
        limits = self._settings.limits

        def build(current: FunctionVersion | None) -> FunctionVersion:
            if current is None and package is None:
                raise FunctionNotFoundError(name)
            if current is None and "handler" not in changes:
                raise InvalidParameterError("handler is required to create a function")
            base = current.config.to_dict() if current else {}
            config = FunctionConfig.from_dict({**base, **changes}, limits).validate(limits)
            code_sha = package.sha256 if package else current.code_sha256  # type: ignore[union-attr]
            kept = layer if layer is not None else _kept_layer(current, package)
            layer_sha, req_sha, source = kept
            return FunctionVersion(
                function=name,
                version=LATEST,
                code_sha256=code_sha,
                layer_sha256=layer_sha,
                requirements_sha256=req_sha,
                requirements_source=source,
                config=config,
                created_at=time.time(),
            )

        version = self._store.update_latest(name, build)
        self._changed(name)
        return version

    def update_config(self, name: str, **changes: Any) -> FunctionVersion:
        """Change configuration fields of ``$LATEST`` (``requirements`` too)."""
        validate_name(name)
        if not changes:
            raise InvalidParameterError("no configuration change given")
        requirements = changes.pop("requirements", None)
        self._check_fields(changes)
        self._check_role(changes)
        layer = self._requirements_layer(requirements, None)
        limits = self._settings.limits

        def build(current: FunctionVersion | None) -> FunctionVersion:
            if current is None:
                raise FunctionNotFoundError(name)
            config = FunctionConfig.from_dict({**current.config.to_dict(), **changes}, limits)
            version = replace(current, config=config.validate(limits), created_at=time.time())
            if layer is not None:
                layer_sha, req_sha, source = layer
                version = replace(version, layer_sha256=layer_sha, requirements_sha256=req_sha,
                                  requirements_source=source)
            return version

        version = self._store.update_latest(name, build)
        self._changed(name)
        return version

    def _requirements_layer(
        self, requirements: str | None, package: Package | None
    ) -> tuple[str | None, str | None, str | None] | None:
        """(layer sha, requirements sha, source) to set, or None to keep the current."""
        if requirements is not None:
            built = self._layers.build(requirements)
            if built is None:
                return (None, None, None)
            return (built.sha256, _requirements_sha(requirements), "config")
        if package is not None and package.requirements is not None:
            built = self._layers.build(package.requirements)
            if built is not None:
                return (built.sha256, _requirements_sha(package.requirements), "package")
        return None

    def publish(self, name: str, description: str = "") -> FunctionVersion:
        validate_name(name)
        if len(description) > 256:
            raise InvalidParameterError("description is longer than 256 characters")
        version = self._store.publish(name, description)
        self._changed(name)
        return version

    def set_alias(
        self,
        name: str,
        alias: str,
        version: str,
        *,
        additional_version: str | None = None,
        additional_weight: float = 0.0,
    ) -> Alias:
        validate_name(name)
        validate_alias_name(alias)
        version = str(version)
        if additional_version is not None:
            additional_version = str(additional_version)
        for v in (version, additional_version):
            if v is not None and v != LATEST and not VERSION_RE.fullmatch(v):
                raise InvalidParameterError(
                    f"invalid version {v!r}: use a published number (1, 2, ...) or $LATEST"
                )
        if not isinstance(additional_weight, int | float) or not 0.0 <= additional_weight <= 1.0:
            raise InvalidParameterError(
                f"additional_weight={additional_weight!r} must be between 0 and 1"
            )
        if additional_weight and additional_version is None:
            raise InvalidParameterError("a weight needs an additional_version")
        if additional_version is not None and additional_version == version:
            raise InvalidParameterError("additional_version must differ from version")
        value = Alias(name, alias, version, additional_version, float(additional_weight))
        self._store.put_alias(value)
        self._changed(name)
        return value

    def delete_alias(self, name: str, alias: str) -> None:
        validate_name(name)
        self._store.delete_alias(name, alias)
        self._changed(name)

    def delete(self, name: str) -> None:
        validate_name(name)
        self._store.delete_function(name)
        self._changed(name, deleted=True)

    # -- reads --------------------------------------------------------------------------

    def get(self, name: str, version: str = LATEST) -> FunctionVersion:
        key = (name, version)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        generation = self._generation
        found = self._store.get_version(name, version)
        with self._cache_lock:
            if generation == self._generation:
                self._cache[key] = found
        return found

    def resolve(self, name: str, qualifier: str | None = None) -> FunctionVersion:
        """The version a call runs: ``$LATEST``, a number, or an alias (weighted)."""
        if qualifier is None or qualifier == LATEST:
            return self.get(name, LATEST)
        if qualifier.isdigit():  # "0" or "007" are no version: get() refuses them
            return self.get(name, qualifier)
        alias = self.alias(name, qualifier)
        chosen = alias.version
        if alias.additional_version and self._rng.random() < alias.additional_weight:
            chosen = alias.additional_version
        return self.get(name, chosen)

    def alias(self, name: str, alias: str) -> Alias:
        key = (name, alias)
        cached = self._alias_cache.get(key)
        if cached is not None:
            return cached
        generation = self._generation
        found = self._store.get_alias(name, alias)
        with self._cache_lock:
            if generation == self._generation:
                self._alias_cache[key] = found
        return found

    def list_latest(self) -> list[FunctionVersion]:
        return self._store.list_latest()

    def versions(self, name: str) -> list[FunctionVersion]:
        return self._store.list_versions(name)

    def aliases(self, name: str) -> list[Alias]:
        return self._store.list_aliases(name)

    def live_revisions(self, name: str) -> frozenset[str]:
        try:
            latest = self._store.get_version(name, LATEST)
        except FunctionNotFoundError:
            return frozenset()
        return frozenset(
            [latest.revision] + [v.revision for v in self._store.list_versions(name)]
        )

    # -- helpers ------------------------------------------------------------------------

    @staticmethod
    def _check_fields(changes: Mapping[str, Any]) -> None:
        unknown = set(changes) - set(CONFIG_FIELDS)
        if unknown:
            raise InvalidParameterError(
                f"unknown configuration fields: {sorted(unknown)}; known: {list(CONFIG_FIELDS)}"
            )

    def _check_role(self, changes: Mapping[str, Any]) -> None:
        role = changes.get("role")
        if (isinstance(role, str) and self._role_exists is not None
                and not self._role_exists(role)):
            raise InvalidParameterError(f"role {role} does not exist: create it first "
                                        f"(faasbox role create {role})")

    def _changed(self, name: str, deleted: bool = False) -> None:
        with self._cache_lock:
            self._generation += 1
            for cache in (self._cache, self._alias_cache):
                for key in [k for k in cache if k[0] == name]:
                    del cache[key]
        if self._on_change is not None:
            self._on_change(name, frozenset() if deleted else self.live_revisions(name))


def _requirements_sha(text: str) -> str | None:
    normalized = normalize_requirements(text)
    return hashlib.sha256(normalized.encode()).hexdigest() if normalized else None


def _kept_layer(
    current: FunctionVersion | None, package: Package | None
) -> tuple[str | None, str | None, str | None]:
    """The layer ``$LATEST`` keeps when no requirements came with this change: explicit
    ones always; a package's own only while its code stays."""
    if current is None:
        return (None, None, None)
    if package is None or current.requirements_source == "config":
        return (current.layer_sha256, current.requirements_sha256, current.requirements_source)
    return (None, None, None)
