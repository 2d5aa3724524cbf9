"""One contract for every ObjectStore adapter: the folder store on a temporary folder
and the S3 store against a real moto server subprocess (a missing moto is a failure)."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from faasbox.errors import (
    BucketNotEmptyError,
    BucketNotFoundError,
    InvalidParameterError,
    InvalidRangeError,
    ObjectNotFoundError,
    PreconditionFailedError,
)
from faasbox.stores.folder import FolderStore
from faasbox.stores.objects import (
    COPY,
    DELETE,
    PUT,
    ObjectStore,
    PutItem,
    parse_range,
    resolve_range,
    validate_bucket_name,
)
from faasbox.stores.s3 import PUT_ID, S3Store

_NAMES = itertools.count()


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """A real S3 API: ``moto_server`` on a free loopback port, stopped after the module."""
    script = Path(sys.executable).with_name("moto_server")
    assert script.exists(), "moto_server is missing: pip install 'moto[server]'"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([str(script), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, "moto_server exited at start"
            try:
                httpx.get(url + "/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "moto_server did not answer in 20 s"
                time.sleep(0.05)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("AWS_ACCESS_KEY_ID", "testing")
            env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            env.delenv("AWS_PROFILE", raising=False)
            yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(params=["folder", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    made: ObjectStore
    if request.param == "folder":
        made = FolderStore(tmp_path / "objects")
    else:
        url = request.getfixturevalue("moto_url")
        made = S3Store(tmp_path / "journal", endpoint_url=url,
                       bucket_prefix=f"c{next(_NAMES)}-{os.getpid()}-")
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def bucket(store: ObjectStore) -> str:
    assert store.create_bucket("docs") is True
    return "docs"


def test_buckets_are_created_idempotently_listed_and_deleted_when_empty(
        store: ObjectStore) -> None:
    assert store.create_bucket("alpha") is True
    assert store.create_bucket("alpha") is False
    store.create_bucket("beta.1")
    assert [b["name"] for b in store.list_buckets()] == ["alpha", "beta.1"]
    assert store.bucket_exists("alpha") and not store.bucket_exists("gamma")
    store.put("alpha", "k", b"x")
    with pytest.raises(BucketNotEmptyError):
        store.delete_bucket("alpha")
    store.delete("alpha", "k")
    store.delete_bucket("alpha")
    assert [b["name"] for b in store.list_buckets()] == ["beta.1"]
    with pytest.raises(BucketNotFoundError, match="Bucket not found: alpha"):
        store.delete_bucket("alpha")


@pytest.mark.parametrize("name", ["ab", "a" * 64, "Upper", "under_score", "-lead", "trail-",
                                  "two..dots", "192.168.1.1", "xn--punycode", "dot.-dash"])
def test_invalid_bucket_names_are_refused_and_nothing_is_created(
        store: ObjectStore, name: str) -> None:
    with pytest.raises(InvalidParameterError, match="invalid bucket name"):
        store.create_bucket(name)
    assert store.list_buckets() == []


def test_put_get_head_round_trip_with_etag_type_and_metadata(
        store: ObjectStore, bucket: str) -> None:
    body = b"hello world"
    info = store.put(bucket, "a/b.txt", body, content_type="text/plain",
                     metadata={"Owner": "ada", "n": "1"})
    assert info.etag == hashlib.md5(body).hexdigest() and info.size == len(body)
    head = store.head(bucket, "a/b.txt")
    assert (head.size, head.etag, head.content_type) == (11, info.etag, "text/plain")
    assert head.metadata == {"owner": "ada", "n": "1"}
    assert abs(head.last_modified - time.time()) < 60
    got, data = store.get(bucket, "a/b.txt")
    assert data == body and got.etag == info.etag and got.metadata == head.metadata
    store.put(bucket, "plain", b"")
    assert store.head(bucket, "plain").content_type == "binary/octet-stream"
    assert store.get(bucket, "plain")[1] == b""


def test_keys_that_are_not_paths_are_distinct_objects(store: ObjectStore, bucket: str) -> None:
    keys = ["a", "a/", "a/b", "a//b", "../x", "./y", "..", "é ü/文字", "sp ace+plus%"]
    for key in keys:
        store.put(bucket, key, key.encode())
    for key in keys:
        assert store.get(bucket, key)[1] == key.encode()
    listed = [item.key for item in store.list(bucket).contents]
    assert listed == sorted(keys, key=lambda k: k.encode())


@pytest.mark.parametrize("key", ["", "x" * 1025, "é" * 513, "nul\x00byte"])
def test_invalid_keys_are_refused(store: ObjectStore, bucket: str, key: str) -> None:
    with pytest.raises(InvalidParameterError, match="invalid object key"):
        store.put(bucket, key, b"x")
    assert store.list(bucket).contents == []


def test_bad_metadata_is_refused_and_nothing_written(store: ObjectStore, bucket: str) -> None:
    for bad in ({"sp ace": "v"}, {"k": "caf\u00e9"}, {"k": "x" * 3000}, {"faasbox-x": "v"}):
        with pytest.raises(InvalidParameterError, match="metadata"):
            store.put(bucket, "k", b"x", metadata=bad)
    with pytest.raises(ObjectNotFoundError):
        store.head(bucket, "k")


def test_streaming_put_and_read_of_a_large_body(store: ObjectStore, bucket: str) -> None:
    blob = os.urandom(3 * 1024 * 1024 + 17)
    info = store.put(bucket, "big.bin", io.BytesIO(blob))
    assert (info.size, info.etag) == (len(blob), hashlib.md5(blob).hexdigest())
    with store.open(bucket, "big.bin") as reader:
        chunks = list(reader)
    assert len(chunks) > 1 and b"".join(chunks) == blob


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 200_000, 1024 * 1024 + 1])
def test_bytes_bodies_of_every_size_round_trip_whole(
    store: ObjectStore, bucket: str, size: int
) -> None:
    """Small objects (which the folder store keeps in its index) and large ones (blob
    files), given as bytes: each comes back exactly, in whole and in ranges, after an
    overwrite and a copy."""
    blob = os.urandom(size)
    info = store.put(bucket, "sized", blob)
    assert (info.size, info.etag) == (size, hashlib.md5(blob).hexdigest())
    assert store.get(bucket, "sized")[1] == blob
    with store.open(bucket, "sized") as reader:
        assert b"".join(reader) == blob
    if size:
        assert store.get(bucket, "sized", byte_range=(size // 2, None))[1] == blob[size // 2:]
    copied = store.copy(bucket, "sized", bucket, "sized-copy")
    assert copied.etag == info.etag and store.get(bucket, "sized-copy")[1] == blob
    store.put(bucket, "sized", b"small now")
    assert store.get(bucket, "sized")[1] == b"small now"
    assert store.get(bucket, "sized-copy")[1] == blob


def test_put_many_writes_each_object_and_announces_each(
    store: ObjectStore, bucket: str
) -> None:
    before = store.last_seq()
    items = [PutItem("many/a", b"a" * 10, "text/plain", {"n": "1"}),
             PutItem("many/b", os.urandom(100_000)), PutItem("many/c", b"")]
    infos = store.put_many(bucket, items)
    assert [i.key for i in infos] == ["many/a", "many/b", "many/c"]
    for item in items:
        info, data = store.get(bucket, item.key)
        assert data == item.body and info.etag == hashlib.md5(item.body).hexdigest()
    assert store.head(bucket, "many/a").metadata == {"n": "1"}
    assert [(c.key, c.event) for c in store.changes(before)] == [
        (k, "ObjectCreated:Put") for k in ("many/a", "many/b", "many/c")]


def test_put_many_with_if_none_match_fails_on_an_existing_key(
    store: ObjectStore, bucket: str
) -> None:
    store.put(bucket, "taken", b"first")
    items = [PutItem("fresh-1", b"1"), PutItem("taken", b"second"), PutItem("fresh-2", b"2")]
    with pytest.raises(PreconditionFailedError, match="taken"):
        store.put_many(bucket, items, if_none_match="*")
    assert store.get(bucket, "taken")[1] == b"first"
    written = {s.key for s in store.list(bucket, prefix="fresh").contents}
    # One commit for all (folder): nothing written; one by one (S3): those before it.
    assert written == (set() if store.atomic_batches else {"fresh-1"})
    with pytest.raises(InvalidParameterError, match="each key may appear once"):
        store.put_many(bucket, [PutItem("dup", b"1"), PutItem("dup", b"2")])
    assert not store.list(bucket, prefix="dup").contents


def test_byte_ranges_as_http_resolves_them(store: ObjectStore, bucket: str) -> None:
    store.put(bucket, "r", b"0123456789")
    assert store.get(bucket, "r", byte_range=(2, 4))[1] == b"234"
    assert store.get(bucket, "r", byte_range=(7, None))[1] == b"789"
    assert store.get(bucket, "r", byte_range=(None, 3))[1] == b"789"
    assert store.get(bucket, "r", byte_range=(8, 100))[1] == b"89"
    with store.open(bucket, "r", byte_range=(3, 5)) as reader:
        assert (reader.offset, reader.length, reader.info.size) == (3, 3, 10)
    with pytest.raises(InvalidRangeError):
        store.get(bucket, "r", byte_range=(10, 12))
    with pytest.raises(InvalidParameterError):
        store.get(bucket, "r", byte_range=(5, 2))


def test_missing_objects_and_buckets_raise_lookups(store: ObjectStore, bucket: str) -> None:
    with pytest.raises(ObjectNotFoundError, match="Object not found: docs/nope"):
        store.head(bucket, "nope")
    with pytest.raises(ObjectNotFoundError):
        store.get(bucket, "nope")
    with pytest.raises(BucketNotFoundError, match="Bucket not found: nobucket"):
        store.get("nobucket", "k")
    with pytest.raises(BucketNotFoundError):
        store.put("nobucket", "k", b"x")
    with pytest.raises(BucketNotFoundError):
        store.list("nobucket")


def test_delete_is_idempotent(store: ObjectStore, bucket: str) -> None:
    store.put(bucket, "k", b"x")
    assert store.delete(bucket, "k") is True
    assert store.delete(bucket, "k") is False
    with pytest.raises(ObjectNotFoundError):
        store.head(bucket, "k")


def test_copy_keeps_content_type_and_metadata(store: ObjectStore, bucket: str) -> None:
    store.create_bucket("other")
    src = store.put(bucket, "src", b"payload", content_type="text/csv", metadata={"a": "1"})
    info = store.copy(bucket, "src", "other", "dst/copy")
    assert info.etag == src.etag
    head = store.head("other", "dst/copy")
    assert (head.content_type, head.metadata, head.size) == ("text/csv", {"a": "1"}, 7)
    store.put(bucket, "src", b"changed")
    assert store.get("other", "dst/copy")[1] == b"payload"
    with pytest.raises(ObjectNotFoundError):
        store.copy(bucket, "missing", "other", "x")


def test_conditional_puts(store: ObjectStore, bucket: str) -> None:
    first = store.put(bucket, "c", b"one", if_none_match="*")
    with pytest.raises(PreconditionFailedError):
        store.put(bucket, "c", b"two", if_none_match="*")
    with pytest.raises(PreconditionFailedError):
        store.put(bucket, "c", b"two", if_match="0" * 32)
    second = store.put(bucket, "c", b"two", if_match=f'"{first.etag}"')
    assert store.get(bucket, "c")[1] == b"two"
    with pytest.raises(PreconditionFailedError):
        store.put(bucket, "c", b"three", if_match=first.etag)
    assert store.head(bucket, "c").etag == second.etag


def test_list_with_prefix_delimiter_and_pages(store: ObjectStore, bucket: str) -> None:
    keys = ["a.txt", "b/1", "b/2", "b/3/x", "c/1", "c/2", "d", "e/f/g"]
    for key in keys:
        store.put(bucket, key, b"x")
    top = store.list(bucket, delimiter="/")
    assert [c.key for c in top.contents] == ["a.txt", "d"]
    assert top.common_prefixes == ["b/", "c/", "e/"]
    assert not top.is_truncated and top.next_continuation_token is None
    under_b = store.list(bucket, prefix="b/", delimiter="/")
    assert [c.key for c in under_b.contents] == ["b/1", "b/2"]
    assert under_b.common_prefixes == ["b/3/"]
    assert [c.key for c in store.list(bucket, prefix="c").contents] == ["c/1", "c/2"]

    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = store.list(bucket, delimiter="/", max_keys=2, continuation_token=token)
        pages += 1
        seen += [c.key for c in page.contents] + page.common_prefixes
        if not page.is_truncated:
            break
        token = page.next_continuation_token
        assert token
    assert pages == 3 and sorted(seen) == ["a.txt", "b/", "c/", "d", "e/"]
    flat = store.list(bucket, max_keys=3)
    assert [c.key for c in flat.contents] == keys[:3] and flat.is_truncated
    rest = store.list(bucket, max_keys=1000, continuation_token=flat.next_continuation_token)
    assert [c.key for c in rest.contents] == keys[3:]
    entry = rest.contents[0]
    assert entry.size == 1 and entry.etag == hashlib.md5(b"x").hexdigest()
    with pytest.raises(InvalidParameterError):
        store.list(bucket, max_keys=0)


def test_change_feed_records_each_write_in_order(store: ObjectStore, bucket: str) -> None:
    start = store.last_seq()
    put = store.put(bucket, "f/1", b"abc")
    store.copy(bucket, "f/1", bucket, "f/2")
    store.delete(bucket, "f/1")
    store.delete(bucket, "f/1")  # nothing there: nothing recorded
    with pytest.raises(PreconditionFailedError):
        store.put(bucket, "f/2", b"x", if_none_match="*")  # refused: nothing recorded
    changes = store.changes(start)
    assert [(c.event, c.key) for c in changes] == [(PUT, "f/1"), (COPY, "f/2"),
                                                  (DELETE, "f/1")]
    assert (changes[0].bucket, changes[0].size, changes[0].etag) == (bucket, 3, put.etag)
    assert [c.seq for c in changes] == sorted(c.seq for c in changes)
    assert store.changes(start, limit=1) == changes[:1]
    assert store.last_seq() == changes[-1].seq
    store.trim_changes(changes[1].seq)
    assert store.changes(start) == changes[2:]
    assert store.last_seq() == changes[-1].seq


def test_concurrent_writers_and_readers_see_whole_objects(
        store: ObjectStore, bucket: str) -> None:
    bodies = [bytes([i]) * (64 * 1024) for i in range(8)]
    etags = {hashlib.md5(b).hexdigest() for b in bodies}
    errors: list[BaseException] = []
    store.put(bucket, "hot", bodies[0])

    def write(i: int) -> None:
        try:
            for _ in range(5):
                store.put(bucket, "hot", bodies[i])
        except BaseException as exc:  # reported below
            errors.append(exc)

    def read() -> None:
        try:
            for _ in range(20):
                info, data = store.get(bucket, "hot")
                assert data in bodies and info.etag in etags
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len([c for c in store.changes(0) if c.key == "hot"]) == 21


# -- folder-specific: crash safety and processes ---------------------------------------


def test_s3_journal_settles_writes_a_crash_left_unconfirmed(moto_url: str,
                                                           tmp_path: Path) -> None:
    """A process that died between its S3 call and the confirmation leaves intents; the
    next S3Store on that journal records the writes that reached S3, and only those."""
    import boto3

    prefix = f"j{next(_NAMES)}-{os.getpid()}-"
    journal = tmp_path / "journal"
    first = S3Store(journal, endpoint_url=moto_url, bucket_prefix=prefix)
    first.create_bucket("docs")
    first.put("docs", "replaced", b"old")
    first.put("docs", "removed", b"gone soon")
    start = first.last_seq()
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    # As S3Store.put / delete do: the intent first, then the S3 call; then the "crash".
    landed = uuid.uuid4().hex
    first._intend("docs", "landed", PUT, landed)
    s3.put_object(Bucket=prefix + "docs", Key="landed", Body=b"made it",
                  Metadata={PUT_ID: landed})
    first._intend("docs", "lost", PUT, uuid.uuid4().hex)  # died before its S3 call
    first._intend("docs", "replaced", PUT, uuid.uuid4().hex)  # same: the old object stays
    first._intend("docs", "removed", DELETE, "")
    s3.delete_object(Bucket=prefix + "docs", Key="removed")
    first.close()  # nothing confirmed

    second = S3Store(journal, endpoint_url=moto_url, bucket_prefix=prefix)
    try:
        changes = second.changes(start)
        assert [(c.event, c.key) for c in changes] == [(PUT, "landed"), (DELETE, "removed")]
        assert (changes[0].size, changes[0].etag) == (
            7, hashlib.md5(b"made it").hexdigest())
        assert second.get("docs", "landed")[0].metadata == {}  # the put id stays hidden
        assert second.resolve_intents() == 0  # settled once: nothing left to settle
    finally:
        second.close()
        s3.close()
    third = S3Store(journal, endpoint_url=moto_url, bucket_prefix=prefix)
    assert third.changes(start) == changes  # reopening records nothing twice
    third.close()


def test_folder_orphan_blobs_are_swept_when_old_and_kept_when_young(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    store = FolderStore(root)
    store.create_bucket("docs")
    store.put("docs", "kept", b"1")
    orphan = root / "docs" / "ab" / ("ab" + "0" * 30)
    orphan.parent.mkdir()
    orphan.write_bytes(b"crashed before commit")
    young = root / ".tmp" / "young"
    young.write_bytes(b"in flight")
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    store.close()
    reopened = FolderStore(root)
    assert not orphan.exists() and young.exists()
    assert reopened.get("docs", "kept")[1] == b"1"
    reopened.close()


def test_folder_store_is_shared_by_processes_and_survives_fork(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "objects")
    store.create_bucket("docs")
    store.put("docs", "parent", b"p")
    pid = os.fork()
    if pid == 0:  # the child writes through the inherited store, then leaves at once
        code = 0
        try:
            store.put("docs", "child", b"c")
            assert store.get("docs", "parent")[1] == b"p"
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get("docs", "child")[1] == b"c"
    assert [c.key for c in store.changes(0)] == ["parent", "child"]
    store.close()


def test_folder_store_imports_only_the_standard_library(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[2] / "src"
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from faasbox.stores.folder import FolderStore;"
        "s = FolderStore(sys.argv[2]); s.create_bucket('docs'); s.put('docs', 'k', b'v');"
        "assert s.get('docs', 'k')[1] == b'v';"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('sqlalchemy', 'fastapi', 'httpx', 'orjson', 'pydantic'));"
        "print(bad)"
    )
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script, str(src),
                           str(tmp_path / "o")], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_deleted_bucket_folder_is_removed(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "objects")
    store.create_bucket("gone")
    store.put("gone", "k", b"x")
    store.delete("gone", "k")
    store.delete_bucket("gone")
    assert not (tmp_path / "objects" / "gone").exists()
    store.close()


# -- helpers of the port ---------------------------------------------------------------


def test_range_parsing_and_resolution() -> None:
    assert parse_range("bytes=0-9") == (0, 9)
    assert parse_range("bytes=5-") == (5, None)
    assert parse_range("bytes=-3") == (None, 3)
    for bad in ("bytes=-", "items=0-1", "bytes=3-1", "bytes=0-1,4-5"):
        with pytest.raises(InvalidParameterError):
            parse_range(bad)
    assert resolve_range((0, None), 10) == (0, 10)
    assert resolve_range((None, 20), 10) == (0, 10)
    with pytest.raises(InvalidRangeError):
        resolve_range((0, 0), 0)
    assert validate_bucket_name("my-bucket.v2") == "my-bucket.v2"


def test_s3_store_takes_its_credentials_explicitly(moto_url: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """In a sandbox AWS_* hold the function's faasbox role: the S3 adapter is given S3's
    own credentials (FAASBOX_S3_*), not those."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "FBTNOTANS3KEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-s3")
    store = S3Store(tmp_path / "journal", endpoint_url=moto_url, bucket_prefix="creds-",
                    credentials=("testing", "testing", None))
    try:
        store.create_bucket("explicit")
        store.put("explicit", "k", b"v")
        assert store.get("explicit", "k")[1] == b"v"
        assert store._s3._request_signer._credentials.access_key == "testing"
    finally:
        store.close()
