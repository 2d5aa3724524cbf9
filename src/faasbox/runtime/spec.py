"""What the runtime is asked to run, and what it reports back.

The domain (invoker) builds a :class:`SandboxSpec` per function revision and receives an
:class:`Outcome` per invocation; everything between is the runtime's business.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from faasbox.model import Status


@dataclass(frozen=True)
class SandboxSpec:
    """Everything needed to start a sandbox for one function revision.

    Sandboxes are pooled by ``(function, revision)``: a sandbox only ever serves the
    revision it was started for.
    """

    function: str
    version: str  # "$LATEST" or a published number, as text
    revision: str  # identity of code + layer + configuration (FunctionVersion.revision)
    handler: str  # "module.function" or "pkg.module.function"
    code_dir: Path
    layer_dir: Path | None
    memory_mb: int
    timeout_s: float
    environment: Mapping[str, str] = field(default_factory=dict)  # the user's variables
    reserved_concurrency: int | None = None
    network: str = "host"  # or "none": an empty network namespace
    role: str = "default"  # the execution role: its credentials are the sandbox's

    @property
    def pool_key(self) -> tuple[str, str]:
        return (self.function, self.revision)


#: Temporary credentials of a role for a sandbox: (role, sandbox id) -> (the variables
#: that carry them, when they expire as a Unix time).
CredentialSource = Callable[[str, str], tuple[dict[str, str], float]]


@dataclass(frozen=True)
class Outcome:
    """The result of one invocation inside a sandbox.

    ``payload`` is the handler's result as JSON bytes, or Lambda's error object
    ``{"errorMessage", "errorType", "stackTrace"}`` as JSON bytes when ``status`` is not
    SUCCESS. ``output`` is everything the sandbox printed for this call (on a cold
    start, the init phase's output comes first), kept even when the sandbox was killed.
    """

    status: Status
    payload: bytes
    output: str
    duration_ms: float
    max_memory_used_mb: int
    sandbox_id: str
    sandbox_pid: int
    init_duration_ms: float | None = None  # set on cold starts only
    error_type: str | None = None
    error_message: str | None = None
    #: CPU time of the call from the sandbox's cgroup (cgroup isolation level only).
    cpu_time_ms: float | None = None

    @property
    def cold(self) -> bool:
        return self.init_duration_ms is not None
