"""Typed settings. This is the only module that reads the environment.

Every CLI flag has a ``FAASBOX_*`` twin; units live in the names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

MB = 1024 * 1024


def _default_capacity_mb() -> int:
    """75% of the machine's RAM, as the issue asks for the node's default capacity."""
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        page = os.sysconf("SC_PAGE_SIZE")
        return int(pages * page * 0.75 // MB)
    except (ValueError, OSError):  # pragma: no cover - non-POSIX
        return 4096


@dataclass(frozen=True)
class Limits:
    """Lambda's limits, configurable by the operator."""

    memory_min_mb: int = 128
    memory_max_mb: int = 10240
    memory_default_mb: int = 128
    timeout_min_s: int = 1
    timeout_max_s: int = 900
    timeout_default_s: int = 3
    sync_payload_bytes: int = 6 * MB
    environment_bytes: int = 4096
    zip_bytes: int = 50 * MB
    unzipped_bytes: int = 250 * MB
    package_entries: int = 20_000
    compression_ratio: int = 100
    #: The ratio limit applies to entries that expand past this size: small, highly
    #: repetitive files (a 2 KB run of spaces) are ordinary, bombs are not small.
    compression_floor_bytes: int = 1024 * 1024
    #: Async invocation events (Lambda: 256 KB) and queue messages (SQS: 256 KB).
    async_payload_bytes: int = 256 * 1024
    message_bytes: int = 256 * 1024
    #: All the headers of one HTTP request, names and values (API Gateway: 10 KB).
    header_bytes: int = 16 * 1024
    #: How deeply the JSON body of an API call may nest (function payloads excepted).
    json_depth: int = 32


@dataclass(frozen=True)
class Settings:
    """Everything configurable about one faasbox platform instance."""

    home: Path = Path(".faasbox")
    host: str = "127.0.0.1"
    port: int = 8642
    #: Where clients (and functions, as FAASBOX_ENDPOINT) reach the server; "" derives
    #: it from host and port.
    endpoint: str = ""
    keep_alive_s: float = 300.0
    init_timeout_s: float = 10.0
    capacity_mb: int = field(default_factory=_default_capacity_mb)
    #: "auto" uses a cgroup memory limit where cgroups are writable, else an RSS watch.
    memory_enforcement: str = "auto"
    #: Sandbox isolation level: "process", "namespace", "cgroup", or "auto" (the best
    #: this host allows; `faasbox doctor` says which and why not the others).
    isolation: str = "auto"
    #: How long a sandbox's temporary credentials (its function's role) last; they are
    #: renewed at half their life for sandboxes that stay warm.
    sandbox_credentials_s: float = 3600.0
    #: Size of the private /tmp (tmpfs) of a namespace or cgroup sandbox, in MB.
    sandbox_tmp_mb: int = 512
    #: Parent folder for per-sandbox cgroups (cgroup v1 memory controller); "" = auto.
    cgroup_root: str = ""
    max_open_files: int = 1024
    max_processes: int = 1024
    pip: str = ""
    #: SQLAlchemy URL of the state store; "" = SQLite at ``<home>/state.db``.
    database_url: str = ""
    #: Object store: "folder" (``objects_dir``, default ``<home>/objects``) or "s3"
    #: (any S3-compatible service at ``s3_endpoint_url``; credentials from the usual
    #: AWS variables). Buckets are named ``s3_bucket_prefix + name`` there.
    object_store: str = "folder"
    objects_dir: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_bucket_prefix: str = ""
    #: How long 10-second metric datapoints are kept.
    metrics_retention_s: float = 24 * 3600.0
    limits: Limits = field(default_factory=Limits)

    _ENV = {
        "home": "FAASBOX_HOME",
        "host": "FAASBOX_HOST",
        "port": "FAASBOX_PORT",
        "endpoint": "FAASBOX_ENDPOINT",
        "keep_alive_s": "FAASBOX_KEEP_ALIVE_S",
        "init_timeout_s": "FAASBOX_INIT_TIMEOUT_S",
        "capacity_mb": "FAASBOX_CAPACITY_MB",
        "memory_enforcement": "FAASBOX_MEMORY_ENFORCEMENT",
        "isolation": "FAASBOX_ISOLATION",
        "sandbox_tmp_mb": "FAASBOX_SANDBOX_TMP_MB",
        "sandbox_credentials_s": "FAASBOX_SANDBOX_CREDENTIALS_S",
        "cgroup_root": "FAASBOX_CGROUP_ROOT",
        "pip": "FAASBOX_PIP",
        "database_url": "FAASBOX_DATABASE_URL",
        "object_store": "FAASBOX_OBJECT_STORE",
        "objects_dir": "FAASBOX_OBJECTS_DIR",
        "s3_endpoint_url": "FAASBOX_S3_ENDPOINT_URL",
        "s3_region": "FAASBOX_S3_REGION",
        "s3_bucket_prefix": "FAASBOX_S3_BUCKET_PREFIX",
        "metrics_retention_s": "FAASBOX_METRICS_RETENTION_S",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``FAASBOX_*`` variables; explicit ``overrides`` (not None) win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        types = {f.name: f.type for f in fields(cls)}
        for name, var in cls._ENV.items():
            if var in env and env[var] != "":
                values[name] = _coerce(types[name], env[var], var)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "home" in values:
            values["home"] = Path(values["home"])
        return cls(**values)

    @property
    def objects_path(self) -> Path:
        """The folder object store's root: ``objects_dir``, else ``<home>/objects``."""
        return Path(self.objects_dir) if self.objects_dir else Path(self.home).resolve() / "objects"

    def __post_init__(self) -> None:
        if not self.endpoint:
            host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
            shown = f"[{host}]" if ":" in host else host
            object.__setattr__(self, "endpoint", f"http://{shown}:{self.port}")


def _coerce(type_name: Any, raw: str, var: str) -> Any:
    try:
        if type_name in ("int", int):
            return int(raw)
        if type_name in ("float", float):
            return float(raw)
    except ValueError as exc:
        raise ValueError(f"{var}={raw!r} is not a number") from exc
    return raw
