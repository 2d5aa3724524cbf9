"""The execution capacity of one machine: admission, pools, keep-alive, the zygote.

:meth:`Node.invoke` runs on the caller's thread. Under one lock it admits the call
(reserved concurrency, memory capacity) and takes a warm sandbox or reserves the memory
of a new one; the socket I/O and the cold start happen outside the lock. Nothing
waits in a queue: a call that cannot be admitted at once raises
:class:`TooManyRequestsError`.
"""

from __future__ import annotations

import logging
import platform
import secrets
import sys
import threading
import time
from collections import Counter
from types import TracebackType
from typing import Any

from faasbox.config import Settings
from faasbox.errors import FaasboxError, TooManyRequestsError
from faasbox.layout import Layout
from faasbox.runtime import isolation
from faasbox.runtime.limits import LimitsEnforcer
from faasbox.runtime.memory import CgroupUnavailable, choose
from faasbox.runtime.pool import Pool
from faasbox.runtime.process import ProcessSandboxFactory
from faasbox.runtime.sandbox import InitFailed, Sandbox, SandboxFactory
from faasbox.runtime.spec import CredentialSource, Outcome, SandboxSpec

log = logging.getLogger("faasbox.runtime.node")

#: How long close() lets busy calls return after their sandboxes were killed.
CLOSE_WAIT_S = 5.0


