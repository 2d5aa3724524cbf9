"""One client interface, two ways to reach the platform.

``faasbox.local(home=...)`` runs the platform inside the calling process;
``faasbox.connect(url)`` talks to a ``faasbox up`` server over HTTP. Both return a
:class:`Client` with the same methods, results and errors.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from faasbox.api.alarms import Alarms
from faasbox.api.metrics import Metrics
from faasbox.api.objects import Objects
from faasbox.api.queues import Queues
from faasbox.api.schedules import Schedules
from faasbox.api.triggers import Triggers
from faasbox.model import InvocationRecord, InvokeResult


class Client(abc.ABC):
    """The faasbox API. Function dicts are JSON-ready (see ``FunctionVersion.to_dict``).

    Functions are methods of the client; every other resource is an attribute with
    its own interface (``faasbox.api``): ``queues``, ``objects`` (buckets, objects and
    their notifications), ``triggers`` (queue -> function mappings), ``schedules``,
    ``alarms`` and ``metrics``.
    """

    queues: Queues
    objects: Objects
    triggers: Triggers
    schedules: Schedules
    alarms: Alarms
    metrics: Metrics

    @abc.abstractmethod
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
        """Create the function or update its ``$LATEST`` code and configuration.

        ``path`` is a folder or a zip file (or give ``zip_bytes``). ``requirements`` is the
        text of a requirements.txt, kept across later code updates until given again
        (``""`` removes it); without it, the package's own requirements.txt is used and
        goes with that package. ``network`` is ``host`` (the default) or ``none`` (no
        network at all; needs the namespace or cgroup isolation level). ``role`` is the
        execution role whose temporary credentials the sandboxes get (``default``). Settings
        left as None keep their current value (or the default on creation; ``handler`` is
        required on creation). Returns ``$LATEST`` (or the new version with ``publish``).
        Raises InvalidParameterError, InvalidPackageError, DependencyBuildError; on any
        error nothing changes and the previous code keeps serving.
        """

    @abc.abstractmethod
    def update_config(self, name: str, **changes: Any) -> dict[str, Any]:
        """Change configuration fields of ``$LATEST`` (handler, memory_mb, timeout_s,
        environment, description, reserved_concurrency, network, role, requirements). Returns
        ``$LATEST``. Concurrent changes merge: each keeps the fields it did not touch."""

    @abc.abstractmethod
    def publish(self, name: str, description: str = "") -> dict[str, Any]:
        """Snapshot ``$LATEST`` as an immutable numbered version. Publishing an unchanged
        ``$LATEST`` again returns the existing version."""

    @abc.abstractmethod
    def set_alias(
        self,
        name: str,
        alias: str,
        version: str,
        *,
        additional_version: str | None = None,
        additional_weight: float = 0.0,
    ) -> dict[str, Any]:
        """Create or move an alias; ``additional_weight`` (0-1) of calls go to
        ``additional_version``. Raises VersionNotFoundError for a missing version."""

    @abc.abstractmethod
    def delete_alias(self, name: str, alias: str) -> None:
        """Remove an alias. Raises AliasNotFoundError."""

    @abc.abstractmethod
    def invoke(
        self, name: str, payload: Any = None, *, qualifier: str | None = None,
        raw: bytes | None = None,
    ) -> InvokeResult:
        """Run the function synchronously. ``name`` may be ``fn:qualifier``. ``payload`` is
        any JSON value (or give ``raw`` JSON bytes). A handler failure is not raised: it
        comes back with ``function_error`` set. Raises TooManyRequestsError (throttled),
        PayloadTooLargeError, InvalidParameterError (payload not JSON), NotFoundError."""

    @abc.abstractmethod
    def invoke_async(
        self, name: str, payload: Any = None, *, qualifier: str | None = None,
        raw: bytes | None = None,
    ) -> str:
        """Accept an event for the function and return its request id at once (Lambda's
        ``InvocationType=Event``, HTTP 202). The event is durable when this returns; it
        runs from an internal queue with the function's async config (retries, maximum
        event age, destinations). Raises PayloadTooLargeError (over 256 KB),
        InvalidParameterError, NotFoundError."""

    @abc.abstractmethod
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
        """Set how async events of the function (or of one qualifier) are handled:
        ``max_retries`` 0-2 (default 2), ``max_event_age_s`` 60-21600 (default 21600),
        destinations ``queue:NAME`` or ``function:NAME[:QUALIFIER]`` ("" removes one).
        Returns the config."""

    @abc.abstractmethod
    def get_async_config(self, name: str, *, qualifier: str | None = None) -> dict[str, Any]:
        """The async config in force (the defaults when none was set)."""

    @abc.abstractmethod
    def delete_async_config(self, name: str, *, qualifier: str | None = None) -> None:
        """Go back to the default async config."""

    @abc.abstractmethod
    def set_function_url(
        self, name: str, *, qualifier: str | None = None, auth: str = "none"
    ) -> dict[str, Any]:
        """Give the function (or ``name:qualifier``) an HTTP endpoint at
        ``/fn/{name}[:{qualifier}][/{path}]`` with auth ``none`` or ``platform``.
        Returns ``{"function", "qualifier", "auth", "url"}``."""

    @abc.abstractmethod
    def get_function_url(self, name: str, *, qualifier: str | None = None) -> dict[str, Any]:
        """The function's URL config. Raises NotFoundError when it has none."""

    @abc.abstractmethod
    def delete_function_url(self, name: str, *, qualifier: str | None = None) -> None:
        """Remove the function's URL; ``/fn/{name}`` answers 404 afterwards."""

    @abc.abstractmethod
    def list_function_urls(self) -> list[dict[str, Any]]:
        """Every function URL config, sorted by function and qualifier."""

    @abc.abstractmethod
    def list_functions(self) -> list[dict[str, Any]]:
        """Every function's ``$LATEST``, sorted by name."""

    @abc.abstractmethod
    def get_function(self, name: str, qualifier: str | None = None) -> dict[str, Any]:
        """One function version (``$LATEST`` by default) plus ``versions`` and ``aliases``
        lists of the function."""

    @abc.abstractmethod
    def delete_function(self, name: str) -> None:
        """Delete the function, its versions and aliases. Busy sandboxes finish their
        call, then go; records and logs stay queryable."""

    @abc.abstractmethod
    def logs(
        self, name: str, *, request_id: str | None = None, since: float | None = None,
        limit: int = 100,
    ) -> str:
        """Framed log text (START/END/REPORT) of the function's latest ``limit``
        invocations, or of one request id, or of those started after ``since``."""

    @abc.abstractmethod
    def records(
        self, name: str | None = None, *, request_id: str | None = None, limit: int = 100,
    ) -> list[InvocationRecord]:
        """Invocation records, newest first, of one function or one request id."""

    @abc.abstractmethod
    def sandboxes(self) -> list[dict[str, Any]]:
        """The node's live sandboxes (``id``, ``pid``, ``function``, ``version``,
        ``revision``, ``state`` idle/busy, ``memory_mb``, ``invocations``, ``idle_s``): empty when
        every function has scaled to zero."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release processes, connections and files. Idempotent."""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def local(home: str | Path | None = None, **settings: Any) -> Client:
    """A client running the platform in this process (see :mod:`faasbox.platform`).

    Its sandboxes run at the ``process`` isolation level unless ``isolation`` (or
    FAASBOX_ISOLATION) says another: an in-process platform serves no HTTP API, which is
    how namespace and cgroup sandboxes reach objects, queues and other functions
    (``faasbox up`` picks the best level, ``auto``)."""
    import os

    from faasbox.config import Settings
    from faasbox.platform import Platform

    if "isolation" not in settings and not os.environ.get("FAASBOX_ISOLATION"):
        settings["isolation"] = "process"
    return Platform(Settings.from_env(home=home, **settings)).client()


def connect(url: str | None = None, **kwargs: Any) -> Client:
    """A client for a running server; ``url`` defaults to ``FAASBOX_ENDPOINT``."""
    from faasbox.config import Settings
    from faasbox.remote import RemoteClient

    return RemoteClient(url or Settings.from_env().endpoint, **kwargs)
