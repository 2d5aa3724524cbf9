"""The folder adapter of :class:`~faasbox.stores.objects.ObjectStore` (the default).

Standard library only: function code in sandboxes (``python -I -S``) imports it to read
and write objects without going through HTTP, while the control plane uses it too.

Layout under ``root``::

    index.db                 sqlite3 (WAL): buckets, the object index, the change feed
                             (its table and queries: :mod:`faasbox.stores.feed`)
    .tmp/<blob>              a put being written (streamed, MD5 computed on the way)
    <bucket>/<b[:2]>/<blob>  object contents, one immutable file per put, unique name

S3 keys are any UTF-8 text ("a", "a/b", "a//b", "../x"), which do not map onto paths,
so contents live under unique blob names and the index maps keys to blobs. Objects of
at most ``INLINE_MAX_BYTES`` are kept in the index row itself (SQLite reads and writes
small blobs faster than the filesystem creates files; a put is then one transaction).
A larger put writes the temp file, renames it into place, then commits the index row
*and* its change-feed row in one ``BEGIN IMMEDIATE`` transaction: that commit is the
put. The
blob it replaced is unlinked after the commit. A crash before the commit leaves an
orphan blob, and one after it an old blob; both are unreferenced and removed when a
store opens (``sweep``) once older than ``grace_s`` (younger ones may be a put in
flight in another process). A reader whose blob was unlinked between the index lookup
and ``open`` looks again; once open, the file stays readable until closed.

Safe for many threads and processes: one sqlite3 connection per thread, opened again
after a fork (the pid changed). Writers queue on ``index.lock`` (``flock``) before they
begin: SQLite's own busy handler sleeps a millisecond or more between tries, which the
many short transactions of a pipeline (a control plane and sandboxes writing at once)
would spend most of their time in; a kernel lock hands over at once.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from faasbox.errors import (
    BucketNotEmptyError,
    BucketNotFoundError,
    InvalidParameterError,
    ObjectNotFoundError,
    PreconditionFailedError,
)
from faasbox.stores import feed
from faasbox.stores.listing import list_keys
from faasbox.stores.objects import (
    COPY,
    DELETE,
    MAX_KEYS,
    PUT,
    Change,
    HashingReader,
    Listing,
    ObjectInfo,
    ObjectReader,
    ObjectStore,
    PutItem,
    Range,
    check_distinct_keys,
    clean_etag,
    resolve_range,
    validate_bucket_name,
    validate_content_type,
    validate_key,
    validate_listing,
    validate_metadata,
)
from faasbox.stores.readers import BytesReader, FileReader, read_upto

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    content_type TEXT NOT NULL,
    metadata TEXT NOT NULL,
    last_modified REAL NOT NULL,
    data BLOB,
    PRIMARY KEY (bucket, key)
);
"""

_TMP = ".tmp"
#: Objects up to this size live in the index row (``blob`` is then "").
INLINE_MAX_BYTES = 64 * 1024
_INLINE = ""
#: Reads retried when their blob vanishes under them (each retry follows an overwrite).
_READ_ATTEMPTS = 100
#: Unreferenced blobs younger than this may be a put in flight elsewhere: kept.
GRACE_S = 600.0


def _metadata_json(metadata: dict[str, str]) -> str:
    return json.dumps(metadata) if metadata else "{}"  # most objects have none


