"""Buckets, objects and notifications as users drive them: the SDK over HTTP, raw HTTP,
and the ``faasbox bucket|cp|notify`` CLI, against a real ``faasbox up``."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import time
from pathlib import Path
from urllib.parse import quote, unquote_plus

import httpx
import pytest
from tests.e2e.conftest import Server

from faasbox.errors import (
    BucketNotEmptyError,
    BucketNotFoundError,
    InvalidParameterError,
    InvalidRangeError,
    ObjectNotFoundError,
    PreconditionFailedError,
)
from faasbox.remote import RemoteClient


def _json(done: subprocess.CompletedProcess[str]):
    return json.loads(done.stdout)


def test_remote_objects_round_trip_streams_and_errors(remote: RemoteClient) -> None:
    objects = remote.objects
    assert objects.create_bucket("sdk-docs")["arn"].endswith(":::sdk-docs")
    blob = os.urandom(2 * 1024 * 1024 + 3)
    info = objects.put("sdk-docs", "big/blob.bin", io.BytesIO(blob),
                       content_type="application/x-test", metadata={"Owner": "ada"})
    assert (info["size"], info["etag"]) == (len(blob), hashlib.md5(blob).hexdigest())
    head = objects.head("sdk-docs", "big/blob.bin")
    assert head["content_type"] == "application/x-test" and head["metadata"] == {"owner": "ada"}
    assert head["last_modified"] == info["last_modified"] and head["size"] == len(blob)
    with objects.open("sdk-docs", "big/blob.bin") as reader:
        assert b"".join(reader) == blob
    got, part = objects.get("sdk-docs", "big/blob.bin", byte_range=(10, 19))
    assert part == blob[10:20] and got["etag"] == info["etag"]
    assert objects.get("sdk-docs", "big/blob.bin", byte_range=(None, 4))[1] == blob[-4:]

    odd = ["..", ".", "a//b", "../x", "sp ace?#&", "100%/x", "é/文字"]
    for key in odd:
        objects.put("sdk-docs", key, key.encode())
    for key in odd:
        assert objects.get("sdk-docs", key)[1] == key.encode()
    top = objects.list("sdk-docs", delimiter="/")
    assert top["common_prefixes"] == ["../", "100%/", "a/", "big/", "é/"]
    paged = objects.list("sdk-docs", max_keys=3)
    rest = objects.list("sdk-docs", continuation_token=paged["next_continuation_token"])
    assert len(paged["contents"]) + len(rest["contents"]) == len(odd) + 1

    copied = objects.copy("sdk-docs", "big/blob.bin", "sdk-docs", "copy.bin")
    assert copied["etag"] == info["etag"]
    with pytest.raises(PreconditionFailedError):
        objects.put("sdk-docs", "copy.bin", b"x", if_none_match="*")
    objects.put("sdk-docs", "copy.bin", b"x", if_match=info["etag"])
    with pytest.raises(InvalidRangeError):
        objects.get("sdk-docs", "copy.bin", byte_range=(5, None))
    with pytest.raises(ObjectNotFoundError, match="Object not found: sdk-docs/nope"):
        objects.head("sdk-docs", "nope")
    with pytest.raises(ObjectNotFoundError, match="Object not found: sdk-docs/nope"):
        objects.get("sdk-docs", "nope")
    with pytest.raises(BucketNotFoundError, match="Bucket not found: no-bucket"):
        objects.head("no-bucket", "k")
    with pytest.raises(InvalidParameterError, match="invalid bucket name"):
        objects.create_bucket("Bad_Name")
    with pytest.raises(BucketNotEmptyError):
        objects.delete_bucket("sdk-docs")
    objects.delete("sdk-docs", "copy.bin")
    objects.delete("sdk-docs", "copy.bin")  # missing: still fine
    with pytest.raises(ObjectNotFoundError):
        objects.head("sdk-docs", "copy.bin")


def test_http_ranges_headers_and_error_bodies(remote: RemoteClient,
                                              http: httpx.Client) -> None:
    remote.objects.create_bucket("http-docs")
    path = "/v1/buckets/http-docs/objects/" + quote("dir/file one.txt", safe="")
    put = http.put(path, content=b"0123456789",
                   headers={"content-type": "text/plain", "x-amz-meta-color": "blue"})
    assert put.status_code == 200 and put.headers["etag"] == f'"{put.json()["etag"]}"'
    part = http.get(path, headers={"range": "bytes=2-5"})
    assert part.status_code == 206 and part.content == b"2345"
    assert part.headers["content-range"] == "bytes 2-5/10"
    whole = http.get(path)
    assert whole.content == b"0123456789" and whole.headers["x-amz-meta-color"] == "blue"
    assert whole.headers["content-type"].startswith("text/plain")
    head = http.head(path)
    assert head.status_code == 200 and head.headers["content-length"] == "10"
    beyond = http.get(path, headers={"range": "bytes=50-"})
    assert beyond.status_code == 416 and beyond.json()["errorType"] == "InvalidRange"
    missing = http.get("/v1/buckets/http-docs/objects/nope")
    assert missing.status_code == 404
    assert missing.json() == {"errorType": "NoSuchKey",
                              "errorMessage": "Object not found: http-docs/nope"}
    bad = http.put("/v1/buckets/UPPER")
    assert bad.status_code == 400 and "invalid bucket name" in bad.json()["errorMessage"]
    conditional = http.put(path, content=b"x", headers={"if-none-match": "*"})
    assert conditional.status_code == 412
    assert http.get(path).content == b"0123456789"  # the refused put changed nothing


def test_cli_buckets_and_cp_both_ways(server: Server, tmp_path: Path) -> None:
    made = _json(server.cli("bucket", "create", "cli-docs", "--json"))
    assert made["name"] == "cli-docs"
    assert "cli-docs" in server.cli("bucket", "ls").stdout

    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.json").write_text('{"b": 1}')
    done = server.cli("cp", str(src), "fb://cli-docs/in/", "--recursive")
    assert "upload:" in done.stdout
    listing = _json(server.cli("bucket", "ls", "fb://cli-docs/in/", "--recursive", "--json"))
    assert [c["key"] for c in listing["contents"]] == ["in/a.txt", "in/sub/b.json"]
    rolled = _json(server.cli("bucket", "ls", "cli-docs", "--prefix", "in/", "--json"))
    assert rolled["common_prefixes"] == ["in/sub/"]

    single = tmp_path / "one.txt"
    single.write_text("one")
    server.cli("cp", str(single), "fb://cli-docs/")
    out = server.cli("cp", "fb://cli-docs/one.txt", "-")
    assert out.stdout == "one"
    server.cli("cp", "fb://cli-docs/one.txt", "fb://cli-docs/copies/")
    back = tmp_path / "back"
    server.cli("cp", "fb://cli-docs/in", str(back), "-r")
    assert (back / "a.txt").read_text() == "alpha"
    assert json.loads((back / "sub" / "b.json").read_text()) == {"b": 1}
    server.cli("cp", "fb://cli-docs/copies/one.txt", str(tmp_path / "got.txt"))
    assert (tmp_path / "got.txt").read_text() == "one"

    failed = server.cli("cp", str(src), "fb://cli-docs/x", check=False)
    assert failed.returncode == 1 and "--recursive" in failed.stderr
    failed = server.cli("bucket", "rm", "cli-docs", check=False)
    assert failed.returncode == 1 and "BucketNotEmpty" in failed.stderr
    server.cli("bucket", "rm", "cli-docs", "--force")
    assert "cli-docs" not in server.cli("bucket", "ls").stdout
    failed = server.cli("bucket", "create", "no_underscores", check=False)
    assert failed.returncode == 1 and "invalid bucket name" in failed.stderr


def test_cli_notify_sends_uploads_to_a_queue(server: Server, remote: RemoteClient,
                                             tmp_path: Path) -> None:
    remote.queues.create("cli-uploads")
    server.cli("bucket", "create", "cli-inbox")
    made = _json(server.cli("notify", "add", "cli-inbox", "queue:cli-uploads",
                            "--suffix", ".pdf", "--json"))
    listed = _json(server.cli("notify", "ls", "cli-inbox", "--json"))
    assert [n["id"] for n in listed] == [made["id"]]
    assert made["id"] in server.cli("notify", "ls", "cli-inbox").stdout
    doc = tmp_path / "my report.pdf"
    doc.write_bytes(b"%PDF-1.4")
    server.cli("cp", str(doc), "fb://cli-inbox/")
    messages = []
    deadline = time.monotonic() + 10
    while not messages and time.monotonic() < deadline:
        messages = remote.queues.receive("cli-uploads", max_messages=10, wait_s=1)
    assert len(messages) == 1
    record = json.loads(messages[0].body)["Records"][0]
    assert record["eventName"] == "ObjectCreated:Put"
    assert unquote_plus(record["s3"]["object"]["key"]) == "my report.pdf"
    server.cli("notify", "rm", "cli-inbox", made["id"])
    assert _json(server.cli("notify", "ls", "cli-inbox", "--json")) == []
    failed = server.cli("notify", "add", "cli-inbox", "queue:absent", check=False)
    assert failed.returncode == 1 and "Queue not found: absent" in failed.stderr


def test_cli_head_range_and_rm_of_one_object(server: Server, remote: RemoteClient,
                                             tmp_path: Path) -> None:
    remote.queues.create("cli-removed")
    server.cli("bucket", "create", "cli-ops")
    server.cli("notify", "add", "cli-ops", "queue:cli-removed", "-e", "ObjectRemoved:*")
    doc = tmp_path / "digits.txt"
    doc.write_bytes(b"0123456789")
    server.cli("cp", str(doc), "fb://cli-ops/dir/digits.txt", "--content-type", "text/plain")

    head = _json(server.cli("bucket", "head", "fb://cli-ops/dir/digits.txt", "--json"))
    assert (head["size"], head["etag"], head["content_type"]) == (
        10, hashlib.md5(b"0123456789").hexdigest(), "text/plain")
    shown = server.cli("bucket", "head", "fb://cli-ops/dir/digits.txt").stdout
    assert head["etag"] in shown and "text/plain" in shown

    assert server.cli("cp", "fb://cli-ops/dir/digits.txt", "-", "--range", "2-5").stdout == "2345"
    assert server.cli("cp", "fb://cli-ops/dir/digits.txt", "-", "--range", "7-").stdout == "789"
    assert server.cli("cp", "fb://cli-ops/dir/digits.txt", "-", "--range=-3").stdout == "789"
    part = tmp_path / "part.txt"
    server.cli("cp", "fb://cli-ops/dir/digits.txt", str(part), "--range", "0-1")
    assert part.read_bytes() == b"01"
    for bad, message in [("5-2", "invalid --range"), ("x", "invalid --range"),
                         ("50-", "InvalidRange")]:
        failed = server.cli("cp", "fb://cli-ops/dir/digits.txt", "-", "--range", bad,
                            check=False)
        assert failed.returncode == 1 and message in failed.stderr, failed.stderr
    failed = server.cli("cp", str(doc), "fb://cli-ops/x", "--range", "0-1", check=False)
    assert failed.returncode == 1 and "--range applies to downloading" in failed.stderr
    assert remote.objects.list("cli-ops")["contents"][0]["key"] == "dir/digits.txt"

    failed = server.cli("bucket", "rm", "fb://cli-ops/dir/digits.txt", "--force", check=False)
    assert failed.returncode == 1 and "names an object" in failed.stderr
    server.cli("bucket", "rm", "fb://cli-ops/dir/digits.txt")
    failed = server.cli("bucket", "head", "fb://cli-ops/dir/digits.txt", check=False)
    assert failed.returncode == 1 and "Object not found: cli-ops/dir/digits.txt" in failed.stderr
    server.cli("bucket", "rm", "fb://cli-ops/dir/digits.txt")  # gone already: still fine
    failed = server.cli("bucket", "head", "fb://cli-ops", check=False)
    assert failed.returncode == 1 and "names no object" in failed.stderr

    messages = []
    deadline = time.monotonic() + 10
    while not messages and time.monotonic() < deadline:
        messages = remote.queues.receive("cli-removed", max_messages=10, wait_s=1)
    records = [r for m in messages for r in json.loads(m.body)["Records"]]
    assert [(r["eventName"], r["s3"]["object"]["key"]) for r in records] == [
        ("ObjectRemoved:Delete", "dir/digits.txt")]

    server.cli("bucket", "rm", "fb://cli-ops")  # only a bucket: the bucket
    assert "cli-ops" not in server.cli("bucket", "ls").stdout
