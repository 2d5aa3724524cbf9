"""Sync invocation: resolve the qualifier, run on the node, record, log, answer.

Every call that reaches a function ends with exactly one invocation record whose
status is final (success, error, timeout, oom, crash or throttled) and, unless
throttled, one framed log block.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import replace

import orjson

from faasbox.config import Settings
from faasbox.errors import (
    InvalidParameterError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    TooManyRequestsError,
)
from faasbox.layout import Layout
from faasbox.model import FunctionVersion, InvocationRecord, InvokeResult, Status, function_arn
from faasbox.observe.logs import LogStore, billed_ms, frame
from faasbox.observe.records import RecordWriter
from faasbox.registry.functions import Registry, split_qualified
from faasbox.runtime.node import Node
from faasbox.runtime.spec import Outcome, SandboxSpec


class Invoker:
    """Runs sync invocations and keeps their records and logs."""

    def __init__(
        self,
        settings: Settings,
        layout: Layout,
        registry: Registry,
        node: Node,
        records: RecordWriter,
        logs: LogStore,
    ) -> None:
        self._settings = settings
        self._layout = layout
        self._registry = registry
        self._node = node
        self._records = records
        self._logs = logs
        #: Per (function, revision): two functions with the same code and configuration
        #: have the same revision, but never share a spec, hence a pool or a sandbox.
        self._specs: dict[tuple[str, str], SandboxSpec] = {}
        # Request ids need uniqueness, not secrecy: os.urandom per call costs ~13 µs here.
        self._ids = random.Random()
        self._calls = threading.Condition()
        self._in_flight = 0
        self._closing = False

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Refuse new calls and wait for those in flight to be recorded."""
        with self._calls:
            self._closing = True
            return self._calls.wait_for(lambda: self._in_flight == 0, timeout=timeout_s)

    def forget(self, function: str) -> None:
        """Drop cached sandbox specs of ``function`` (it changed or is gone)."""
        for key in [k for k, spec in self._specs.items() if spec.function == function]:
            self._specs.pop(key, None)

    def prewarm(self, name: str, qualifier: str | None = None) -> None:
        """Have one sandbox of what ``name:qualifier`` resolves to started ahead of need
        (see :meth:`Node.prewarm`). Raises NotFoundError."""
        name, qualifier = split_qualified(name, qualifier)
        version = self._registry.resolve(name, qualifier)
        reserved = self._registry.get(name).config.reserved_concurrency
        self._node.prewarm(replace(self._spec(version), reserved_concurrency=reserved))

    def invoke(
        self, name: str, event: bytes, qualifier: str | None = None, *,
        attempt_of: tuple[str, int] | None = None,
    ) -> InvokeResult:
        """Run one call and record it. ``attempt_of`` is (async request id, attempt
        number) when the call is an attempt of an async invocation: its record says so.
        Raises TooManyRequestsError (throttled; recorded), ServiceUnavailableError
        (shutting down; not recorded), PayloadTooLargeError, InvalidParameterError,
        NotFoundError."""
        with self._calls:
            if self._closing:
                raise ServiceUnavailableError("the platform is shutting down")
            self._in_flight += 1
        try:
            return self._invoke(name, event, qualifier, attempt_of)
        finally:
            with self._calls:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._calls.notify_all()

    def _invoke(
        self, name: str, event: bytes, qualifier: str | None,
        attempt_of: tuple[str, int] | None,
    ) -> InvokeResult:
        limit = self._settings.limits.sync_payload_bytes
        if len(event) > limit:
            raise PayloadTooLargeError(
                f"request payload is {len(event)} bytes, over the {limit}-byte limit"
            )
        if not event.strip():
            event = b"null"
        try:
            orjson.loads(event)
        except orjson.JSONDecodeError as exc:
            raise InvalidParameterError(f"payload is not valid JSON: {exc}") from None
        name, qualifier = split_qualified(name, qualifier)
        version = self._registry.resolve(name, qualifier)
        spec = self._spec(version)
        # Reserved concurrency is a function-level setting (not versioned), as on Lambda.
        reserved = self._registry.get(name).config.reserved_concurrency
        if spec.reserved_concurrency != reserved:
            spec = replace(spec, reserved_concurrency=reserved)
        request_id = str(uuid.UUID(int=self._ids.getrandbits(128), version=4))
        started = time.time()
        try:
            outcome = self._node.invoke(
                spec,
                event,
                request_id=request_id,
                invoked_function_arn=function_arn(name, qualifier),
            )
        except TooManyRequestsError as exc:
            throttled = self._record(name, qualifier, version, request_id, started,
                                     Status.THROTTLED, error_type=exc.code,
                                     error_message=exc.message, attempt_of=attempt_of)
            self._records.add(throttled)
            raise
        except Exception as exc:  # the node could not run it at all: still one record
            failed = self._record(name, qualifier, version, request_id, started, Status.CRASH,
                                  error_type=getattr(exc, "code", type(exc).__name__),
                                  error_message=str(exc), attempt_of=attempt_of)
            self._records.add(failed)
            raise
        outcome = self._check_response_size(outcome)
        return self._finish(name, qualifier, version, request_id, started, outcome, attempt_of)

    def _check_response_size(self, outcome: Outcome) -> Outcome:
        limit = self._settings.limits.sync_payload_bytes
        if len(outcome.payload) <= limit:
            return outcome
        message = (
            f"Response payload size ({len(outcome.payload)} bytes) exceeded maximum "
            f"allowed payload size ({limit} bytes)."
        )
        payload = orjson.dumps(
            {"errorMessage": message, "errorType": "Function.ResponseSizeTooLarge"}
        )
        return replace(
            outcome,
            status=Status.ERROR,
            payload=payload,
            error_type="Function.ResponseSizeTooLarge",
            error_message=message,
        )

    def _finish(
        self,
        name: str,
        qualifier: str | None,
        version: FunctionVersion,
        request_id: str,
        started: float,
        outcome: Outcome,
        attempt_of: tuple[str, int] | None,
    ) -> InvokeResult:
        record = self._record(
            name, qualifier, version, request_id, started, outcome.status,
            duration_ms=outcome.duration_ms,
            max_memory_used_mb=outcome.max_memory_used_mb,
            init_duration_ms=outcome.init_duration_ms,
            error_type=outcome.error_type,
            error_message=outcome.error_message,
            attempt_of=attempt_of,
            cpu_time_ms=outcome.cpu_time_ms,
        )
        text = frame(record, outcome.output)
        log_file, offset, length = self._logs.append(name, text)
        self._records.add(record, log_file, offset, length)
        return InvokeResult(
            request_id=request_id,
            payload=outcome.payload,
            executed_version=version.version,
            function_error=None if outcome.status is Status.SUCCESS else "Unhandled",
            log=text,
        )

    @staticmethod
    def _record(
        name: str,
        qualifier: str | None,
        version: FunctionVersion,
        request_id: str,
        started: float,
        status: Status,
        *,
        duration_ms: float = 0.0,
        max_memory_used_mb: int = 0,
        init_duration_ms: float | None = None,
        error_type: str | None = None,
        error_message: str | None = None,
        attempt_of: tuple[str, int] | None = None,
        cpu_time_ms: float | None = None,
    ) -> InvocationRecord:
        async_request_id, attempt = attempt_of if attempt_of is not None else (None, None)
        return InvocationRecord(
            request_id=request_id,
            function=name,
            version=version.version,
            qualifier=qualifier or version.version,
            status=status,
            started_at=started,
            duration_ms=round(duration_ms, 3),
            billed_duration_ms=billed_ms(duration_ms) if status is not Status.THROTTLED else 0,
            memory_size_mb=version.config.memory_mb,
            max_memory_used_mb=max_memory_used_mb,
            init_duration_ms=round(init_duration_ms, 3) if init_duration_ms is not None else None,
            error_type=error_type,
            error_message=error_message,
            async_request_id=async_request_id,
            attempt=attempt,
            cpu_time_ms=round(cpu_time_ms, 3) if cpu_time_ms is not None else None,
        )

    def _spec(self, version: FunctionVersion) -> SandboxSpec:
        key = (version.function, version.revision)
        spec = self._specs.get(key)
        if spec is None:
            config = version.config
            spec = SandboxSpec(
                function=version.function,
                version=version.version,
                revision=version.revision,
                handler=config.handler,
                code_dir=self._layout.package(version.code_sha256),
                layer_dir=(
                    self._layout.layer(version.layer_sha256) if version.layer_sha256 else None
                ),
                memory_mb=config.memory_mb,
                timeout_s=float(config.timeout_s),
                environment=dict(config.environment),
                reserved_concurrency=config.reserved_concurrency,
                network=config.network,
                role=config.role,
            )
            self._specs[key] = spec
        return spec
