"""Metric datapoints in the state store: 10-second aggregates that merge.

A datapoint is keyed by (namespace, metric, dimensions, start) and holds
:class:`Stats`: count, sum, minimum, maximum and a log-bucket histogram, so datapoints
merge into any longer period and percentiles survive the merge. Buckets grow by a factor
of 2^(1/8): a bucket's geometric middle is within 4.5% of every value in it, which
bounds a percentile's error (it is also clamped to the exact minimum and maximum).

Folding invocation records is one transaction: the records after the cursor, the
datapoints and running totals they change, and the cursor's move. A crash at any line
leaves either all of it or none, so no record is counted twice or lost.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from faasbox.errors import ServiceUnavailableError
from faasbox.stores.database import Database
from faasbox.stores.sql import invocations

#: Histogram bucket growth: 2^(1/8) keeps a bucket's middle within 4.5% of its values.
GROWTH = 2 ** (1 / 8)
_LOG_GROWTH = math.log(GROWTH)
#: Bucket of zero (and anything not above 0): its estimate is exactly 0.
ZERO_BUCKET = -100_000

#: Why function metrics from records are SQLite-only (raised where they are asked for).
RECORDS_NEED_SQLITE = (
    "function metrics from invocation records (Invocations, Errors, Throttles, Duration, "
    "ColdStarts) need a SQLite state store for now: they are folded in by a cursor on "
    "SQLite's rowid, which grows in commit order; on other databases records commit out "
    "of order, so a cursor on (started_at, request_id) could skip some. Concurrency and "
    "queue metrics work on every database"
)

metadata = sa.MetaData()

datapoints = sa.Table(
    "metric_datapoints",
    metadata,
    sa.Column("namespace", sa.String(32), primary_key=True),
    sa.Column("metric", sa.String(64), primary_key=True),
    sa.Column("dimensions", sa.String(160), primary_key=True),
    sa.Column("start", sa.BigInteger, primary_key=True),
    sa.Column("samples", sa.Float, nullable=False),
    sa.Column("sum", sa.Float, nullable=False),
    sa.Column("min", sa.Float, nullable=False),
    sa.Column("max", sa.Float, nullable=False),
    sa.Column("buckets", sa.Text, nullable=False),
    sa.Index("ix_metric_datapoints_start", "start"),
)

#: Running totals since the store was made (Prometheus counters) and the latest sample
#: of each metric (Prometheus gauges). Never trimmed by retention.
totals = sa.Table(
    "metric_totals",
    metadata,
    sa.Column("namespace", sa.String(32), primary_key=True),
    sa.Column("metric", sa.String(64), primary_key=True),
    sa.Column("dimensions", sa.String(160), primary_key=True),
    sa.Column("samples", sa.Float, nullable=False),
    sa.Column("sum", sa.Float, nullable=False),
    sa.Column("last", sa.Float, nullable=False),
    sa.Column("last_at", sa.Float, nullable=False),
)

cursors = sa.Table(
    "metric_cursors",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
)


def bucket_of(value: float) -> int:
    """The histogram bucket holding ``value``: (GROWTH^(i-1), GROWTH^i]."""
    if not value > 0:
        return ZERO_BUCKET
    return math.ceil(math.log(value) / _LOG_GROWTH - 1e-9)


def bucket_value(index: int) -> float:
    """The estimate of a bucket's values: its geometric middle."""
    return 0.0 if index == ZERO_BUCKET else GROWTH ** (index - 0.5)


