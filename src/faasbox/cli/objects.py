"""Buckets, objects and notifications: ``bucket create|ls|head|rm``, ``cp``,
``notify add|ls|rm``.

Objects are named ``fb://BUCKET/KEY``; ``-`` is standard input or output. The SDK's
``put``/``get``/``open``/``copy`` are ``cp`` (``--range`` for a byte range), ``head`` is
``bucket head``, ``delete`` and ``delete_bucket`` are ``bucket rm``.
"""

from __future__ import annotations

import mimetypes
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from faasbox.api.objects import Objects
from faasbox.cli import common
from faasbox.cli.common import JSON_OPTION
from faasbox.errors import InvalidParameterError, ObjectNotFoundError
from faasbox.stores.objects import Range, parse_range

SCHEME = "fb://"

bucket_app = typer.Typer(help="Create, list and delete buckets; inspect and delete objects.",
                         no_args_is_help=True)
notify_app = typer.Typer(help="Send a bucket's events to a queue or a function.",
                         no_args_is_help=True)


@dataclass(frozen=True)
class Location:
    """``fb://bucket/key`` (``key`` may be empty or a prefix)."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"


def parse_location(text: str) -> Location | None:
    """The object location of ``text``, or None for a local path."""
    if not text.startswith(SCHEME):
        return None
    bucket, _, key = text[len(SCHEME):].partition("/")
    if not bucket:
        raise InvalidParameterError(f"{text!r}: expected fb://BUCKET/KEY")
    return Location(bucket, key)


def parse_cli_range(text: str) -> Range:
    """``START-END``, ``START-`` or ``-N`` (bytes, ends included, as HTTP; a leading
    ``bytes=`` is allowed) as a :data:`Range`, or InvalidParameterError."""
    try:
        return parse_range(text if text.strip().startswith("bytes") else f"bytes={text}")
    except InvalidParameterError:
        raise InvalidParameterError(
            f"invalid --range {text!r}: use START-END, START- or -N (bytes, ends included)"
        ) from None


# -- buckets ------------------------------------------------------------------------------


@bucket_app.command("create")
def bucket_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Bucket name (S3 rules).")],
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a bucket (no error if it exists)."""
    with common.client(ctx) as client:
        info = client.objects.create_bucket(name)
    if as_json:
        common.print_json(info)
    else:
        common.say(f"Bucket {name} ready", "green")


@bucket_app.command("ls")
def bucket_ls(
    ctx: typer.Context,
    bucket: Annotated[str | None, typer.Argument(
        help="List this bucket's objects (fb://BUCKET/PREFIX or BUCKET) instead of buckets."
    )] = None,
    prefix: Annotated[str, typer.Option("--prefix", "-p", help="Only keys starting so.")] = "",
    recursive: Annotated[bool, typer.Option(
        "--recursive", "-r", help="Every key, not rolled up at '/'.")] = False,
    as_json: bool = JSON_OPTION,
) -> None:
    """List buckets, or the objects of one bucket."""
    with common.client(ctx) as client:
        if bucket is None:
            buckets = client.objects.list_buckets()
            if as_json:
                common.print_json(buckets)
                return
            grid = common.table("NAME", "CREATED")
            for item in buckets:
                grid.add_row(item["name"], common.when(item["created_at"]))
            common.console.print(grid)
            return
        where = parse_location(bucket) or Location(bucket, "")
        contents, prefixes = _list_all(client.objects, where.bucket, where.key + prefix,
                                       None if recursive else "/")
    if as_json:
        common.print_json({"contents": contents, "common_prefixes": prefixes})
        return
    grid = common.table("KEY", "SIZE", "MODIFIED", "ETAG")
    for common_prefix in prefixes:
        grid.add_row(common_prefix, "PRE", "", "")
    for item in contents:
        grid.add_row(item["key"], str(item["size"]), common.when(item["last_modified"]),
                     item["etag"])
    common.console.print(grid)


def _list_all(objects: Objects, bucket: str, prefix: str, delimiter: str | None
              ) -> tuple[list[dict[str, Any]], list[str]]:
    contents: list[dict[str, Any]] = []
    prefixes: list[str] = []
    token = None
    while True:
        page = objects.list(bucket, prefix, delimiter, continuation_token=token)
        contents += page["contents"]
        prefixes += page["common_prefixes"]
        token = page["next_continuation_token"]
        if not page["is_truncated"] or not token:
            return contents, prefixes


@bucket_app.command("head")
def bucket_head(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="The object: fb://BUCKET/KEY.")],
    as_json: bool = JSON_OPTION,
) -> None:
    """Show an object's size, ETag, content type, time and metadata (SDK head)."""
    where = _object(target)
    with common.client(ctx) as client:
        info = client.objects.head(where.bucket, where.key)
    if as_json:
        common.print_json(info)
        return
    grid = common.table("FIELD", "VALUE", title=str(where))
    for name, value in info.items():
        if name == "last_modified":
            value = common.when(value)
        elif name == "metadata":
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        grid.add_row(name, str(value))
    common.console.print(grid)


