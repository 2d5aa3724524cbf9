"""What a queue accepts: names, attribute values and messages, checked before any write.

Every check raises :class:`InvalidParameterError` saying what was wrong; nothing has been
written when it does (the queue service runs these before opening a transaction).
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
from typing import Any

from faasbox.api.queues import BATCH_MAX, DELAY_MAX_S, MAX_MESSAGE_BYTES
from faasbox.errors import InvalidParameterError
from faasbox.stores.queues import NewMessage, QueueConfig

#: Message ids need uniqueness, not secrecy (receipt handles carry the HMAC): a seeded
#: generator is ~10x cheaper than os.urandom per message.
_ids = random.Random()

QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
ENTRY_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
ATTRIBUTE_NAME_RE = re.compile(r"^(?!\.)(?!.*\.\.)(?!.*\.$)[A-Za-z0-9_.-]{1,256}$")
#: Characters SQS accepts in a body: #x9 #xA #xD, #x20-#xD7FF, #xE000-#xFFFD, astral.
_BAD_CHAR_RE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
#: Message attributes per message (SQS: 10).
ATTRIBUTES_MAX = 10
#: A whole ``send_batch`` (SQS: the sum of its entries, 256 KB).
BATCH_MAX_BYTES = MAX_MESSAGE_BYTES


def new_message(
    config: QueueConfig, body: Any, delay_s: Any, attributes: Any
) -> NewMessage:
    """A message for ``config``, or InvalidParameterError saying what is wrong."""
    if not isinstance(body, str) or not body:
        raise InvalidParameterError("message body must be a non-empty string")
    if not (body.isascii() and body.isprintable()):  # the common case needs no regex
        bad = _BAD_CHAR_RE.search(body)
        if bad is not None:
            raise InvalidParameterError(
                f"message body has a character SQS does not allow: U+{ord(bad.group()):04X} "
                f"at offset {bad.start()}"
            )
    if delay_s is None:
        delay_s = config.delay_s
    bounded("delay_s", delay_s, 0, DELAY_MAX_S)
    raw = body.encode()
    size = len(raw) + attributes_size(attributes)
    if size > config.max_message_bytes:
        raise InvalidParameterError(
            f"message is {size} bytes, over queue {config.name}'s max_message_bytes "
            f"({config.max_message_bytes})"
        )
    return NewMessage(
        message_id=message_id(), body=body,
        md5=hashlib.md5(raw, usedforsecurity=False).hexdigest(),
        attributes=attributes or None, delay_s=delay_s,
    )


#: A random version 4 UUID: version nibble 4, variant bits 10.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def message_id() -> str:
    """A random version 4 UUID as text (what ``str(uuid.uuid4())`` gives, ~3x cheaper:
    one per message sent)."""
    text = f"{(_ids.getrandbits(128) & _UUID4_CLEAR) | _UUID4_SET:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def attributes_size(attributes: Any) -> int:
    """Bytes of the message attributes (counted in the message size, as SQS does);
    InvalidParameterError for a malformed one."""
    if attributes is None:
        return 0
    if not isinstance(attributes, dict):
        raise InvalidParameterError("message_attributes must be an object")
    if len(attributes) > ATTRIBUTES_MAX:
        raise InvalidParameterError(
            f"{len(attributes)} message attributes, over the limit of {ATTRIBUTES_MAX}"
        )
    size = 0
    for key, value in attributes.items():
        if not isinstance(key, str) or not ATTRIBUTE_NAME_RE.match(key) or key.lower().startswith(
            ("aws.", "amazon.")
        ):
            raise InvalidParameterError(f"invalid message attribute name {key!r}")
        if not isinstance(value, dict) or not isinstance(value.get("DataType"), str):
            raise InvalidParameterError(
                f"message attribute {key}: expected {{'DataType': ..., 'StringValue': ...}}"
            )
        kind = value["DataType"]
        field = "BinaryValue" if kind.startswith("Binary") else "StringValue"
        if not kind.startswith(("String", "Number", "Binary")) or set(value) != {
            "DataType", field
        } or not isinstance(value[field], str):
            raise InvalidParameterError(
                f"message attribute {key}: DataType String, Number or Binary (optionally "
                f"'.custom') with a string {field}"
            )
        size += len(key.encode()) + len(kind.encode()) + len(value[field].encode())
    return size


def check_batch_bytes(entries: list[dict[str, Any]], limit: int) -> None:
    """InvalidParameterError if the entries' bodies and message attributes add up to more
    than ``limit`` bytes (UTF-8), as SQS refuses a batch whose total is too long. Bodies
    that are not text and malformed attributes count nothing here: they fail alone."""
    total = 0
    for entry in entries:
        body = entry.get("body")
        if isinstance(body, str):
            total += len(body.encode())
        with contextlib.suppress(InvalidParameterError):
            total += attributes_size(entry.get("message_attributes"))
    if total > limit:
        raise InvalidParameterError(
            f"batch is {total} bytes in all (bodies and message attributes), over the "
            f"{limit}-byte limit of one send_batch; nothing was sent"
        )


def entry_ids(entries: Any, allowed: set[str]) -> list[str]:
    """The ids of a 1-10 entry batch, or InvalidParameterError (nothing is done)."""
    if not isinstance(entries, list) or not 1 <= len(entries) <= BATCH_MAX:
        raise InvalidParameterError(f"a batch needs 1-{BATCH_MAX} entries")
    ids = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or \
                not ENTRY_ID_RE.match(entry["id"]):
            raise InvalidParameterError(
                f"batch entry {show(entry)} needs an id of 1-80 letters, digits, '-' or '_'"
            )
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise InvalidParameterError(f"batch entry {entry['id']}: unknown fields {unknown}")
        ids.append(entry["id"])
    if len(set(ids)) != len(ids):
        raise InvalidParameterError("batch entry ids must be distinct")
    return ids


def queue_name(name: Any, what: str = "queue name") -> str:
    if not isinstance(name, str) or not QUEUE_NAME_RE.match(name):
        raise InvalidParameterError(
            f"invalid {what} {name!r}: use 1-80 letters, digits, '-' or '_'"
        )
    return name


def bounded(what: str, value: Any, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidParameterError(f"{what}={value!r} is out of range {low}-{high}")
    return value


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