@dataclass
class Stats:
    """An aggregate of samples that merges with others."""

    count: float = 0.0
    sum: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    buckets: dict[int, float] = field(default_factory=dict)

    @classmethod
    def of(cls, *values: float) -> Stats:
        stats = cls()
        for value in values:
            stats.add(value)
        return stats

    def add(self, value: float) -> None:
        self.count += 1
        self.sum += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        index = bucket_of(value)
        self.buckets[index] = self.buckets.get(index, 0) + 1

    def merge(self, other: Stats) -> Stats:
        """Add ``other``'s samples to this one (in place); returns self."""
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        return self

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile (0-100) by nearest rank, from the histogram, clamped
        to the exact minimum and maximum."""
        if self.count <= 0:
            return math.nan
        if p >= 100:
            return self.max
        rank = max(1.0, math.ceil(p / 100 * self.count))
        seen = 0.0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return min(max(bucket_value(index), self.min), self.max)
        return self.max

    def value(self, statistic: str) -> float:
        """``statistic`` (SampleCount, Sum, Average, Minimum, Maximum or pNN)."""
        if statistic == "SampleCount":
            return self.count
        if statistic == "Sum":
            return self.sum
        if statistic == "Average":
            return self.sum / self.count if self.count else math.nan
        if statistic == "Minimum":
            return self.min
        if statistic == "Maximum":
            return self.max
        return self.percentile(float(statistic[1:]))

    def _row(self) -> dict[str, Any]:
        return {"samples": self.count, "sum": self.sum, "min": self.min, "max": self.max,
                "buckets": json.dumps({str(k): v for k, v in sorted(self.buckets.items())})}

    @classmethod
    def _from_row(cls, row: Any) -> Stats:
        buckets = {int(k): v for k, v in json.loads(row.buckets).items()}
        return cls(row.samples, row.sum, row.min, row.max, buckets)


#: A sample's key: (namespace, metric, dimensions key).
Key = tuple[str, str, str]


@dataclass(frozen=True)
class Sample:
    """One value of one metric at one time (epoch seconds)."""

    namespace: str
    metric: str
    dimensions: str
    at: float
    value: float

    @property
    def key(self) -> Key:
        return (self.namespace, self.metric, self.dimensions)


class MetricStore:
    """Datapoints, totals and the invocation cursor on the shared database."""

    def __init__(self, database: Database, resolution_s: int = 10) -> None:
        self.db = database
        self.resolution_s = resolution_s
        database.create(metadata)
        self._rowid: sa.ColumnClause[Any] | None = (
            sa.literal_column("rowid") if database.sqlite else None)
        #: Whether invocation records can be folded: the cursor needs a column that
        #: grows with insertion order (SQLite's rowid; see docs/metrics.md).
        self.can_fold = self._rowid is not None

    def slot(self, at: float) -> int:
        """The start of the datapoint holding time ``at``."""
        return int(at // self.resolution_s) * self.resolution_s

    # -- writes ----------------------------------------------------------------------

    def fold_invocations(
        self, to_samples: Callable[[Any], Iterable[Sample]], batch: int = 5000
    ) -> int:
        """Fold up to ``batch`` invocation records added since the cursor into
        datapoints and totals, and move the cursor past them: one transaction. Returns
        how many records were folded (0: none left)."""
        if self._rowid is None:
            raise ServiceUnavailableError(RECORDS_NEED_SQLITE)
        seq = self._rowid.label("seq")
        columns = [seq, invocations.c.function, invocations.c.status,
                   invocations.c.started_at, invocations.c.duration_ms,
                   invocations.c.init_duration_ms, invocations.c.max_memory_used_mb,
                   invocations.c.cpu_time_ms]
        with self.db.write() as conn:
            position = self._position(conn, "invocations")
            rows = conn.execute(
                sa.select(*columns).where(self._rowid > position).order_by(self._rowid)
                .limit(batch)
            ).all()
            if not rows:
                return 0
            samples = [sample for row in rows for sample in to_samples(row)]
            self._merge(conn, samples, replace=False)
            self._set_position(conn, "invocations", rows[-1].seq)
        return len(rows)

    def record_samples(self, samples: list[Sample], *, replace: bool) -> None:
        """Merge sampled values into their datapoints (``replace``: the sample
        replaces its 10-second datapoint, for levels such as a queue's depth) and set
        the metrics' latest values. One transaction."""
        if samples:
            with self.db.write() as conn:
                self._merge(conn, samples, replace=replace)

    def _merge(self, conn: Connection, samples: list[Sample], *, replace: bool) -> None:
        slots: dict[tuple[str, str, str, int], Stats] = {}
        added: dict[Key, Stats] = {}
        latest: dict[Key, Sample] = {}
        for sample in samples:
            slot_key = (*sample.key, self.slot(sample.at))
            if replace:
                slots[slot_key] = Stats.of(sample.value)
            else:
                slots.setdefault(slot_key, Stats()).add(sample.value)
            added.setdefault(sample.key, Stats()).add(sample.value)
            if sample.key not in latest or latest[sample.key].at <= sample.at:
                latest[sample.key] = sample
        d = datapoints.c
        for (namespace, metric, dims, start), stats in slots.items():
            where = ((d.namespace == namespace) & (d.metric == metric)
                     & (d.dimensions == dims) & (d.start == start))
            row = conn.execute(sa.select(datapoints).where(where)).first()
            if row is None:
                conn.execute(datapoints.insert().values(
                    namespace=namespace, metric=metric, dimensions=dims, start=start,
                    **stats._row()))
            else:
                merged = stats if replace else Stats._from_row(row).merge(stats)
                conn.execute(datapoints.update().where(where).values(**merged._row()))
        t = totals.c
        for key, stats in added.items():
            namespace, metric, dims = key
            where = (t.namespace == namespace) & (t.metric == metric) & (t.dimensions == dims)
            last = latest[key]
            row = conn.execute(sa.select(totals).where(where)).first()
            if row is None:
                conn.execute(totals.insert().values(
                    namespace=namespace, metric=metric, dimensions=dims, samples=stats.count,
                    sum=stats.sum, last=last.value, last_at=last.at))
            else:
                newer = last.at >= row.last_at
                conn.execute(totals.update().where(where).values(
                    samples=row.samples + stats.count, sum=row.sum + stats.sum,
                    last=last.value if newer else row.last,
                    last_at=last.at if newer else row.last_at))

    def trim(self, before: float) -> int:
        """Delete datapoints that start before ``before``; returns how many."""
        with self.db.write() as conn:
            done = conn.execute(datapoints.delete().where(datapoints.c.start < before))
        return int(done.rowcount or 0)

    @staticmethod
    def _position(conn: Connection, name: str) -> int:
        found = conn.execute(
            sa.select(cursors.c.position).where(cursors.c.name == name)
        ).scalar()
        return int(found or 0)

    @staticmethod
    def _set_position(conn: Connection, name: str, position: int) -> None:
        updated = conn.execute(
            cursors.update().where(cursors.c.name == name).values(position=position)
        )
        if not updated.rowcount:
            conn.execute(cursors.insert().values(name=name, position=position))

    # -- reads -----------------------------------------------------------------------

    def stats(self, key: Key, start: float, end: float) -> list[tuple[int, Stats]]:
        """The datapoints of ``key`` starting in [start, end), oldest first."""
        namespace, metric, dims = key
        d = datapoints.c
        query = (
            sa.select(datapoints)
            .where((d.namespace == namespace) & (d.metric == metric)
                   & (d.dimensions == dims) & (d.start >= start) & (d.start < end))
            .order_by(d.start)
        )
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        return [(int(row.start), Stats._from_row(row)) for row in rows]

    def has_datapoints(self, namespace: str, metrics: Iterable[str], dimensions: str) -> bool:
        """Whether any of ``metrics`` with these dimensions has a datapoint kept."""
        d = datapoints.c
        query = (sa.select(d.start)
                 .where((d.namespace == namespace) & d.metric.in_(list(metrics))
                        & (d.dimensions == dimensions))
                 .limit(1))  # the metric list lets the primary key's index find it
        with self.db.read() as conn:
            return conn.execute(query).first() is not None

    def keys(self, namespace: str | None = None) -> list[Key]:
        """Metrics that have datapoints, sorted."""
        d = datapoints.c
        query = sa.select(d.namespace, d.metric, d.dimensions).distinct()
        if namespace is not None:
            query = query.where(d.namespace == namespace)
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        return sorted((r.namespace, r.metric, r.dimensions) for r in rows)

    def totals(self) -> list[Any]:
        """Every running total: rows with namespace, metric, dimensions, samples, sum,
        last, last_at."""
        with self.db.read() as conn:
            return list(conn.execute(sa.select(totals).order_by(
                totals.c.namespace, totals.c.metric, totals.c.dimensions)).all())
