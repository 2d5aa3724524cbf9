"""Readers of stored objects, shared by the adapters (standard library only: sandboxes
import the folder store under ``python -I -S``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from faasbox.stores.objects import ObjectInfo, ObjectReader


class BytesReader(ObjectReader):
    """An inline object (or a range of it), already in memory."""

    def __init__(self, info: ObjectInfo, data: bytes, offset: int, length: int) -> None:
        self.info = info
        self.offset = offset
        self.length = length
        self._data = memoryview(data)[offset:offset + length]
        self._at = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size is None or size < 0 else min(len(self._data),
                                                                  self._at + size)
        chunk = bytes(self._data[self._at:end])
        self._at = end
        return chunk

    def close(self) -> None:
        self._data.release()


def read_upto(chunks: Iterator[bytes], limit: int) -> bytes:
    """The first chunks of a body, ``limit`` bytes or a little more (all of it when it
    is smaller); the rest stays in ``chunks``."""
    parts: list[bytes] = []
    got = 0
    for chunk in chunks:
        parts.append(chunk)
        got += len(chunk)
        if got >= limit:
            break
    return b"".join(parts)


class FileReader(ObjectReader):
    def __init__(self, info: ObjectInfo, handle: BinaryIO, offset: int, length: int) -> None:
        self.info = info
        self.offset = offset
        self.length = length
        self._handle = handle
        self._left = length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if size is None or size < 0 else min(size, self._left)
        data = self._handle.read(want)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._handle.close()
