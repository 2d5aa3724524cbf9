"""The control plane in one object, and the in-process client over it.

``Platform`` wires settings, stores, registry, runtime node and invoker together and
owns their lifecycles. ``LocalClient`` is the SDK surface over it; the HTTP server
serves the same client, so all three interfaces run one code path.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from faasbox.auth.authority import Authority
from faasbox.config import Settings
from faasbox.errors import ConflictError, InvalidParameterError
from faasbox.events.dispatcher import Dispatcher
from faasbox.layout import Layout
from faasbox.model import LATEST, InvocationRecord, InvokeResult, validate_name
from faasbox.observe.logs import LogStore
from faasbox.observe.records import RecordWriter
from faasbox.registry.functions import Registry, split_qualified
from faasbox.registry.layers import LayerBuilder
from faasbox.registry.packages import PackageStore, remove_tree
from faasbox.runtime.node import Node
from faasbox.sdk import Client
from faasbox.stores.database import Database
from faasbox.stores.sql import SqlStateStore


class Platform:
    """One faasbox control plane over one home folder (one process holds it at a time)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.layout = Layout(settings.home).ensure()
        self._lock_fd = _lock_home(self.layout.home)
        try:
            _clear_leftovers(self.layout)
            _link_runtime_lib(self.layout)
            self.database = Database(settings.database_url or f"sqlite:///{self.layout.state_db}")
            self.auth = Authority(self.database, self.layout.home)
            self.store = SqlStateStore(self.database)
            self.logs = LogStore(self.layout)
            self.records = RecordWriter(self.store, self.layout.records_journal)
            self.packages = PackageStore(self.layout, settings.limits)
            self.layers = LayerBuilder(self.layout, settings.pip)
            self.node = Node(settings, self.layout, credentials=self._sandbox_credentials)
            self.registry = Registry(
                self.store, self.packages, self.layers, settings, on_change=self._retire,
                role_exists=self.auth.roles.exists,
            )
            from faasbox.invoker import Invoker

            self.invoker = Invoker(
                settings, self.layout, self.registry, self.node, self.records, self.logs
            )
            self._attach_events()
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._closed = False

    def _attach_events(self) -> None:
        """The trigger services, in dependency order; each registers its drivers on the
        one dispatcher, which starts once all are in place."""
        from faasbox import objects
        from faasbox.events import alarms, async_invocations, mappings, queues, schedules
        from faasbox.observe import metrics
        from faasbox.registry import urls

        self.dispatcher = Dispatcher()
        self.queues = queues.attach(self)
        self.async_invoker = async_invocations.attach(self)
        self.function_urls = urls.attach(self)
        self.objects = objects.attach(self)
        self.triggers = mappings.attach(self)
        self.schedules = schedules.attach(self)
        self.metrics = metrics.attach(self)
        self.alarms = alarms.attach(self)
        self.dispatcher.start()

    def _sandbox_credentials(self, role: str, sandbox_id: str) -> tuple[dict[str, str], float]:
        session = self.auth.sandbox_credentials(role, self.settings.sandbox_credentials_s,
                                                sandbox_id)
        return session.environment(), session.expires_at

    def _retire(self, function: str, live: frozenset[str]) -> None:
        self.node.retire(function, keep_revisions=live)
        self.invoker.forget(function)
        if not live:  # deleted: its log file stays, its handle goes
            self.logs.forget(function)

    def client(self) -> LocalClient:
        return LocalClient(self)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.dispatcher.close()  # no new trigger work; drivers finish what runs
            for service in (self.alarms, self.metrics, self.schedules, self.triggers,
                            self.objects, self.function_urls, self.async_invoker,
                            self.queues):
                service.close()
            self.node.close()  # busy calls end now (their sandboxes are killed) ...
            self.invoker.drain()  # ... and are logged and recorded before the stores close
        finally:
            self.records.close()
            self.logs.close()
            self.store.close()
            self.auth.close()
            self.database.close()
            os.close(self._lock_fd)

    def __enter__(self) -> Platform:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lock_home(home: Path) -> int:
    """Hold an exclusive lock on the home folder: two control planes would both own the
    same sandboxes' pools and caches."""
    fd = os.open(home / "faasbox.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise ConflictError(
            f"home folder {home} is in use by pid {holder}: stop that platform, use another "
            "--home, or talk to its server with faasbox.connect()"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _link_runtime_lib(layout: Layout) -> None:
    """Point ``runtime-lib/faasbox`` at this faasbox package: sandboxes append that folder
    to their path, so function code can ``import faasbox.handlers`` (stdlib-only modules)
    without the control plane's other dependencies."""
    package = Path(__file__).resolve().parent
    layout.runtime_lib.mkdir(exist_ok=True)
    link = layout.runtime_lib / "faasbox"
    if link.is_symlink() and Path(os.readlink(link)) == package:
        return
    staged = layout.runtime_lib / f".faasbox-{os.getpid()}"
    staged.unlink(missing_ok=True)
    staged.symlink_to(package, target_is_directory=True)
    os.replace(staged, link)


def _clear_leftovers(layout: Layout) -> None:
    """Remove what a crashed predecessor left half-done: staging folders (never yet
    committed by rename) and dead sandboxes' folders. Safe: we hold the home lock."""
    for parent in (layout.staging, layout.sandboxes):
        for entry in parent.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                remove_tree(entry)
            else:
                entry.unlink(missing_ok=True)


class LocalClient(Client):
    """The SDK, running the platform in this process."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self._registry = platform.registry
        self.queues = platform.queues
        self.objects = platform.objects
        self.triggers = platform.triggers
        self.schedules = platform.schedules
        self.alarms = platform.alarms
        self.metrics = platform.metrics

    def deploy(
        self,
        name: str,
        path: str | Path | None = None,
        *,
        zip_bytes: bytes | None = None,
        handler: str | None = None,
        memory_mb: int | None = None,
        timeout_s: int | None = None,
        environment: Mapping[str, str] | None = None,
        description: str | None = None,
        reserved_concurrency: int | None = None,
        requirements: str | None = None,
        publish: bool = False,
        network: str | None = None,
        role: str | None = None,
    ) -> dict[str, Any]:
        version = self._registry.deploy(
            name,
            path=path,
            zip_bytes=zip_bytes,
            requirements=requirements,
            handler=handler,
            memory_mb=memory_mb,
            timeout_s=timeout_s,
            environment=dict(environment) if environment is not None else None,
            description=description,
            reserved_concurrency=reserved_concurrency,
            network=network,
            role=role,
        )
        if publish:
            version = self._registry.publish(name)
        return version.to_dict()

    def update_config(self, name: str, **changes: Any) -> dict[str, Any]:
        return self._registry.update_config(name, **changes).to_dict()

    def publish(self, name: str, description: str = "") -> dict[str, Any]:
        return self._registry.publish(name, description).to_dict()

    def set_alias(
        self,
        name: str,
        alias: str,
        version: str,
        *,
        additional_version: str | None = None,
        additional_weight: float = 0.0,
    ) -> dict[str, Any]:
        return self._registry.set_alias(
            name,
            alias,
            version,
            additional_version=additional_version,
            additional_weight=additional_weight,
        ).to_dict()

    def delete_alias(self, name: str, alias: str) -> None:
        self._registry.delete_alias(name, alias)

    def invoke(
        self,
        name: str,
        payload: Any = None,
        *,
        qualifier: str | None = None,
        raw: bytes | None = None,
    ) -> InvokeResult:
        if raw is None:
            try:
                raw = orjson.dumps(payload)
            except TypeError as exc:
                raise InvalidParameterError(f"payload is not JSON-serializable: {exc}") from None
        return self.platform.invoker.invoke(name, raw, qualifier)

    def invoke_async(
        self,
        name: str,
        payload: Any = None,
        *,
        qualifier: str | None = None,
        raw: bytes | None = None,
    ) -> str:
        if raw is None:
            try:
                raw = orjson.dumps(payload)
            except TypeError as exc:
                raise InvalidParameterError(f"payload is not JSON-serializable: {exc}") from None
        return self.platform.async_invoker.invoke(name, raw, qualifier)

    def put_async_config(
        self,
        name: str,
        *,
        qualifier: str | None = None,
        max_retries: int | None = None,
        max_event_age_s: int | None = None,
        on_success: str | None = None,
        on_failure: str | None = None,
    ) -> dict[str, Any]:
        return self.platform.async_invoker.put_config(
            name, qualifier, max_retries=max_retries, max_event_age_s=max_event_age_s,
            on_success=on_success, on_failure=on_failure,
        )

    def get_async_config(self, name: str, *, qualifier: str | None = None) -> dict[str, Any]:
        return self.platform.async_invoker.get_config(name, qualifier)

    def delete_async_config(self, name: str, *, qualifier: str | None = None) -> None:
        self.platform.async_invoker.delete_config(name, qualifier)

    def set_function_url(
        self, name: str, *, qualifier: str | None = None, auth: str = "none"
    ) -> dict[str, Any]:
        return self.platform.function_urls.set(name, qualifier, auth=auth)

    def get_function_url(self, name: str, *, qualifier: str | None = None) -> dict[str, Any]:
        return self.platform.function_urls.get(name, qualifier)

    def delete_function_url(self, name: str, *, qualifier: str | None = None) -> None:
        self.platform.function_urls.delete(name, qualifier)

    def list_function_urls(self) -> list[dict[str, Any]]:
        return self.platform.function_urls.list()

    def list_functions(self) -> list[dict[str, Any]]:
        return [v.to_dict() for v in self._registry.list_latest()]

    def get_function(self, name: str, qualifier: str | None = None) -> dict[str, Any]:
        name, qualifier = split_qualified(name, qualifier)
        if qualifier is None or qualifier == LATEST or qualifier.isdigit():
            version = self._registry.get(name, qualifier or LATEST)
        else:
            version = self._registry.get(name, self._registry.alias(name, qualifier).version)
        data = version.to_dict()
        data["versions"] = [v.to_dict() for v in self._registry.versions(name)]
        data["aliases"] = [a.to_dict() for a in self._registry.aliases(name)]
        return data

    def delete_function(self, name: str) -> None:
        self._registry.delete(name)

    def logs(
        self,
        name: str,
        *,
        request_id: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> str:
        validate_name(name)
        self.platform.records.flush()
        rows = self.platform.store.records(
            name, request_id=request_id, since=since, limit=_check_limit(limit)
        )
        read = self.platform.logs.read
        return "".join(
            read(log_file, rec.log_offset, rec.log_length) for rec, log_file in reversed(rows)
        )

    def records(
        self,
        name: str | None = None,
        *,
        request_id: str | None = None,
        limit: int = 100,
    ) -> list[InvocationRecord]:
        if name is not None:
            validate_name(name)
        self.platform.records.flush()
        rows = self.platform.store.records(name, request_id=request_id, limit=_check_limit(limit))
        return [rec for rec, _ in rows]

    def sandboxes(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.platform.node.stats()["sandboxes"]
        return found

    def close(self) -> None:
        self.platform.close()


def _check_limit(limit: int) -> int:
    if not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise InvalidParameterError(f"limit={limit!r} must be between 1 and 10000")
    return limit
