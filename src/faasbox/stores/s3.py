"""The S3 adapter of :class:`~faasbox.stores.objects.ObjectStore`: any S3-compatible
service through boto3 (``pip install 'faasbox[s3]'``; imported only when used).

Buckets are named ``bucket_prefix + name`` in the service. Credentials come from the
usual AWS sources (``AWS_ACCESS_KEY_ID``..., profiles, instance roles).

The change feed (:mod:`faasbox.stores.feed`) lives in a journal of ours (sqlite3,
``<journal_dir>/journal.db``), because S3 itself offers none we can read back. Each
write records an *intent* row before the S3 call and, once S3 answered, replaces it by
the change-feed row in one transaction. Puts and copies carry a unique
``faasbox-put-id`` in the object's metadata (hidden from callers). When the store
opens, intents left by a crash are resolved with a HEAD: the object there with our put
id (or, for a delete, no object) means the write happened, so its change is recorded;
otherwise the intent is dropped.
One process at a time owns a journal.

Remaining gap: writes made to the buckets by other S3 clients are not in the feed.
Conditional puts rely on the service's own ``If-Match`` / ``If-None-Match``.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from faasbox.errors import (
    BucketNotEmptyError,
    BucketNotFoundError,
    ConflictError,
    FaasboxError,
    InvalidParameterError,
    InvalidRangeError,
    ObjectNotFoundError,
    PreconditionFailedError,
    ServiceUnavailableError,
)
from faasbox.stores import feed
from faasbox.stores.objects import (
    COPY,
    DEFAULT_CONTENT_TYPE,
    DELETE,
    MAX_KEYS,
    PUT,
    Change,
    HashingReader,
    Listing,
    ObjectInfo,
    ObjectReader,
    ObjectStore,
    ObjectSummary,
    Range,
    check_range,
    clean_etag,
    validate_bucket_name,
    validate_content_type,
    validate_key,
    validate_listing,
    validate_metadata,
)

PUT_ID = "faasbox-put-id"
#: Bodies up to this size are spooled in memory before the upload, larger ones on disk.
SPOOL_BYTES = 8 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS intents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    event TEXT NOT NULL,
    put_id TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


def _boto3() -> Any:
    try:
        import boto3
        import botocore.config
    except ImportError as exc:
        raise ServiceUnavailableError(
            "the s3 object store needs boto3: pip install 'faasbox[s3]'"
        ) from exc
    return boto3, botocore.config


class S3Store(ObjectStore):
    """Objects in an S3-compatible service; see the module docstring."""

    def __init__(self, journal_dir: str | Path, *, endpoint_url: str | None = None,
                 region: str = "us-east-1", bucket_prefix: str = "",
                 credentials: tuple[str, str, str | None] | None = None) -> None:
        boto3, config = _boto3()
        self.prefix = bucket_prefix
        self.region = region
        key_id, secret, token = credentials or (None, None, None)
        self._s3 = boto3.client(
            "s3", endpoint_url=endpoint_url or None, region_name=region,
            aws_access_key_id=key_id, aws_secret_access_key=secret, aws_session_token=token,
            config=config.Config(s3={"addressing_style": "path"} if endpoint_url else {},
                                 retries={"mode": "standard"}),
        )
        journal = Path(journal_dir)
        journal.mkdir(parents=True, exist_ok=True)
        self._db_path = str(journal / "journal.db")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self._closed = False
        self._conn().executescript(_SCHEMA)
        feed.create(self._conn())
        self.resolve_intents()

    # -- journal --------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._db_path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _intend(self, bucket: str, key: str, event: str, put_id: str) -> int:
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO intents (bucket, key, event, put_id, created_at) "
                "VALUES (?, ?, ?, ?, ?)", (bucket, key, event, put_id, time.time()))
            return int(cur.lastrowid or 0)

    def _confirm(self, intent: int, bucket: str, key: str, event: str, size: int = 0,
                 etag: str = "") -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM intents WHERE id = ?", (intent,))
            feed.record(conn, bucket, key, event, size, etag, time.time())

    def _drop(self, intent: int) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM intents WHERE id = ?", (intent,))

    def resolve_intents(self) -> int:
        """Settle intents a crash left behind (see the module docstring); returns how
        many turned out to have happened."""
        happened = 0
        rows = self._conn().execute(
            "SELECT id, bucket, key, event, put_id FROM intents ORDER BY id").fetchall()
        for intent, bucket, key, event, put_id in rows:
            try:
                head = self._s3.head_object(Bucket=self._name(bucket), Key=key)
            except self._s3.exceptions.ClientError as exc:
                if _status(exc) != 404:
                    raise self._error(exc, bucket, key) from exc
                head = None
            if event == DELETE and head is None:
                self._confirm(intent, bucket, key, event)
                happened += 1
            elif event != DELETE and head is not None and head.get("Metadata", {}).get(
                    PUT_ID) == put_id:
                self._confirm(intent, bucket, key, event, head["ContentLength"],
                              clean_etag(head["ETag"]))
                happened += 1
            else:
                self._drop(intent)
        return happened

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._s3.close()

    # -- errors -----------------------------------------------------------------------

    def _name(self, bucket: str) -> str:
        validate_bucket_name(bucket)
        full = self.prefix + bucket
        if len(full) > 63:
            raise InvalidParameterError(
                f"bucket name {bucket!r} with the prefix {self.prefix!r} is over 63 characters"
            )
        return full

    @contextlib.contextmanager
    def _calls(self, bucket: str, key: str | None = None) -> Iterator[None]:
        """Translate boto errors into faasbox errors."""
        import botocore.exceptions as bex

        try:
            yield
        except bex.ClientError as exc:
            raise self._error(exc, bucket, key) from exc
        except bex.BotoCoreError as exc:
            raise ServiceUnavailableError(f"object store unreachable: {exc}") from exc

    def _error(self, exc: Any, bucket: str, key: str | None) -> FaasboxError:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = _status(exc)
        if code == "NoSuchBucket":
            return BucketNotFoundError(bucket)
        if code in ("NoSuchKey", "404") or status == 404:
            if key is not None and self._bucket_exists(bucket):
                return ObjectNotFoundError(f"{bucket}/{key}")
            return BucketNotFoundError(bucket)
        if code == "PreconditionFailed" or status == 412:
            return PreconditionFailedError(
                f"{bucket}/{key}: the condition of the write does not hold")
        if code == "InvalidRange" or status == 416:
            return InvalidRangeError(f"{bucket}/{key}: the range is not satisfiable")
        if code == "BucketNotEmpty":
            return BucketNotEmptyError(f"bucket {bucket} is not empty: delete its objects first")
        if code == "BucketAlreadyExists":
            return ConflictError(f"bucket name {bucket} is taken by another account")
        if code in ("InvalidArgument", "InvalidToken", "InvalidRequest"):
            return InvalidParameterError(f"object store refused the request: {exc}")
        return FaasboxError(f"object store error {code or status}: {exc}")

    def _bucket_exists(self, bucket: str) -> bool:
        try:
            self._s3.head_bucket(Bucket=self._name(bucket))
        except self._s3.exceptions.ClientError as exc:
            if _status(exc) in (404, 403):
                return False
            raise
        return True

    # -- buckets ----------------------------------------------------------------------

    def create_bucket(self, bucket: str) -> bool:
        name = self._name(bucket)
        if self._bucket_exists(bucket):
            return False
        args: dict[str, Any] = {"Bucket": name}
        if self.region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        with self._calls(bucket):
            self._s3.create_bucket(**args)
        return True

    def delete_bucket(self, bucket: str) -> None:
        name = self._name(bucket)
        with self._calls(bucket):
            self._s3.delete_bucket(Bucket=name)

    def list_buckets(self) -> list[dict[str, Any]]:
        with self._calls("-"):
            found = self._s3.list_buckets().get("Buckets", [])
        result = []
        for item in found:
            name = item["Name"]
            if name.startswith(self.prefix):
                result.append({"name": name[len(self.prefix):],
                               "created_at": item["CreationDate"].timestamp()})
        return sorted(result, key=lambda b: b["name"])

    def bucket_exists(self, bucket: str) -> bool:
        with self._calls(bucket):
            return self._bucket_exists(bucket)

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
        name = self._name(bucket)
        validate_key(key)
        meta = validate_metadata(metadata)
        ctype = validate_content_type(content_type)
        if if_none_match not in (None, "*"):
            raise InvalidParameterError("if_none_match supports only '*' (no object there)")
        reader = HashingReader(body)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            for chunk in reader.chunks():
                spool.write(chunk)
            spool.seek(0)
            etag = reader.md5.hexdigest()
            put_id = uuid.uuid4().hex
            args: dict[str, Any] = {
                "Bucket": name, "Key": key, "Body": spool, "ContentType": ctype,
                "ContentLength": reader.size,
                "ContentMD5": base64.b64encode(reader.md5.digest()).decode(),
                "Metadata": {**meta, PUT_ID: put_id},
            }
            if if_match is not None:
                args["IfMatch"] = f'"{clean_etag(if_match)}"'
            if if_none_match is not None:
                args["IfNoneMatch"] = "*"
            self._write_through(bucket, key, PUT, put_id, reader.size, etag,
                                lambda: self._s3.put_object(**args))
        return ObjectInfo(bucket, key, reader.size, etag, ctype, time.time(), meta)

    def _write_through(self, bucket: str, key: str, event: str, put_id: str, size: int,
                       etag: str, call: Any) -> Any:
        """``call`` S3 between an intent and its confirmation; a refused call drops the
        intent, an unknown outcome (connection lost) is settled by a HEAD."""
        import botocore.exceptions as bex

        intent = self._intend(bucket, key, event, put_id)
        try:
            with self._calls(bucket, key):
                answer = call()
        except FaasboxError as exc:
            if isinstance(exc.__cause__, bex.ClientError):
                self._drop(intent)
            else:
                with contextlib.suppress(FaasboxError, bex.BotoCoreError, sqlite3.Error):
                    self.resolve_intents()
            raise
        self._confirm(intent, bucket, key, event, size, etag)
        return answer

    def open(self, bucket: str, key: str, *, byte_range: Range | None = None) -> ObjectReader:
        name = self._name(bucket)
        validate_key(key)
        args: dict[str, Any] = {"Bucket": name, "Key": key}
        if byte_range is not None:
            start, end = check_range(byte_range)
            args["Range"] = f"bytes={'' if start is None else start}-{'' if end is None else end}"
        with self._calls(bucket, key):
            answer = self._s3.get_object(**args)
        length = int(answer["ContentLength"])
        offset, size = 0, length
        content_range = answer.get("ContentRange")
        if byte_range is not None and content_range:  # "bytes a-b/size"
            span, _, total = content_range.partition(" ")[2].partition("/")
            offset, size = int(span.partition("-")[0]), int(total)
        info = _info(bucket, key, answer, size)
        return _BodyReader(info, answer["Body"], offset, length)

    def head(self, bucket: str, key: str) -> ObjectInfo:
        name = self._name(bucket)
        validate_key(key)
        with self._calls(bucket, key):
            answer = self._s3.head_object(Bucket=name, Key=key)
        return _info(bucket, key, answer, int(answer["ContentLength"]))

    def delete(self, bucket: str, key: str) -> bool:
        name = self._name(bucket)
        try:
            self.head(bucket, key)
        except ObjectNotFoundError:
            return False
        self._write_through(bucket, key, DELETE, "", 0, "",
                            lambda: self._s3.delete_object(Bucket=name, Key=key))
        return True

    def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str
             ) -> ObjectInfo:
        dst_name = self._name(dst_bucket)
        validate_key(dst_key)
        if not self.bucket_exists(dst_bucket):
            raise BucketNotFoundError(dst_bucket)
        src = self.head(src_bucket, src_key)
        put_id = uuid.uuid4().hex
        args = {
            "Bucket": dst_name, "Key": dst_key,
            "CopySource": {"Bucket": self._name(src_bucket), "Key": src_key},
            "CopySourceIfMatch": f'"{src.etag}"', "MetadataDirective": "REPLACE",
            "ContentType": src.content_type, "Metadata": {**src.metadata, PUT_ID: put_id},
        }
        answer = self._write_through(dst_bucket, dst_key, COPY, put_id, src.size, src.etag,
                                     lambda: self._s3.copy_object(**args))
        etag = clean_etag(answer.get("CopyObjectResult", {}).get("ETag", src.etag))
        return ObjectInfo(dst_bucket, dst_key, src.size, etag, src.content_type, time.time(),
                          src.metadata)

    def list(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str | None = None,
        max_keys: int = MAX_KEYS,
        continuation_token: str | None = None,
    ) -> Listing:
        name = self._name(bucket)
        validate_listing(prefix, delimiter, max_keys)
        args: dict[str, Any] = {"Bucket": name, "Prefix": prefix, "MaxKeys": max_keys}
        if delimiter:
            args["Delimiter"] = delimiter
        if continuation_token:
            args["ContinuationToken"] = continuation_token
        with self._calls(bucket):
            answer = self._s3.list_objects_v2(**args)
        contents = [
            ObjectSummary(item["Key"], int(item["Size"]), clean_etag(item["ETag"]),
                          item["LastModified"].timestamp())
            for item in answer.get("Contents", [])
        ]
        prefixes = [item["Prefix"] for item in answer.get("CommonPrefixes", [])]
        truncated = bool(answer.get("IsTruncated"))
        return Listing(contents, prefixes, truncated,
                       answer.get("NextContinuationToken") if truncated else None)

    # -- change feed --------------------------------------------------------------------

    def changes(self, after_seq: int, limit: int = 1000) -> builtins.list[Change]:
        return feed.changes(self._conn(), after_seq, limit)

    def last_seq(self) -> int:
        return feed.last_seq(self._conn())

    def trim_changes(self, upto_seq: int) -> None:
        with self._write() as conn:
            feed.trim(conn, upto_seq)


class _BodyReader(ObjectReader):
    def __init__(self, info: ObjectInfo, body: Any, offset: int, length: int) -> None:
        self.info = info
        self.offset = offset
        self.length = length
        self._body = body

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._body.read() if size is None or size < 0 else self._body.read(size)
        return data

    def close(self) -> None:
        self._body.close()


def _info(bucket: str, key: str, answer: dict[str, Any], size: int) -> ObjectInfo:
    meta = {k.lower(): v for k, v in (answer.get("Metadata") or {}).items()
            if k.lower() != PUT_ID}
    return ObjectInfo(bucket, key, size, clean_etag(answer.get("ETag", "")),
                      answer.get("ContentType") or DEFAULT_CONTENT_TYPE,
                      answer["LastModified"].timestamp(), meta)


def _status(exc: Any) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