def _object(text: str) -> Location:
    where = parse_location(text)
    if where is None or not where.key:
        raise InvalidParameterError(f"{text!r} names no object: expected fb://BUCKET/KEY")
    return where


@bucket_app.command("rm")
def bucket_rm(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(
        help="fb://BUCKET/KEY deletes that object; BUCKET or fb://BUCKET the bucket.")],
    force: Annotated[bool, typer.Option(
        "--force", help="Delete a bucket's objects first.")] = False,
) -> None:
    """Delete an object (fb://B/KEY) or a bucket (B or fb://B).

    An object: SDK delete, no error if it is not there. A bucket: SDK delete_bucket;
    it must be empty, unless --force."""
    where = parse_location(target) or Location(target, "")
    if where.key and force:
        raise InvalidParameterError(f"--force empties a bucket; {target} names an object")
    with common.client(ctx) as client:
        if where.key:
            client.objects.delete(where.bucket, where.key)
            common.say(f"Deleted {where}", "green")
            return
        if force:
            contents, _ = _list_all(client.objects, where.bucket, "", None)
            for item in contents:
                client.objects.delete(where.bucket, item["key"])
        client.objects.delete_bucket(where.bucket)
    common.say(f"Deleted bucket {where.bucket}", "green")


# -- cp -----------------------------------------------------------------------------------


def cp(
    ctx: typer.Context,
    src: Annotated[str, typer.Argument(help="A local path, fb://BUCKET/KEY or '-'.")],
    dst: Annotated[str, typer.Argument(help="A local path, fb://BUCKET/KEY or '-'.")],
    recursive: Annotated[bool, typer.Option(
        "--recursive", "-r", help="Copy a folder, or every key under a prefix.")] = False,
    content_type: Annotated[str | None, typer.Option(
        "--content-type", help="Content type of uploads (default: guessed from the name).")
    ] = None,
    byte_range: Annotated[str | None, typer.Option(
        "--range", help="Download only these bytes: START-END, START- or -N (last N).")
    ] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Copy files and objects: local -> fb://, fb:// -> local, fb:// -> fb://."""
    source, target = parse_location(src), parse_location(dst)
    if source is None and target is None:
        raise InvalidParameterError("one of SRC and DST must be fb://BUCKET/KEY")
    span = parse_cli_range(byte_range) if byte_range is not None else None
    if span is not None and (source is None or target is not None or recursive):
        raise InvalidParameterError("--range applies to downloading one object: "
                                    "fb://BUCKET/KEY to a file or '-'")
    with common.client(ctx) as client:
        if source is None:
            assert target is not None
            done = _upload(client.objects, src, target, recursive, content_type)
        elif target is None:
            done = _download(client.objects, source, dst, recursive, span)
        else:
            done = _copy(client.objects, source, target, recursive)
    if as_json:
        common.print_json(done)
    elif dst != "-":
        for item in done:
            common.say(f"{item['action']}: {item['from']} -> {item['to']}")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}{name}" if not prefix or prefix.endswith("/") else f"{prefix}/{name}"


def _upload(objects: Objects, src: str, target: Location, recursive: bool,
            content_type: str | None) -> list[dict[str, Any]]:
    if src == "-":
        if not target.key or target.key.endswith("/"):
            raise InvalidParameterError("uploading standard input needs a full fb://BUCKET/KEY")
        objects.put(target.bucket, target.key, sys.stdin.buffer, content_type=content_type)
        return [{"action": "upload", "from": "-", "to": str(target)}]
    path = Path(src)
    if path.is_dir():
        if not recursive:
            raise InvalidParameterError(f"{src} is a folder: add --recursive")
        files = sorted(p for p in path.rglob("*") if p.is_file())
        pairs = [(p, _join(target.key, p.relative_to(path).as_posix())) for p in files]
    elif path.is_file():
        key = target.key
        pairs = [(path, _join(key, path.name) if not key or key.endswith("/") else key)]
    else:
        raise InvalidParameterError(f"{src}: no such file or folder")
    done = []
    for file, key in pairs:
        guessed = content_type or mimetypes.guess_type(file.name)[0]
        with file.open("rb") as body:
            objects.put(target.bucket, key, body, content_type=guessed)
        done.append({"action": "upload", "from": str(file),
                     "to": str(Location(target.bucket, key))})
    return done


