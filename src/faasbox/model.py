"""Domain values: immutable, validated when built, serialized explicitly."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

from faasbox.config import Limits
from faasbox.errors import InvalidParameterError

LATEST = "$LATEST"
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ALIAS_RE = re.compile(r"^(?!^[0-9]+$)[A-Za-z0-9_-]{1,128}$")
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
HANDLER_RE = re.compile(rf"^{IDENT}(\.{IDENT})*\.{IDENT}$")
VERSION_RE = re.compile(r"[1-9][0-9]{0,9}")  # a published version number
ENV_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
RESERVED_ENV = frozenset(
    {
        "_HANDLER",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        # the execution role's credentials, and where to use them
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "FAASBOX_ENDPOINT",
        "FAASBOX_CREDENTIALS_EXPIRATION",
    }
)


def validate_name(name: str, what: str = "function name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidParameterError(
            f"invalid {what} {name!r}: use 1-64 letters, digits, '-' or '_'"
        )
    return name


def validate_alias_name(name: str) -> str:
    if not isinstance(name, str) or not ALIAS_RE.match(name):
        raise InvalidParameterError(
            f"invalid alias name {name!r}: use 1-128 letters, digits, '-' or '_', not only digits"
        )
    return name


def validate_handler(handler: str) -> str:
    if not isinstance(handler, str) or not HANDLER_RE.match(handler):
        raise InvalidParameterError(
            f"invalid handler {handler!r}: expected 'module.function' "
            "(dotted packages allowed, e.g. 'pkg.mod.handler')"
        )
    return handler


ROLE_RE = re.compile(r"^[A-Za-z0-9_+=,.@-]{1,64}$")
#: A function's network: the host's, or none at all.
NETWORKS = ("host", "none")


@dataclass(frozen=True)
class FunctionConfig:
    """The configuration of a function, as snapshotted into each published version."""

    handler: str
    memory_mb: int = 128
    timeout_s: int = 3
    environment: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    reserved_concurrency: int | None = None
    #: "host" (the host's network) or "none" (an empty network namespace of its own;
    #: needs the namespace or cgroup isolation level).
    network: str = "host"
    #: The execution role whose temporary credentials its sandboxes get.
    role: str = "default"

    def validate(self, limits: Limits) -> FunctionConfig:
        """Return self, or raise :class:`InvalidParameterError` naming the bad field."""
        validate_handler(self.handler)
        if not _is_int(self.memory_mb) or not (
            limits.memory_min_mb <= self.memory_mb <= limits.memory_max_mb
        ):
            raise InvalidParameterError(
                f"memory_mb={self.memory_mb!r} is out of range "
                f"{limits.memory_min_mb}-{limits.memory_max_mb}"
            )
        if not _is_int(self.timeout_s) or not (
            limits.timeout_min_s <= self.timeout_s <= limits.timeout_max_s
        ):
            raise InvalidParameterError(
                f"timeout_s={self.timeout_s!r} is out of range "
                f"{limits.timeout_min_s}-{limits.timeout_max_s}"
            )
        if not isinstance(self.environment, Mapping):
            raise InvalidParameterError(
                f"environment must be an object of names to strings, not {self.environment!r}"
            )
        if not isinstance(self.description, str):
            raise InvalidParameterError(f"description must be a string, not {self.description!r}")
        size = 0
        for key, value in self.environment.items():
            if not isinstance(key, str) or not ENV_KEY_RE.match(key):
                raise InvalidParameterError(f"invalid environment variable name {key!r}")
            if key in RESERVED_ENV:
                raise InvalidParameterError(f"environment variable {key} is reserved")
            if not isinstance(value, str):
                raise InvalidParameterError(f"environment variable {key} must be a string")
            size += len(key.encode()) + len(value.encode())
        if size > limits.environment_bytes:
            raise InvalidParameterError(
                f"environment variables take {size} bytes, over the "
                f"{limits.environment_bytes}-byte limit"
            )
        if len(self.description) > 256:
            raise InvalidParameterError("description is longer than 256 characters")
        rc = self.reserved_concurrency
        if rc is not None and (not _is_int(rc) or rc < 0 or rc > 1000):
            raise InvalidParameterError(f"reserved_concurrency={rc!r} is out of range 0-1000")
        if self.network not in NETWORKS:
            raise InvalidParameterError(f"network={self.network!r}: use one of "
                                        f"{', '.join(NETWORKS)}")
        if not isinstance(self.role, str) or not ROLE_RE.match(self.role):
            raise InvalidParameterError(f"role={self.role!r} is not a role name (1-64 "
                                        "letters, digits and _+=,.@-)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "handler": self.handler,
            "memory_mb": self.memory_mb,
            "timeout_s": self.timeout_s,
            "environment": dict(sorted(self.environment.items())),
            "description": self.description,
            "reserved_concurrency": self.reserved_concurrency,
            "network": self.network,
            "role": self.role,
        }

    def hashed(self) -> dict[str, Any]:
        """What identifies this configuration in hashes: :meth:`to_dict`, without
        fields at a default that older configurations did not have (their hashes stay
        the same)."""
        config = self.to_dict()
        if config["network"] == "host":
            del config["network"]
        if config["role"] == "default":
            del config["role"]
        return config

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], limits: Limits | None = None) -> FunctionConfig:
        """Build from JSON-like data; missing sizes take ``limits``' defaults."""
        limits = limits or Limits()
        if not isinstance(data, Mapping):
            raise InvalidParameterError("configuration must be an object")
        known = {"handler", "memory_mb", "timeout_s", "environment", "description",
                 "reserved_concurrency", "network", "role"}
        unknown = set(data) - known
        if unknown:
            raise InvalidParameterError(f"unknown configuration fields: {sorted(unknown)}")
        if "handler" not in data:
            raise InvalidParameterError("handler is required")
        environment = data.get("environment") or {}
        if not isinstance(environment, Mapping):
            raise InvalidParameterError(
                f"environment must be an object of names to strings, not {environment!r}"
            )
        return cls(
            handler=data["handler"],
            memory_mb=data.get("memory_mb", limits.memory_default_mb),
            timeout_s=data.get("timeout_s", limits.timeout_default_s),
            environment=dict(environment),
            description=data.get("description") or "",
            reserved_concurrency=data.get("reserved_concurrency"),
            network=data.get("network") or "host",
            role=data.get("role") or "default",
        )


