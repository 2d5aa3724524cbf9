"""One loop that drives every trigger.

Each kind of trigger is a :class:`Driver`. The dispatcher thread calls a driver's
``run_due`` when the time it asked for comes, or at once when something woke it
(``wake(name)``: a message was sent, an object written, a schedule changed). Drivers
do quick work on the loop (pick what is due, claim it in a transaction) and hand
anything long -- an invocation -- to threads of their own, so one slow function never
delays another trigger.
"""

from __future__ import annotations

import abc
import logging
import threading
import time

log = logging.getLogger("faasbox.events")

#: A driver that failed is tried again after this long (its error is logged).
RETRY_AFTER_FAILURE_S = 1.0


class Driver(abc.ABC):
    """One kind of trigger (schedules, mappings, notifications, alarms, async events)."""

    #: Unique among the dispatcher's drivers; ``Dispatcher.wake`` uses it.
    name: str = ""
    #: A wake runs the driver no sooner than this after its last run started: writes
    #: that come in a burst (a thousand puts) are then handled in a few runs, not one
    #: run each.
    min_interval_s: float = 0.0

    @abc.abstractmethod
    def run_due(self, now: float) -> float | None:
        """Do what is due at ``now`` (epoch seconds) without blocking for long.

        Returns when to run next (epoch seconds; the dispatcher calls earlier if woken),
        or None to be called only when woken. An exception is logged and the driver is
        called again after ``RETRY_AFTER_FAILURE_S``: it must leave durable state
        consistent at every line (claims happen in transactions)."""

    def close(self) -> None:  # noqa: B027 - most drivers own no threads: nothing to stop
        """Stop the driver's own threads, letting running work finish. Idempotent."""


class Dispatcher:
    """Runs :class:`Driver` objects on one thread. ``start`` after adding them."""

    def __init__(self) -> None:
        self._drivers: dict[str, Driver] = {}
        self._due: dict[str, float] = {}
        self._last_run: dict[str, float] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, driver: Driver) -> None:
        """Register a driver; it first runs as soon as the dispatcher starts."""
        if not driver.name or driver.name in self._drivers:
            raise ValueError(f"driver name {driver.name!r} is empty or taken")
        with self._cond:
            self._drivers[driver.name] = driver
            self._due[driver.name] = 0.0
            self._cond.notify()

    def wake(self, name: str) -> None:
        """Have driver ``name`` run as soon as possible (no-op for an unknown name)."""
        with self._cond:
            if name in self._due:
                soonest = self._last_run.get(name, 0.0) + self._drivers[name].min_interval_s
                if soonest < self._due[name]:
                    self._due[name] = soonest
                    self._cond.notify()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="faasbox-dispatcher",
                                            daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the loop, then every driver (in reverse order of adding). Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
        for driver in reversed(list(self._drivers.values())):
            try:
                driver.close()
            except Exception:  # one driver failing to stop must not keep others running
                log.exception("closing driver %s failed", driver.name)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    now = time.time()
                    soonest = min(self._due.values(), default=float("inf"))
                    if soonest <= now:
                        break
                    self._cond.wait(None if soonest == float("inf") else soonest - now)
                if self._closed:
                    return
                now = time.time()
                ready = [name for name, due in self._due.items() if due <= now]
                for name in ready:
                    self._due[name] = float("inf")  # a wake during the run re-arms it
                    self._last_run[name] = now
            for name in ready:
                self._run(name, now)

    def _run(self, name: str, now: float) -> None:
        driver = self._drivers[name]
        try:
            following = driver.run_due(now)
        except Exception:
            log.exception("trigger driver %s failed; retrying in %.0f s", name,
                          RETRY_AFTER_FAILURE_S)
            following = time.time() + RETRY_AFTER_FAILURE_S
        with self._cond:
            if following is not None:
                self._due[name] = min(self._due[name], following)