def _download(objects: Objects, source: Location, dst: str, recursive: bool,
              span: Range | None = None) -> list[dict[str, Any]]:
    if not recursive:
        if not source.key:
            raise InvalidParameterError(f"{source} names no object: add a key or --recursive")
        if dst == "-":
            with objects.open(source.bucket, source.key, byte_range=span) as reader:
                for chunk in reader:
                    sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return [{"action": "download", "from": str(source), "to": "-"}]
        path = Path(dst)
        if path.is_dir() or dst.endswith(("/", os.sep)):
            path = path / source.key.rsplit("/", 1)[-1]
        _save(objects, source.bucket, source.key, path, span)
        return [{"action": "download", "from": str(source), "to": str(path)}]
    if dst == "-":
        raise InvalidParameterError("--recursive downloads need a folder, not '-'")
    prefix = source.key
    contents, _ = _list_all(objects, source.bucket, prefix, None)
    if not contents:
        raise ObjectNotFoundError(f"{source.bucket}/{prefix}*")
    root = Path(dst)
    plan = []
    for item in contents:  # check every name before writing anything
        rest = item["key"][len(prefix):]
        if prefix and not prefix.endswith("/") and rest.startswith("/"):
            rest = rest[1:]  # fb://b/dir means the folder dir/
        parts = rest.split("/")
        if not rest or any(part in ("", ".", "..") for part in parts):
            raise InvalidParameterError(
                f"key {item['key']!r} does not map onto a file path under {dst}; "
                "copy it alone with a target file name")
        plan.append((item["key"], root.joinpath(*parts)))
    done = []
    for key, path in plan:
        _save(objects, source.bucket, key, path)
        done.append({"action": "download", "from": str(Location(source.bucket, key)),
                     "to": str(path)})
    return done


def _save(objects: Objects, bucket: str, key: str, path: Path, span: Range | None = None
          ) -> None:
    """Download to a temp file beside ``path``, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as sink, objects.open(bucket, key, byte_range=span) as reader:
            for chunk in reader:
                sink.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _copy(objects: Objects, source: Location, target: Location, recursive: bool
          ) -> list[dict[str, Any]]:
    if not recursive:
        if not source.key:
            raise InvalidParameterError(f"{source} names no object: add a key or --recursive")
        key = target.key
        if not key or key.endswith("/"):
            key = _join(key, source.key.rsplit("/", 1)[-1])
        objects.copy(source.bucket, source.key, target.bucket, key)
        return [{"action": "copy", "from": str(source), "to": str(Location(target.bucket, key))}]
    contents, _ = _list_all(objects, source.bucket, source.key, None)
    done = []
    for item in contents:
        key = target.key + item["key"][len(source.key):]
        objects.copy(source.bucket, item["key"], target.bucket, key)
        done.append({"action": "copy", "from": str(Location(source.bucket, item["key"])),
                     "to": str(Location(target.bucket, key))})
    return done


# -- notifications --------------------------------------------------------------------------


@notify_app.command("add")
def notify_add(
    ctx: typer.Context,
    bucket: Annotated[str, typer.Argument(help="Bucket name.")],
    destination: Annotated[str, typer.Argument(
        help="queue:NAME or function:NAME[:QUALIFIER].")],
    event: Annotated[list[str] | None, typer.Option(
        "--event", "-e", help="Event type (repeatable; default ObjectCreated:*).")] = None,
    prefix: Annotated[str, typer.Option("--prefix", help="Only keys starting so.")] = "",
    suffix: Annotated[str, typer.Option("--suffix", help="Only keys ending so.")] = "",
    as_json: bool = JSON_OPTION,
) -> None:
    """Send a bucket's object events to a queue or a function."""
    with common.client(ctx) as client:
        made = client.objects.add_notification(bucket, destination, event or None, prefix,
                                               suffix)
    if as_json:
        common.print_json(made)
    else:
        common.say(f"Notification {made['id']}: {bucket} {','.join(made['events'])} -> "
                   f"{made['destination']}", "green")


@notify_app.command("ls")
def notify_ls(
    ctx: typer.Context,
    bucket: Annotated[str, typer.Argument(help="Bucket name.")],
    as_json: bool = JSON_OPTION,
) -> None:
    """List a bucket's notifications."""
    with common.client(ctx) as client:
        found = client.objects.list_notifications(bucket)
    if as_json:
        common.print_json(found)
        return
    grid = common.table("ID", "EVENTS", "PREFIX", "SUFFIX", "DESTINATION")
    for item in found:
        grid.add_row(item["id"], ",".join(item["events"]), item["prefix"] or "-",
                     item["suffix"] or "-", item["destination"])
    common.console.print(grid)


@notify_app.command("rm")
def notify_rm(
    ctx: typer.Context,
    bucket: Annotated[str, typer.Argument(help="Bucket name.")],
    notification_id: Annotated[str, typer.Argument(help="The notification's id.")],
) -> None:
    """Stop a notification."""
    with common.client(ctx) as client:
        client.objects.remove_notification(bucket, notification_id)
    common.say(f"Removed notification {notification_id}", "green")


def register(app: typer.Typer) -> None:
    """Add ``bucket``, ``cp`` and ``notify`` to ``app``."""
    app.add_typer(bucket_app, name="bucket")
    app.command("cp")(cp)
    app.add_typer(notify_app, name="notify")