@dataclass(frozen=True)
class FunctionVersion:
    """One runnable snapshot: ``$LATEST`` or an immutable published number."""

    function: str
    version: str
    code_sha256: str
    layer_sha256: str | None
    config: FunctionConfig
    created_at: float
    requirements_sha256: str | None = None
    #: Where the dependency layer's requirements came from: "package" (its
    #: requirements.txt, replaced with the code) or "config" (given explicitly, kept
    #: across code updates until given again).
    requirements_source: str | None = None
    version_description: str = ""

    @cached_property
    def content_sha256(self) -> str:
        """Hash of what a version snapshots: code, dependency layer and configuration
        (reserved concurrency excluded: it belongs to the function, not a version).
        Publishing an unchanged ``$LATEST`` is detected by comparing it."""
        config = self.config.hashed()
        del config["reserved_concurrency"]
        return _sha([self.code_sha256, self.layer_sha256, config])

    @cached_property
    def revision(self) -> str:
        """Identity of a sandbox pool: what a running sandbox depends on (code, layer,
        handler, memory, timeout, environment) plus the version number.

        An update of ``$LATEST`` that changes any of these never reuses a sandbox that
        holds the old code or configuration; one that changes only the description or
        reserved concurrency keeps the warm sandboxes.
        """
        config = self.config.hashed()
        del config["reserved_concurrency"], config["description"]
        return _sha([self.code_sha256, self.layer_sha256, config, self.version])[:16]

    @property
    def arn(self) -> str:
        return function_arn(self.function, self.version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "version": self.version,
            "code_sha256": self.code_sha256,
            "layer_sha256": self.layer_sha256,
            "requirements_sha256": self.requirements_sha256,
            "requirements_source": self.requirements_source,
            "version_description": self.version_description,
            "revision": self.revision,
            "created_at": self.created_at,
            "arn": self.arn,
            **self.config.to_dict(),
        }