class Node:
    """Runs invocations in pooled sandboxes. Starts lazily; a context manager.

    ``factory`` replaces the process sandbox factory (tests, other isolation levels).
    """

    def __init__(self, settings: Settings, layout: Layout, *,
                 factory: SandboxFactory | None = None,
                 credentials: CredentialSource | None = None) -> None:
        self.settings = settings
        self._credentials = credentials
        self.layout = layout
        self.id = secrets.token_hex(4)
        self._factory = factory
        self._lock = threading.Lock()
        self._idle_cond = threading.Condition(self._lock)
        self._start_lock = threading.Lock()
        self._pools: dict[tuple[str, str], Pool] = {}
        #: Per function, the revisions the last :meth:`retire` kept live, and when: a
        #: pool made later for another revision (a call that resolved its spec before
        #: the change) is made retired. Forgotten by the reaper once nothing of the
        #: function is live, none of its pools remain and ``keep_alive_s`` has passed.
        self._live_revisions: dict[str, tuple[frozenset[str], float]] = {}
        self._live: dict[str, Sandbox] = {}
        self._inflight: Counter[str] = Counter()
        self._used_mb = 0
        self._closed = False
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def _started(self) -> SandboxFactory:
        factory = self._factory
        if factory is not None and self._reaper is not None:
            return factory
        with self._start_lock:
            if self._closed:
                raise FaasboxError("the node is closed")
            if self._factory is None:
                self.layout.ensure()
                level = isolation_level(self.settings)
                memory = choose(self.settings, self.id)
                limits = None
                if level == "cgroup":
                    try:
                        limits = LimitsEnforcer.create(self.settings, self.id, memory)
                    except CgroupUnavailable as exc:
                        memory.close()
                        raise FaasboxError(f"isolation level cgroup: {exc}") from exc
                self._factory = ProcessSandboxFactory(self.settings, self.layout, memory,
                                                      level, limits, self._credentials)
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap_loop, daemon=True,
                                                name=f"faasbox-node-{self.id}-reaper")
                self._reaper.start()
            return self._factory

    def warm_up(self) -> None:
        """Get ready for invocations soon to come (a trigger was enabled, a server
        started): the sandbox factory starts its fork server and makes its slots, on a
        thread of its own, so the first cold start does not pay for them. Idempotent;
        a failure here is left for the first invocation to meet and report."""
        def run() -> None:
            try:
                self._started().warm_up()
            except FaasboxError as exc:
                log.info("node %s: warm-up failed (%s); the first invocation retries",
                         self.id, exc.message)

        threading.Thread(target=run, name=f"faasbox-node-{self.id}-warm-up",
                         daemon=True).start()

    def prewarm(self, spec: SandboxSpec) -> None:
        """Start one sandbox of ``spec`` ahead of need (a trigger was enabled: a batch is
        coming) and keep it idle, on a thread of its own. Nothing is started when the
        revision has a sandbox already (idle, busy or starting), when it would not fit in
        the capacity without evicting, or when the function reserves concurrency (a
        sandbox starting ahead must never throttle a real call). The sandbox's
        first call is then warm: its init happened before, outside any invocation (its
        output goes to that call's log). It expires after ``keep_alive_s`` like any
        idle sandbox. A failed init is logged; the first call meets it again."""
        def run() -> None:
            try:
                factory = self._started()
                with self._lock:
                    if self._closed or spec.reserved_concurrency is not None:
                        return
                    pool = self._pools.get(spec.pool_key)
                    if pool is not None and len(pool):
                        return
                    if self._used_mb + spec.memory_mb > self.settings.capacity_mb:
                        return
                    if pool is None:
                        pool = self._pools[spec.pool_key] = Pool(spec)
                        live = self._live_revisions.get(spec.function)
                        pool.retired = live is not None and spec.revision not in live[0]
                    pool.starting += 1
                    self._used_mb += spec.memory_mb
                    self._inflight[spec.function] += 1
                started = self._start(factory, spec, pool, f"prewarm-{secrets.token_hex(8)}")
                if isinstance(started, Outcome):
                    log.info("pre-warming %s failed: %s", spec.function,
                             started.error_message)
                    return
                init_ms = started.take_init()
                log.info("pre-warmed a sandbox of %s (init %.1f ms)", spec.function,
                         init_ms or 0.0)
                self._release(pool, started, True)
            except FaasboxError as exc:
                log.info("pre-warming %s failed: %s", spec.function, exc.message)

        threading.Thread(target=run, name=f"faasbox-node-{self.id}-prewarm",
                         daemon=True).start()

    def close(self) -> None:
        """Kill every sandbox and the zygote. Idempotent."""
        with self._start_lock, self._lock:
            if self._closed:
                return
            self._closed = True
            idle = [sb for pool in self._pools.values() for sb in pool.drain()]
            busy = [sb for pool in self._pools.values() for sb in pool.busy]
            for sandbox in idle:
                self._forget(sandbox)
        self._stop.set()
        for sandbox in busy:
            sandbox.kill()  # its caller gets the outcome and destroys it
        for sandbox in idle:
            sandbox.destroy("node closed")
        with self._lock:
            self._idle_cond.wait_for(lambda: not self._live, CLOSE_WAIT_S)
        if self._reaper is not None and self._reaper is not threading.current_thread():
            self._reaper.join(CLOSE_WAIT_S)
        if self._factory is not None:
            self._factory.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- invocations --------------------------------------------------------------------

    def invoke(self, spec: SandboxSpec, event: bytes, *, request_id: str,
               invoked_function_arn: str) -> Outcome:
        """Run ``event`` (JSON bytes) through ``spec``'s handler on this thread.

        Raises :class:`TooManyRequestsError` at once when the function's reserved
        concurrency is all busy, or when a new sandbox would exceed the node's memory
        capacity and evicting idle sandboxes of other revisions cannot make room;
        :class:`FaasboxError` when no sandbox can be started at all.
        """
        factory = self._started()
        evicted: list[Sandbox] = []
        dead: list[Sandbox] = []
        try:
            with self._lock:
                if self._closed:
                    raise FaasboxError("the node is closed")
                limit = spec.reserved_concurrency
                if limit is not None and self._inflight[spec.function] >= limit:
                    raise TooManyRequestsError(
                        f"Rate Exceeded: function {spec.function} is at its reserved "
                        f"concurrency of {limit}")
                pool = self._pools.get(spec.pool_key)
                if pool is None:
                    pool = self._pools[spec.pool_key] = Pool(spec)
                    live = self._live_revisions.get(spec.function)
                    # A revision retired after the caller resolved it: served, not kept.
                    pool.retired = live is not None and spec.revision not in live[0]
                sandbox = pool.take()
                while sandbox is not None and not sandbox.idle_alive():
                    pool.busy.discard(sandbox)  # died while idle: take the next one
                    self._unlive(sandbox)  # its pool stays: this call is about to use it
                    dead.append(sandbox)
                    sandbox = pool.take()
                if sandbox is None:
                    try:
                        evicted = self._make_room(spec, pool)
                    except TooManyRequestsError:
                        self._drop_if_empty(pool)
                        raise
                    pool.starting += 1
                    self._used_mb += spec.memory_mb
                self._inflight[spec.function] += 1
        finally:
            for corpse in dead:
                corpse.destroy("died while idle", wait=False)
        for victim in evicted:
            victim.destroy("evicted to make room", wait=False)
        if sandbox is None:
            started = self._start(factory, spec, pool, request_id)
            if isinstance(started, Outcome):
                return started
            sandbox = started
        reusable = False
        try:
            outcome = sandbox.invoke(event, request_id=request_id,
                                     invoked_function_arn=invoked_function_arn)
            reusable = sandbox.healthy
        finally:
            self._release(pool, sandbox, reusable)
        return outcome

    def _make_room(self, spec: SandboxSpec, pool: Pool) -> list[Sandbox]:
        """Evict least recently used idle sandboxes of other pools until ``spec`` fits;
        raise :class:`TooManyRequestsError` (evicting nothing) when it cannot fit."""
        need = self._used_mb + spec.memory_mb - self.settings.capacity_mb
        if need <= 0:
            return []
        idle = sorted((sb for p in self._pools.values() if p is not pool for sb in p.idle),
                      key=lambda sb: sb.last_used)
        chosen, freed = [], 0
        for sandbox in idle:
            if freed >= need:
                break
            chosen.append(sandbox)
            freed += sandbox.spec.memory_mb
        if freed < need:
            raise TooManyRequestsError(
                f"Rate Exceeded: the node's memory capacity of {self.settings.capacity_mb} MB "
                f"(capacity_mb) is in use ({self._used_mb} MB); {spec.function} needs "
                f"{spec.memory_mb} MB")
        for sandbox in chosen:
            owner = self._pools[sandbox.spec.pool_key]
            owner.idle.remove(sandbox)
            self._forget(sandbox)
        return chosen

    def _start(self, factory: SandboxFactory, spec: SandboxSpec, pool: Pool,
               request_id: str) -> Sandbox | Outcome:
        """Cold start; on failure give the reservation back."""
        try:
            sandbox = factory.start(spec, request_id=request_id)
        except InitFailed as failed:
            self._unreserve(spec, pool)
            return failed.outcome
        except BaseException:
            self._unreserve(spec, pool)
            raise
        with self._lock:
            pool.add_busy(sandbox)
            self._live[sandbox.id] = sandbox
            closed = self._closed
        if closed:
            self._release(pool, sandbox, False)
            raise FaasboxError("the node is closed")
        return sandbox

    def _unreserve(self, spec: SandboxSpec, pool: Pool) -> None:
        with self._lock:
            pool.starting -= 1
            self._used_mb -= spec.memory_mb
            self._done(spec.function, pool)

    def _release(self, pool: Pool, sandbox: Sandbox, reusable: bool) -> None:
        """The call on ``sandbox`` ended: keep it warm, or destroy it."""
        with self._lock:
            self._done(sandbox.spec.function, None)
            if reusable and not pool.retired and not self._closed:
                pool.put_back(sandbox)
                return
            pool.busy.discard(sandbox)
            self._forget(sandbox)
        if reusable:
            sandbox.destroy("retired", wait=False)
        else:
            sandbox.destroy("failed")

    def _done(self, function: str, pool: Pool | None) -> None:
        """One call of ``function`` is no longer in flight (lock held)."""
        self._inflight[function] -= 1
        if self._inflight[function] <= 0:
            del self._inflight[function]
        if pool is not None:
            self._drop_if_empty(pool)

    def _forget(self, sandbox: Sandbox) -> None:
        """``sandbox`` is in no pool any more and is about to be destroyed (lock held)."""
        self._unlive(sandbox)
        pool = self._pools.get(sandbox.spec.pool_key)
        if pool is not None:
            self._drop_if_empty(pool)

    def _unlive(self, sandbox: Sandbox) -> None:
        """``sandbox`` no longer counts as live nor holds memory (lock held)."""
        if self._live.pop(sandbox.id, None) is not None:
            self._used_mb -= sandbox.spec.memory_mb
        if not self._live:
            self._idle_cond.notify_all()

    def _drop_if_empty(self, pool: Pool) -> None:
        if not len(pool) and self._pools.get(pool.key) is pool:
            del self._pools[pool.key]

    # -- retirement and keep-alive ------------------------------------------------------

    def retire(self, function: str, keep_revisions: frozenset[str] = frozenset()) -> None:
        """Stop using sandboxes of ``function`` whose revision is not kept: idle ones are
        killed now, busy ones finish their call and are then destroyed.

        ``keep_revisions`` are the function's live revisions (none once it is deleted). A
        later call for another revision (its caller resolved it before the change) still
        runs, as Lambda would serve it, but its sandbox is destroyed after the call.
        """
        victims: list[Sandbox] = []
        with self._lock:
            self._live_revisions[function] = (keep_revisions, time.monotonic())
            for key, pool in list(self._pools.items()):
                if pool.function != function:
                    continue
                if pool.revision in keep_revisions:
                    pool.retired = False  # made by a call that ran ahead of this change
                    continue
                pool.retired = True
                del self._pools[key]
                drained = pool.drain()
                for sandbox in drained:
                    self._forget(sandbox)
                victims += drained
        for sandbox in victims:
            sandbox.destroy("retired", wait=False)  # killed now, cleaned up a little later

    def _reap_loop(self) -> None:
        interval = min(max(self.settings.keep_alive_s / 4, 0.05), 1.0)
        while not self._stop.wait(interval):
            self.reap()

    def reap(self) -> None:
        """Destroy the sandboxes idle for longer than ``keep_alive_s`` (scale to zero)."""
        idle_since = time.monotonic() - self.settings.keep_alive_s
        victims: list[Sandbox] = []
        with self._lock:
            for pool in list(self._pools.values()):
                expired = pool.expired(idle_since)
                for sandbox in expired:
                    self._forget(sandbox)
                victims += expired
            self._forget_retired(idle_since)
        for sandbox in victims:
            sandbox.destroy("keep-alive expired", wait=False)
        factory = self._factory
        if factory is not None:
            factory.sweep()

    def _forget_retired(self, before: float) -> None:
        """Drop the live revisions of functions of which nothing is live any more (they
        were deleted), no pool remains, and that changed before ``before`` (lock held):
        by then no call that resolved them before the change is on its way."""
        stale = [name for name, (live, since) in self._live_revisions.items()
                 if not live and since <= before]
        if not stale:
            return
        busy = {pool.function for pool in self._pools.values()}
        for name in stale:
            if name not in busy:
                del self._live_revisions[name]

    # -- introspection ------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Capacity, memory in use (starting sandboxes included) and every live sandbox."""
        now = time.monotonic()
        with self._lock:
            sandboxes = [
                {
                    "id": sb.id,
                    "pid": sb.pid,
                    "function": sb.spec.function,
                    "revision": sb.spec.revision,
                    "version": sb.spec.version,
                    "state": sb.state,
                    "memory_mb": sb.spec.memory_mb,
                    "invocations": sb.invocations,
                    "idle_s": round(now - sb.last_used, 3) if sb.state == "idle" else 0.0,
                }
                for sb in self._live.values()
            ]
            used = self._used_mb
        factory = self._factory
        return {
            "capacity_mb": self.settings.capacity_mb,
            "used_mb": used,
            "sandboxes": sandboxes,
            "isolation": factory.isolation if factory else None,
            "memory_enforcement": factory.memory_enforcement if factory else None,
            "zygote_pid": factory.zygote_pid if factory else None,
        }


