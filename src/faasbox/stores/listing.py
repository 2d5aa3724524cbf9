"""S3's listing semantics (prefix, delimiter, pages) over any key-ordered index.

Standard library only: the folder store, which sandboxes import under ``python -I -S``,
lists with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faasbox.errors import InvalidParameterError
from faasbox.stores.objects import Listing, ObjectSummary, decode_token, encode_token

#: fetch(start, inclusive, upper, limit): up to ``limit`` rows (key, size, etag,
#: last_modified) with start <= key (start < key unless inclusive) and key < upper (if
#: given), in key order.
Fetch = Callable[[str, bool, "str | None", int], list[tuple[Any, ...]]]


def list_keys(fetch: Fetch, prefix: str, delimiter: str | None, max_keys: int,
              continuation_token: str | None) -> Listing:
    """One page of a listing: keys under ``prefix``, those with ``delimiter`` after the
    prefix rolled up into common prefixes (each listed once, its keys skipped in one
    jump), at most ``max_keys`` entries, and a token for the next page."""
    start: str | None = prefix
    inclusive = True
    if continuation_token:
        kind, value = decode_token(continuation_token)
        if not value.startswith(prefix):
            raise InvalidParameterError("continuation token does not belong to this prefix")
        start, inclusive = (value, False) if kind == "k" else (after(value), True)
    upper = after(prefix) if prefix else None
    contents: list[ObjectSummary] = []
    prefixes: list[str] = []
    last: tuple[str, str] | None = None
    truncated = False
    skip: str | None = None  # a common prefix with no successor string: skip its keys
    batch = max_keys + 1
    while start is not None and not truncated:
        rows = fetch(start, inclusive, upper, batch)
        next_start: str | None = rows[-1][0] if len(rows) == batch else None
        inclusive = False
        for key, size, etag, modified in rows:
            if skip is not None and key.startswith(skip):
                continue
            if len(contents) + len(prefixes) == max_keys:
                truncated = True
                break
            cut = key.find(delimiter, len(prefix)) if delimiter else -1
            if cut < 0:
                contents.append(ObjectSummary(key, size, etag, modified))
                last = ("k", key)
                continue
            common = key[:cut + len(delimiter or "")]
            prefixes.append(common)
            last = ("p", common)
            following = after(common)
            if following is not None:  # jump past every key under it
                next_start, inclusive = following, True
                break
            skip = common
        start = next_start
    token = encode_token(*last) if truncated and last is not None else None
    return Listing(contents, prefixes, truncated, token)


def after(prefix: str) -> str | None:
    """The least string greater than every string starting with ``prefix`` (None if
    there is none): UTF-8 byte order is code point order."""
    text = prefix.rstrip("\U0010ffff")
    if not text:
        return None
    point = ord(text[-1]) + 1
    if 0xD800 <= point <= 0xDFFF:  # surrogates are not text
        point = 0xE000
    return text[:-1] + chr(point)
