"""Queues: ``faasbox queue create|ls|attrs|delete|purge|send|send-batch|receive|
delete-message|change-visibility|redrive``, named after the SDK's methods (``rm`` is
``delete``, as for the other resources)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from faasbox.api.queues import BATCH_MAX, Message
from faasbox.cli import common
from faasbox.cli.common import JSON_OPTION
from faasbox.errors import InvalidParameterError

queue_app = typer.Typer(
    name="queue", help="Durable queues with SQS semantics.", no_args_is_help=True
)

NameArg = Annotated[str, typer.Argument(help="Queue name.")]
VisibilityOpt = Annotated[
    int | None, typer.Option("--visibility-timeout", help="Seconds a received message stays "
                             "hidden (default 30).")
]
RetentionOpt = Annotated[
    int | None, typer.Option("--retention", help="Seconds a message is kept (default 4 days).")
]
DelayOpt = Annotated[int | None, typer.Option("--delay", help="Seconds before a new message "
                                              "is visible (0-900).")]
MaxBytesOpt = Annotated[
    int | None, typer.Option("--max-message-bytes", help="Largest message (default 256 KB).")
]
WaitOpt = Annotated[
    int | None, typer.Option("--receive-wait", help="Default long-poll seconds (0-20).")
]
DlqOpt = Annotated[
    str | None, typer.Option("--dlq", help="Dead-letter queue (needs --max-receive-count).")
]
MaxReceiveOpt = Annotated[
    int | None, typer.Option("--max-receive-count", help="Receives before the DLQ (1-1000).")
]


def _attributes(**options: Any) -> dict[str, Any]:
    return {key: value for key, value in options.items() if value is not None}


def _show_queue(info: dict[str, Any]) -> None:
    grid = common.table("ATTRIBUTE", "VALUE", title=info["name"])
    for key, value in info.items():
        if key == "created_at":
            value = common.when(value)
        grid.add_row(key, "-" if value is None else str(value))
    common.console.print(grid)


@queue_app.command()
def create(
    ctx: typer.Context,
    name: NameArg,
    visibility_timeout: VisibilityOpt = None,
    retention: RetentionOpt = None,
    delay: DelayOpt = None,
    max_message_bytes: MaxBytesOpt = None,
    receive_wait: WaitOpt = None,
    dlq: DlqOpt = None,
    max_receive_count: MaxReceiveOpt = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a queue (again with the same attributes: no change)."""
    attributes = _attributes(
        visibility_timeout_s=visibility_timeout, retention_s=retention, delay_s=delay,
        max_message_bytes=max_message_bytes, receive_wait_s=receive_wait,
        dead_letter_queue=dlq, max_receive_count=max_receive_count,
    )
    with common.client(ctx) as client:
        info = client.queues.create(name, **attributes)
    if as_json:
        common.print_json(info)
        return
    common.say(f"Queue {info['name']} ready ({info['arn']})", "green")