LEVELS = ("process", "namespace", "cgroup")


def isolation_level(settings: Settings) -> str:
    """The level sandboxes get: ``settings.isolation``, checked against what this host
    allows (FaasboxError saying why when a forced level is not available). ``auto`` is
    the best level available: ``cgroup``, else ``namespace``, else ``process``."""
    wanted = settings.isolation
    if wanted == "auto":
        return best_level(settings)
    if wanted not in LEVELS:
        raise FaasboxError(f"unknown isolation level {wanted!r}: use auto, "
                           f"{', '.join(LEVELS)}")
    why = unavailable(wanted, settings)
    if why is not None:
        raise FaasboxError(f"isolation level {wanted} is not available here: {why}")
    return wanted


_best: dict[tuple[str, str], str] = {}


def best_level(settings: Settings) -> str:
    """The best level this host allows (probed once per process and cgroup root)."""
    key = (settings.cgroup_root, settings.memory_enforcement)
    found = _best.get(key)
    if found is None:
        found = next(level for level in reversed(LEVELS)
                     if unavailable(level, settings) is None)
        _best[key] = found
    return found


def unavailable(level: str, settings: Settings | None = None) -> str | None:
    """None when ``level`` works on this host, else why not (the cgroup level is
    probed by making, and removing, a node's cgroups)."""
    if level == "process":
        return None
    if not sys.platform.startswith("linux"):
        return f"{level} needs Linux namespaces (this is {sys.platform})"
    why = isolation.available()
    if why is not None or level == "namespace":
        return why
    settings = settings or Settings()
    probe = f"probe-{secrets.token_hex(4)}"
    try:
        memory = choose(settings, probe)
    except FaasboxError as exc:
        return f"no memory enforcement: {exc.message}"
    try:
        if memory.parent_dir is None:
            return f"memory is enforced by {memory.name}, not a cgroup ({memory.reason})"
        LimitsEnforcer.create(settings, probe, memory).close()
    except CgroupUnavailable as exc:
        return str(exc)
    finally:
        memory.close()
    return None


def doctor(settings: Settings) -> dict[str, Any]:
    """What this host gives sandboxes: isolation level and memory enforcement (probed by
    creating and removing a cgroup), and why."""
    try:
        enforcer = choose(settings, f"doctor-{secrets.token_hex(4)}")
    except FaasboxError as exc:
        enforcement, reason = "unavailable", str(exc)
    else:
        enforcement, reason = enforcer.name, enforcer.reason
        enforcer.close()
    try:
        level, level_reason = isolation_level(settings), ""
    except FaasboxError as exc:
        level, level_reason = "unavailable", exc.message
    levels = {name: unavailable(name, settings) or "available" for name in LEVELS}
    return {
        "python": f"{platform.python_version()} ({sys.executable})",
        "isolation": level,
        "isolation_setting": settings.isolation,
        "isolation_reason": level_reason,
        "isolation_levels": levels,
        "memory_enforcement": enforcement,
        "memory_enforcement_reason": reason,
        "capacity_mb": settings.capacity_mb,
        "home": str(settings.home),
    }
