"""The sandboxes of one function revision: warm idle ones, busy ones, starting ones."""

from __future__ import annotations

import time

from faasbox.runtime.sandbox import Sandbox
from faasbox.runtime.spec import SandboxSpec


class Pool:
    """Sandboxes of one ``(function, revision)``.

    Not thread-safe: the node's lock guards every pool. Idle sandboxes are kept in the
    order they became idle, so the most recently used is reused first (its caches are
    warmest) and the least recently used ones expire or are evicted first. A busy
    sandbox is never in ``idle`` and is never reclaimed.
    """

    def __init__(self, spec: SandboxSpec) -> None:
        self.key = spec.pool_key
        self.function = spec.function
        self.revision = spec.revision
        self.idle: list[Sandbox] = []
        self.busy: set[Sandbox] = set()
        self.starting = 0
        #: Set by retire: sandboxes that come back are destroyed instead of kept.
        self.retired = False

    def __len__(self) -> int:
        return len(self.idle) + len(self.busy) + self.starting

    def take(self) -> Sandbox | None:
        """The most recently used idle sandbox, now busy; None if there is none."""
        if not self.idle:
            return None
        sandbox = self.idle.pop()
        sandbox.state = "busy"
        self.busy.add(sandbox)
        return sandbox

    def add_busy(self, sandbox: Sandbox) -> None:
        """A sandbox that just started for a call: busy with it."""
        self.starting -= 1
        sandbox.state = "busy"
        self.busy.add(sandbox)

    def put_back(self, sandbox: Sandbox) -> None:
        """A busy sandbox whose call ended, healthy: idle and warm from now."""
        self.busy.discard(sandbox)
        sandbox.state = "idle"
        sandbox.last_used = time.monotonic()
        self.idle.append(sandbox)

    def expired(self, idle_since: float) -> list[Sandbox]:
        """Remove and return the idle sandboxes unused since before ``idle_since``."""
        count = 0
        for sandbox in self.idle:
            if sandbox.last_used > idle_since:
                break
            count += 1
        gone, self.idle[:count] = self.idle[:count], []
        return gone

    def drain(self) -> list[Sandbox]:
        """Remove and return every idle sandbox."""
        gone, self.idle = self.idle, []
        return gone