def _sha(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: Queue names (SQS): 1-80 letters, digits, '-' or '_'.
QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


@dataclass(frozen=True)
class Destination:
    """Where an event goes: ``queue:NAME`` or ``function:NAME[:QUALIFIER]`` (bucket
    notifications, async invocation destinations, alarm actions)."""

    kind: str
    name: str
    qualifier: str | None = None

    @classmethod
    def parse(cls, text: str, what: str = "destination") -> Destination:
        """Raises InvalidParameterError naming the expected forms. ``$LATEST`` as a
        qualifier is the same as none."""
        kind, _, rest = text.partition(":") if isinstance(text, str) else ("", "", "")
        name, _, qualifier = rest.partition(":")
        if kind == "queue" and not qualifier:
            if not QUEUE_NAME_RE.match(name):
                raise InvalidParameterError(
                    f"invalid {what} {text!r}: a queue name is 1-80 letters, digits, '-' or '_'"
                )
            return cls("queue", name)
        if kind == "function":
            try:
                validate_name(name)
                if qualifier and qualifier != LATEST and not VERSION_RE.fullmatch(qualifier):
                    validate_alias_name(qualifier)
            except InvalidParameterError as exc:
                raise InvalidParameterError(f"invalid {what} {text!r}: {exc.message}") from None
            return cls("function", name, None if qualifier in ("", LATEST) else qualifier)
        raise InvalidParameterError(
            f"invalid {what} {text!r}: use queue:NAME or function:NAME[:QUALIFIER]"
        )

    def __str__(self) -> str:
        tail = f":{self.qualifier}" if self.qualifier else ""
        return f"{self.kind}:{self.name}{tail}"


#: What ARNs and event records say for the region and the account (one platform).
REGION = "local"
ACCOUNT_ID = "000000000000"


def function_arn(function: str, qualifier: str | None = None) -> str:
    base = f"arn:faasbox:lambda:{REGION}:{ACCOUNT_ID}:function:{function}"
    return f"{base}:{qualifier}" if qualifier and qualifier != LATEST else base


def queue_arn(queue: str) -> str:
    return f"arn:faasbox:sqs:{REGION}:{ACCOUNT_ID}:{queue}"


def bucket_arn(bucket: str) -> str:
    return f"arn:faasbox:s3:::{bucket}"


def schedule_arn(schedule: str) -> str:
    return f"arn:faasbox:scheduler:{REGION}:{ACCOUNT_ID}:schedule/default/{schedule}"


def alarm_arn(alarm: str) -> str:
    return f"arn:faasbox:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:{alarm}"


@dataclass(frozen=True)
class Alias:
    """A name for a version, optionally splitting traffic with a second version."""

    function: str
    name: str
    version: str
    additional_version: str | None = None
    additional_weight: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "name": self.name,
            "version": self.version,
            "additional_version": self.additional_version,
            "additional_weight": self.additional_weight,
            "arn": function_arn(self.function, self.name),
        }


class Status(StrEnum):
    """The final state of an invocation. Every record has one; none is 'unknown'."""

    SUCCESS = "success"
    ERROR = "error"
    TIMEOUT = "timeout"
    OOM = "oom"
    CRASH = "crash"
    THROTTLED = "throttled"


@dataclass(frozen=True)
class InvocationRecord:
    request_id: str
    function: str
    version: str
    qualifier: str
    status: Status
    started_at: float
    duration_ms: float
    billed_duration_ms: int
    memory_size_mb: int
    max_memory_used_mb: int
    init_duration_ms: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    log_offset: int = 0
    log_length: int = 0
    #: For an attempt of an async invocation: the request id the caller got back (202),
    #: shared by every attempt of that event, and this attempt's number (from 1).
    async_request_id: str | None = None
    attempt: int | None = None
    #: CPU time from the sandbox's cgroup (ms); None below the cgroup isolation level.
    cpu_time_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "function": self.function,
            "version": self.version,
            "qualifier": self.qualifier,
            "status": self.status.value,
            "started_at": self.started_at,
            "duration_ms": self.duration_ms,
            "billed_duration_ms": self.billed_duration_ms,
            "memory_size_mb": self.memory_size_mb,
            "max_memory_used_mb": self.max_memory_used_mb,
            "init_duration_ms": self.init_duration_ms,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "async_request_id": self.async_request_id,
            "attempt": self.attempt,
            "cpu_time_ms": self.cpu_time_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InvocationRecord:
        return cls(
            request_id=data["request_id"],
            function=data["function"],
            version=data["version"],
            qualifier=data["qualifier"],
            status=Status(data["status"]),
            started_at=data["started_at"],
            duration_ms=data["duration_ms"],
            billed_duration_ms=data["billed_duration_ms"],
            memory_size_mb=data["memory_size_mb"],
            max_memory_used_mb=data["max_memory_used_mb"],
            init_duration_ms=data.get("init_duration_ms"),
            error_type=data.get("error_type"),
            error_message=data.get("error_message"),
            async_request_id=data.get("async_request_id"),
            attempt=data.get("attempt"),
            cpu_time_ms=data.get("cpu_time_ms"),
        )


@dataclass(frozen=True)
class InvokeResult:
    """What a caller gets back from a sync invoke.

    ``payload`` is the handler's JSON result (or Lambda's error object) as bytes;
    ``function_error`` is ``"Unhandled"`` when the handler or its sandbox failed, as in
    Lambda's ``X-Amz-Function-Error`` header; ``log`` holds the framed log of this call.
    """

    request_id: str
    payload: bytes
    executed_version: str
    function_error: str | None = None
    log: str = ""

    def json(self) -> Any:
        return json.loads(self.payload) if self.payload else None