@queue_app.command("ls")
def ls(
    ctx: typer.Context,
    prefix: Annotated[str | None, typer.Option("--prefix", help="Only names starting so.")]
    = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """List queues with their approximate counts."""
    with common.client(ctx) as client:
        found = client.queues.list(prefix)
    if as_json:
        common.print_json(found)
        return
    if not found:
        common.say("No queues yet: faasbox queue create NAME")
        return
    grid = common.table("NAME", "VISIBLE", "IN FLIGHT", "DELAYED", "OLDEST", "VISIBILITY",
                        "DLQ")
    for info in found:
        dlq = info["dead_letter_queue"]
        grid.add_row(
            info["name"], str(info["visible"]), str(info["in_flight"]), str(info["delayed"]),
            f"{info['oldest_age_s']} s", f"{info['visibility_timeout_s']} s",
            f"{dlq} (after {info['max_receive_count']})" if dlq else "-",
        )
    common.console.print(grid)


@queue_app.command()
def attrs(
    ctx: typer.Context,
    name: NameArg,
    visibility_timeout: VisibilityOpt = None,
    retention: RetentionOpt = None,
    delay: DelayOpt = None,
    max_message_bytes: MaxBytesOpt = None,
    receive_wait: WaitOpt = None,
    dlq: DlqOpt = None,
    max_receive_count: MaxReceiveOpt = None,
    no_dlq: Annotated[bool, typer.Option("--no-dlq", help="Remove the redrive policy.")]
    = False,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a queue's attributes and counts; with options, change them first."""
    if no_dlq and (dlq or max_receive_count):
        raise InvalidParameterError("--no-dlq cannot go with --dlq or --max-receive-count")
    changes = _attributes(
        visibility_timeout_s=visibility_timeout, retention_s=retention, delay_s=delay,
        max_message_bytes=max_message_bytes, receive_wait_s=receive_wait,
        dead_letter_queue=dlq, max_receive_count=max_receive_count,
    )
    if no_dlq:
        changes["dead_letter_queue"] = None
    with common.client(ctx) as client:
        queues = client.queues
        info = queues.set_attributes(name, **changes) if changes else queues.get(name)
    if as_json:
        common.print_json(info)
    else:
        _show_queue(info)


@queue_app.command()
def delete(ctx: typer.Context, name: NameArg) -> None:
    """Delete a queue and its messages."""
    with common.client(ctx) as client:
        client.queues.delete(name)
    common.say(f"Deleted queue {name}", "green")


# the other resources' commands say rm; both names do the same
queue_app.command("rm", help="Delete a queue and its messages (same as delete).")(delete)


@queue_app.command()
def send(
    ctx: typer.Context,
    name: NameArg,
    body: Annotated[str, typer.Argument(help="Message body, @FILE, or @- for stdin.")],
    delay: Annotated[int | None, typer.Option("--delay", help="Seconds before visible.")]
    = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Send one message."""
    text = _read_body(body)
    with common.client(ctx) as client:
        sent = client.queues.send(name, text, delay_s=delay)
    if as_json:
        common.print_json(sent)
        return
    common.say(f"Sent {sent['message_id']}", "green")


@queue_app.command("send-batch")
def send_batch(
    ctx: typer.Context,
    name: NameArg,
    bodies: Annotated[list[str], typer.Argument(
        help=f"1-{BATCH_MAX} message bodies, each text or @FILE (@- for stdin, once).")],
    delay: Annotated[int | None, typer.Option("--delay", help="Seconds before visible.")]
    = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Send 1-10 messages in one call.

    Each is sent or fails alone (exit 1 if any failed); entry ids are the bodies'
    positions, 0 first."""
    if len(bodies) > BATCH_MAX:
        raise InvalidParameterError(f"{len(bodies)} bodies: a batch takes 1-{BATCH_MAX}")
    if bodies.count("@-") > 1:
        raise InvalidParameterError("@- (stdin) can be given once")
    entries: list[dict[str, Any]] = [
        {"id": str(index), "body": _read_body(body)} for index, body in enumerate(bodies)
    ]
    if delay is not None:
        for entry in entries:
            entry["delay_s"] = delay
    with common.client(ctx) as client:
        result = client.queues.send_batch(name, entries)
    if as_json:
        common.print_json(result)
    else:
        for item in result["successful"]:
            common.say(f"Sent {item['message_id']} (body {item['id']})", "green")
        _print_failures(result["failed"], "body")
    if result["failed"]:
        raise typer.Exit(1)


def _print_failures(failed: list[dict[str, str]], what: str) -> None:
    for item in failed:
        common.err_console.print(f"{what} {item['id']}: {item['code']}: {item['message']}",
                                 style="bold red", soft_wrap=True)


def _read_body(body: str) -> str:
    if not body.startswith("@"):
        return body
    source = body[1:]
    try:
        if source == "-":
            return sys.stdin.read()
        with open(source, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidParameterError(f"message body {body}: {exc}") from exc


@queue_app.command()
def receive(
    ctx: typer.Context,
    name: NameArg,
    max_messages: Annotated[int, typer.Option("--max", "-n", help="1-10 messages.")] = 1,
    wait: Annotated[int | None, typer.Option("--wait", help="Long-poll seconds (0-20).")]
    = None,
    visibility: Annotated[
        int | None, typer.Option("--visibility", help="Hide them this many seconds.")
    ] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Receive messages; each comes with the receipt handle that deletes it."""
    with common.client(ctx) as client:
        found: list[Message] = client.queues.receive(  # (see server/queues.py on the type)
            name, max_messages=max_messages, wait_s=wait, visibility_timeout_s=visibility
        )
    if as_json:
        common.print_json([message.to_dict() for message in found])
        return
    if not found:
        common.say("No messages.")
        return
    grid = common.table("MESSAGE ID", "RECEIVES", "BODY", "RECEIPT HANDLE")
    for message in found:
        grid.add_row(message.message_id, message.attributes.get("ApproximateReceiveCount", ""),
                     message.body, message.receipt_handle)
    common.console.print(grid)


@queue_app.command("delete-message")
def delete_message(
    ctx: typer.Context,
    name: NameArg,
    handles: Annotated[list[str], typer.Argument(help="Receipt handles from receive.")],
    as_json: bool = JSON_OPTION,
) -> None:
    """Delete received messages by receipt handle (exit 1 if any failed).

    Handles go 10 to a delete_batch call."""
    successful: list[str] = []
    failed: list[dict[str, str]] = []
    with common.client(ctx) as client:
        for start in range(0, len(handles), BATCH_MAX):
            chunk = handles[start:start + BATCH_MAX]
            entries = [{"id": str(start + i), "receipt_handle": h} for i, h in enumerate(chunk)]
            done = client.queues.delete_batch(name, entries)
            successful.extend(handles[int(item["id"])] for item in done["successful"])
            failed.extend({"receipt_handle": handles[int(item["id"])], "code": item["code"],
                           "message": item["message"]} for item in done["failed"])
    if as_json:
        common.print_json({"deleted": successful, "failed": failed})
    else:
        if successful:
            common.say(f"Deleted {len(successful)} message(s)", "green")
        for item in failed:
            common.err_console.print(f"{item['code']}: {item['message']}", style="bold red",
                                     soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@queue_app.command("change-visibility")
def change_visibility(
    ctx: typer.Context,
    name: NameArg,
    handle: Annotated[str, typer.Argument(help="Receipt handle from the latest receive.")],
    seconds: Annotated[int, typer.Argument(
        help="Seconds from now until visible again (0: at once; up to 43200).")],
) -> None:
    """Hide a received message for SECONDS more, or release it at once with 0."""
    with common.client(ctx) as client:
        client.queues.change_visibility(name, handle, seconds)
    when = "now" if seconds == 0 else f"in {seconds} s"
    common.say(f"Message visible again {when}", "green")


@queue_app.command()
def purge(ctx: typer.Context, name: NameArg, as_json: bool = JSON_OPTION) -> None:
    """Delete every message of a queue."""
    with common.client(ctx) as client:
        count = client.queues.purge(name)
    if as_json:
        common.print_json({"purged": count})
    else:
        common.say(f"Purged {count} message(s) from {name}", "green")


@queue_app.command()
def redrive(
    ctx: typer.Context,
    dlq: Annotated[str, typer.Argument(metavar="DLQ", help="The dead-letter queue.")],
    to: Annotated[str | None, typer.Option("--to", help="Move there instead of the source.")]
    = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Move a dead-letter queue's messages back to the queues they came from."""
    with common.client(ctx) as client:
        moved = client.queues.redrive(dlq, destination=to)
    if as_json:
        common.print_json({"moved": moved})
    else:
        common.say(f"Moved {moved} message(s) out of {dlq}", "green")


def register(app: typer.Typer) -> None:
    """Add ``faasbox queue ...`` to ``app``."""
    app.add_typer(queue_app)