class FolderStore(ObjectStore):
    """Objects in a local folder, indexed by sqlite3 (see the module docstring).

    ``fsync`` flushes each blob to disk before its commit (survives power loss, not
    only process death). ``sweep`` removes orphan blobs when opening (leave it on in
    the control plane; code that opens the store often may turn it off).
    """

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = False,
                 sweep: bool = True, grace_s: float = GRACE_S) -> None:
        self.root = Path(root).resolve()
        self.fsync = fsync
        self._tmp = self.root / _TMP
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._db_path = str(self.root / "index.db")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[tuple[int, sqlite3.Connection]] = []
        self._lock_path = self.root / "index.lock"
        self._lock_fd: tuple[int, int] | None = None  # (pid, fd)
        self._writing = threading.Lock()  # one writer per process holds the file lock
        self._closed = False
        conn = self._conn()
        conn.executescript(_SCHEMA)
        feed.create(conn)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(objects)")}
        if "data" not in columns:  # an index made before inline objects
            conn.execute("ALTER TABLE objects ADD COLUMN data BLOB")
        if sweep:
            self.sweep(grace_s)

    # -- connections and transactions ---------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        local = self._local
        pid = os.getpid()
        if getattr(local, "pid", None) != pid:  # new thread, or a forked child
            conn = sqlite3.connect(self._db_path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            local.conn, local.pid = conn, pid
            with self._lock:
                self._conns.append((pid, conn))
        conn_: sqlite3.Connection = local.conn
        return conn_

    def _lock_file(self) -> int:
        pid = os.getpid()
        if self._lock_fd is None or self._lock_fd[0] != pid:  # a forked child: its own fd
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._lock_fd = (pid, fd)
        return self._lock_fd[1]

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        with self._writing:
            fd = self._lock_file()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pid = os.getpid()
            for owner, conn in self._conns:
                if owner == pid:  # a parent's connections are not ours to close
                    conn.close()
            self._conns.clear()
            if self._lock_fd is not None and self._lock_fd[0] == pid:
                os.close(self._lock_fd[1])
            self._lock_fd = None

    # -- paths ----------------------------------------------------------------------

    def _blob_path(self, bucket: str, blob: str) -> Path:
        return self.root / bucket / blob[:2] / blob

    def _require_bucket(self, conn: sqlite3.Connection, bucket: str) -> None:
        if conn.execute("SELECT 1 FROM buckets WHERE name = ?", (bucket,)).fetchone() is None:
            raise BucketNotFoundError(bucket)

    # -- buckets ----------------------------------------------------------------------

    def create_bucket(self, bucket: str) -> bool:
        validate_bucket_name(bucket)
        (self.root / bucket).mkdir(exist_ok=True)  # before the row: a crash leaves an empty dir
        with self._write() as conn:
            done = conn.execute("INSERT OR IGNORE INTO buckets (name, created_at) VALUES (?, ?)",
                                (bucket, time.time()))
            return done.rowcount == 1

    def delete_bucket(self, bucket: str) -> None:
        validate_bucket_name(bucket)
        with self._write() as conn:
            self._require_bucket(conn, bucket)
            if conn.execute("SELECT 1 FROM objects WHERE bucket = ? LIMIT 1",
                            (bucket,)).fetchone():
                raise BucketNotEmptyError(f"bucket {bucket} is not empty: delete its objects "
                                          "first")
            conn.execute("DELETE FROM buckets WHERE name = ?", (bucket,))
        shutil.rmtree(self.root / bucket, ignore_errors=True)  # only orphans are left there

    def list_buckets(self) -> list[dict[str, Any]]:
        rows = self._conn().execute("SELECT name, created_at FROM buckets ORDER BY name")
        return [{"name": name, "created_at": created} for name, created in rows]

    def bucket_exists(self, bucket: str) -> bool:
        validate_bucket_name(bucket)
        row = self._conn().execute("SELECT 1 FROM buckets WHERE name = ?", (bucket,)).fetchone()
        return row is not None

    # -- objects ----------------------------------------------------------------------

    def put(
        self,
        bucket: str,
        key: str,
        body: bytes | BinaryIO,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> ObjectInfo:
        validate_bucket_name(bucket)
        validate_key(key)
        meta = validate_metadata(metadata)
        ctype = validate_content_type(content_type)
        if if_none_match not in (None, "*"):
            raise InvalidParameterError("if_none_match supports only '*' (no object there)")
        want = clean_etag(if_match) if if_match is not None else None
        reader = HashingReader(body)
        chunks = reader.chunks()
        head = read_upto(chunks, INLINE_MAX_BYTES + 1)
        if len(head) <= INLINE_MAX_BYTES:  # small: the index row holds it, one transaction
            info = ObjectInfo(bucket, key, reader.size, reader.md5.hexdigest(), ctype,
                              time.time(), meta)
            old = self._commit(info, _INLINE, PUT, want, if_none_match, data=head)
            self._unlink(bucket, old)
            return info
        # Fail fast, before reading a large body; checked again in the transaction.
        conn = self._conn()
        self._require_bucket(conn, bucket)
        current = self._row(conn, bucket, key)
        _check_preconditions(bucket, key, current, want, if_none_match)

        blob = uuid.uuid4().hex
        tmp = self._tmp / blob
        final = self._blob_path(bucket, blob)
        try:
            with open(tmp, "wb") as sink:
                sink.write(head)
                for chunk in chunks:
                    sink.write(chunk)
                if self.fsync:
                    sink.flush()
                    os.fsync(sink.fileno())
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(tmp, final)
            info = ObjectInfo(bucket, key, reader.size, reader.md5.hexdigest(), ctype,
                              time.time(), meta)
            old = self._commit(info, blob, PUT, want, if_none_match)
        except BaseException:
            tmp.unlink(missing_ok=True)
            final.unlink(missing_ok=True)
            raise
        self._unlink(bucket, old)
        return info

    atomic_batches = True

    def put_many(self, bucket: str, items: builtins.list[PutItem], *,
                 if_none_match: str | None = None) -> builtins.list[ObjectInfo]:
        """All of ``items`` in one transaction (small ones inline, larger ones written
        as blobs first): all are written, or none (PreconditionFailedError names the
        first key that is already there with ``if_none_match="*"``)."""
        validate_bucket_name(bucket)
        if if_none_match not in (None, "*"):
            raise InvalidParameterError("if_none_match supports only '*' (no object there)")
        check_distinct_keys(items)
        staged: builtins.list[tuple[ObjectInfo, str, bytes | None]] = []
        try:
            for item in items:
                validate_key(item.key)
                if not isinstance(item.body, bytes | bytearray):
                    raise InvalidParameterError(f"put_many: the body of {item.key!r} is not "
                                                "bytes")
                body = bytes(item.body)
                info = ObjectInfo(bucket, item.key, len(body),
                                  hashlib.md5(body, usedforsecurity=False).hexdigest(),
                                  validate_content_type(item.content_type), time.time(),
                                  validate_metadata(item.metadata))
                if len(body) <= INLINE_MAX_BYTES:
                    staged.append((info, _INLINE, body))
                    continue
                blob = uuid.uuid4().hex
                staged.append((info, blob, None))
                self._write_blob(bucket, blob, body)
            with self._write() as conn:
                replaced = self._commit_many(conn, bucket, staged, if_none_match)
        except BaseException:
            for _, blob, _ in staged:
                self._unlink(bucket, blob)
            raise
        for old in replaced:
            self._unlink(bucket, old)
        return [info for info, _, _ in staged]

    def _commit_many(self, conn: sqlite3.Connection, bucket: str,
                     staged: builtins.list[tuple[ObjectInfo, str, bytes | None]],
                     if_none_match: str | None) -> builtins.list[str]:
        """``put_many``'s commit: one lookup of the keys there already, then the rows
        and their change-feed entries in bulk. Returns the blobs replaced."""
        if conn.execute("SELECT 1 FROM buckets WHERE name = ?", (bucket,)).fetchone() is None:
            raise BucketNotFoundError(bucket)
        keys = [info.key for info, _, _ in staged]
        present: dict[str, str] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            present.update(conn.execute(
                f"SELECT key, blob FROM objects WHERE bucket = ? AND key IN "
                f"({', '.join('?' * len(chunk))})", (bucket, *chunk)).fetchall())
        if if_none_match == "*":
            taken = next((key for key in keys if key in present), None)
            if taken is not None:
                raise PreconditionFailedError(f"{bucket}/{taken} exists (if_none_match='*')")
        conn.executemany(
            "INSERT OR REPLACE INTO objects (bucket, key, blob, size, etag, content_type, "
            "metadata, last_modified, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(bucket, info.key, blob, info.size, info.etag, info.content_type,
              _metadata_json(info.metadata), info.last_modified, data)
             for info, blob, data in staged])
        feed.record_many(conn, [(bucket, info.key, PUT, info.size, info.etag,
                                 info.last_modified) for info, _, _ in staged])
        return [present[key] for key in keys if key in present]

    def _write_blob(self, bucket: str, blob: str, body: bytes) -> None:
        tmp = self._tmp / blob
        final = self._blob_path(bucket, blob)
        try:
            with open(tmp, "wb") as sink:
                sink.write(body)
                if self.fsync:
                    sink.flush()
                    os.fsync(sink.fileno())
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def _unlink(self, bucket: str, blob: str | None) -> None:
        """Remove a blob file no index row points at any more (inline ones have none)."""
        if blob:
            self._blob_path(bucket, blob).unlink(missing_ok=True)

    def _commit(self, info: ObjectInfo, blob: str, event: str, if_match: str | None = None,
                if_none_match: str | None = None, source: tuple[str, str, str] | None = None,
                data: bytes | None = None) -> str | None:
        """The commit point of a put or copy: index row (with ``data`` for an inline
        object) and change-feed row in one transaction. Returns the blob it replaced.
        With ``source`` (bucket, key, blob) raises _SourceChanged if the source object
        moved on meanwhile."""
        with self._write() as conn:
            return self._commit_row(conn, info, blob, event, if_match, if_none_match, data,
                                    source)

    def _commit_row(self, conn: sqlite3.Connection, info: ObjectInfo, blob: str, event: str,
                    if_match: str | None, if_none_match: str | None, data: bytes | None,
                    source: tuple[str, str, str] | None = None) -> str | None:
        """``_commit``'s statements, inside the caller's transaction."""
        current = conn.execute(
            "SELECT o.blob, o.size, o.etag, b.name FROM buckets b LEFT JOIN objects o "
            "ON o.bucket = b.name AND o.key = ? WHERE b.name = ?",
            (info.key, info.bucket)).fetchone()
        if current is None:
            raise BucketNotFoundError(info.bucket)
        if current[0] is None:  # the bucket is there, the key is not
            current = None
        if source is not None:
            row = self._row(conn, source[0], source[1])
            if row is None or row[0] != source[2]:
                raise _SourceChanged
            if source[2] == _INLINE:
                data = conn.execute("SELECT data FROM objects WHERE bucket = ? AND key = ?",
                                    source[:2]).fetchone()[0]
        _check_preconditions(info.bucket, info.key, current, if_match, if_none_match)
        conn.execute(
            "INSERT OR REPLACE INTO objects (bucket, key, blob, size, etag, content_type, "
            "metadata, last_modified, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (info.bucket, info.key, blob, info.size, info.etag, info.content_type,
             _metadata_json(info.metadata), info.last_modified, data),
        )
        feed.record(conn, info.bucket, info.key, event, info.size, info.etag,
                    info.last_modified)
        return current[0] if current is not None else None

    @staticmethod
    def _row(conn: sqlite3.Connection, bucket: str, key: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = conn.execute(
            "SELECT blob, size, etag, content_type, metadata, last_modified FROM objects "
            "WHERE bucket = ? AND key = ?", (bucket, key)).fetchone()
        return row

    def _lookup(self, bucket: str, key: str, *, with_data: bool = False
                ) -> tuple[str, ObjectInfo, bytes | None]:
        """Blob name, info and (``with_data``, inline objects) the content."""
        validate_bucket_name(bucket)
        validate_key(key)
        conn = self._conn()
        row = conn.execute(
            "SELECT blob, size, etag, content_type, metadata, last_modified"
            + (", data" if with_data else "") + " FROM objects WHERE bucket = ? AND key = ?",
            (bucket, key)).fetchone()
        if row is None:
            self._require_bucket(conn, bucket)
            raise ObjectNotFoundError(f"{bucket}/{key}")
        blob, size, etag, ctype, meta, modified = row[:6]
        info = ObjectInfo(bucket, key, size, etag, ctype, modified,
                          {} if meta == "{}" else json.loads(meta))
        return blob, info, row[6] if with_data else None

    def head(self, bucket: str, key: str) -> ObjectInfo:
        return self._lookup(bucket, key)[1]

    def get(self, bucket: str, key: str, *, byte_range: Range | None = None
            ) -> tuple[ObjectInfo, bytes]:
        _, info, data = self._lookup(bucket, key, with_data=True)
        if data is not None and byte_range is None:  # the common case: one query, no file
            return info, bytes(data)
        with self.open(bucket, key, byte_range=byte_range) as reader:
            return reader.info, reader.read()

    def open(self, bucket: str, key: str, *, byte_range: Range | None = None) -> ObjectReader:
        for _ in range(_READ_ATTEMPTS):
            blob, info, data = self._lookup(bucket, key, with_data=True)
            offset, length = (0, info.size) if byte_range is None else resolve_range(
                byte_range, info.size)
            if data is not None:
                return BytesReader(info, bytes(data), offset, length)
            try:
                handle = open(self._blob_path(bucket, blob), "rb")  # noqa: SIM115 - reader owns it
            except FileNotFoundError:
                continue  # overwritten or deleted since the lookup: look again
            if offset:
                handle.seek(offset)
            return FileReader(info, handle, offset, length)
        raise ObjectNotFoundError(f"{bucket}/{key}")

    def delete(self, bucket: str, key: str) -> bool:
        validate_bucket_name(bucket)
        validate_key(key)
        with self._write() as conn:
            row = self._row(conn, bucket, key)
            if row is None:
                self._require_bucket(conn, bucket)
                return False
            conn.execute("DELETE FROM objects WHERE bucket = ? AND key = ?", (bucket, key))
            feed.record(conn, bucket, key, DELETE, 0, "", time.time())
        self._unlink(bucket, row[0])
        return True

    def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str
             ) -> ObjectInfo:
        validate_bucket_name(dst_bucket)
        validate_key(dst_key)
        for _ in range(_READ_ATTEMPTS):
            src_blob, src, _ = self._lookup(src_bucket, src_key)
            self._require_bucket(self._conn(), dst_bucket)
            blob = uuid.uuid4().hex if src_blob else _INLINE  # inline: data copied in commit
            final = self._blob_path(dst_bucket, blob)
            if src_blob:
                final.parent.mkdir(parents=True, exist_ok=True)
                try:  # blobs are immutable: a hard link is a copy
                    os.link(self._blob_path(src_bucket, src_blob), final)
                except FileNotFoundError:
                    continue  # the source was overwritten meanwhile
            info = ObjectInfo(dst_bucket, dst_key, src.size, src.etag, src.content_type,
                              time.time(), src.metadata)
            try:
                old = self._commit(info, blob, COPY, source=(src_bucket, src_key, src_blob))
            except _SourceChanged:
                self._unlink(dst_bucket, blob)
                continue
            except BaseException:
                self._unlink(dst_bucket, blob)
                raise
            self._unlink(dst_bucket, old)
            return info
        raise ObjectNotFoundError(f"{src_bucket}/{src_key}")

    def list(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str | None = None,
        max_keys: int = MAX_KEYS,
        continuation_token: str | None = None,
    ) -> Listing:
        validate_bucket_name(bucket)
        validate_listing(prefix, delimiter, max_keys)
        conn = self._conn()
        self._require_bucket(conn, bucket)

        def fetch(start: str, inclusive: bool, upper: str | None, limit: int
                  ) -> builtins.list[tuple[Any, ...]]:
            sql = ("SELECT key, size, etag, last_modified FROM objects WHERE bucket = ? AND key "
                   + (">= ?" if inclusive else "> ?"))
            args: builtins.list[Any] = [bucket, start]
            if upper is not None:
                sql += " AND key < ?"
                args.append(upper)
            rows: builtins.list[tuple[Any, ...]] = conn.execute(
                sql + " ORDER BY key LIMIT ?", (*args, limit)).fetchall()
            return rows

        return list_keys(fetch, prefix, delimiter, max_keys, continuation_token)

    # -- change feed --------------------------------------------------------------------

    def changes(self, after_seq: int, limit: int = 1000) -> builtins.list[Change]:
        return feed.changes(self._conn(), after_seq, limit)

    def last_seq(self) -> int:
        return feed.last_seq(self._conn())

    def trim_changes(self, upto_seq: int) -> None:
        with self._write() as conn:
            feed.trim(conn, upto_seq)

    # -- recovery -----------------------------------------------------------------------

    def sweep(self, grace_s: float = GRACE_S) -> int:
        """Remove temp files, unreferenced blobs and folders of deleted buckets that are
        older than ``grace_s`` (younger ones may be a put in flight). Returns how many
        files went. Safe while other processes use the store."""
        cutoff = time.time() - grace_s
        removed = 0
        conn = self._conn()
        buckets = {name for (name,) in conn.execute("SELECT name FROM buckets")}
        for entry in os.scandir(self.root):
            if not entry.is_dir(follow_symlinks=False):
                continue
            if entry.name == _TMP:
                removed += _remove_old_files(Path(entry.path), set(), cutoff)
            elif entry.name in buckets:
                live = {blob for (blob,) in conn.execute(
                    "SELECT blob FROM objects WHERE bucket = ?", (entry.name,))}
                for fan in os.scandir(entry.path):
                    if fan.is_dir(follow_symlinks=False):
                        removed += _remove_old_files(Path(fan.path), live, cutoff)
            elif not entry.name.startswith(".") and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry.path, ignore_errors=True)  # a deleted bucket's leftovers
        return removed


class _SourceChanged(Exception):
    """A copy's source was overwritten between reading and committing: try again."""


def _check_preconditions(bucket: str, key: str, current: tuple[Any, ...] | None,
                         if_match: str | None, if_none_match: str | None) -> None:
    if if_none_match == "*" and current is not None:
        raise PreconditionFailedError(f"{bucket}/{key} exists (if_none_match='*')")
    if if_match is not None and (current is None or current[2] != if_match):
        have = "no object" if current is None else f"etag {current[2]}"
        raise PreconditionFailedError(
            f"{bucket}/{key} has {have}, not etag {if_match} (if_match)")


def _remove_old_files(folder: Path, keep: set[str], cutoff: float) -> int:
    removed = 0
    for item in os.scandir(folder):
        if item.name in keep or not item.is_file(follow_symlinks=False):
            continue
        try:
            if item.stat().st_mtime < cutoff:
                os.unlink(item.path)
                removed += 1
        except FileNotFoundError:
            pass
    return removed

