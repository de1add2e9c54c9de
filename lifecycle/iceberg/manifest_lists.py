"""A light manifest-list reader: only the four fields reachability needs, straight from the Avro bytes.

A manifest list is an Avro container whose records START with `manifest_path`, `manifest_length`,
`partition_spec_id` and `content` (Iceberg v2/v3). Rather than decoding every field of every record
(partition summaries included), each deflate block is decompressed in C and the records' paths are found
by searching for the first path's scheme prefix; each hit is accepted only when the zigzag length varint
right before it says the string runs exactly to a `.avro` ending, and a block is accepted only when it
yields exactly the block's record count. Anything else (another codec, another field order, an ambiguous
hit, a count mismatch) returns None and the caller falls back to a full decoder. Entries are interned by
path, so the ~N² repeated entries of an append-only history cost one dict lookup each.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from typing import Any

_MAGIC = b"Obj\x01"
_FIELDS = ["manifest_path", "manifest_length", "partition_spec_id", "content"]
_AVRO = b".avro"

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = 0
    result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7


def _header(data: bytes) -> tuple[dict[str, bytes], int] | None:
    if data[:4] != _MAGIC:
        return None
    pos = 4
    meta: dict[str, bytes] = {}
    while True:
        n, pos = _varint(data, pos)
        if n == 0:
            return meta, pos
        if n < 0:
            _, pos = _varint(data, pos)
            n = -n
        for _ in range(n):
            kl, pos = _varint(data, pos)
            key = data[pos:pos + kl].decode()
            pos += kl
            vl, pos = _varint(data, pos)
            meta[key] = data[pos:pos + vl]
            pos += vl


Make = Callable[[str, int, int, int], Any]


def read_entries(data: bytes, known: dict[bytes, Any], make: Make) -> list[Any] | None:
    """Each entry's `known[path_bytes]`, created with `make(path, length, spec_id, content)` when new."""
    head = _header(data)
    if head is None:
        return None
    meta, pos = head
    codec = meta.get("avro.codec", b"null")
    if codec not in (b"null", b"deflate"):
        return None
    try:
        fields = json.loads(meta["avro.schema"]).get("fields", [])
    except (KeyError, ValueError, AttributeError):
        return None
    if [f.get("name") for f in fields[:4]] != _FIELDS:
        return None
    out: list[Any] = []
    blocks = data_blocks(data, pos, codec)
    if blocks is None:
        return None
    for count, block in blocks:
        if count and not _block(block, count, known, make, out):
            return None
    return out


def data_blocks(data: bytes, pos: int, codec: bytes) -> list[tuple[int, bytes]] | None:
    """The (record count, decompressed bytes) of every data block after the header ending at `pos`; None
    when a block's sync marker is wrong (the caller then falls back to a full reader)."""
    sync = data[pos:pos + 16]
    pos += 16
    out: list[tuple[int, bytes]] = []
    while pos < len(data):
        count, pos = _varint(data, pos)
        size, pos = _varint(data, pos)
        block = data[pos:pos + size]
        pos += size
        if data[pos:pos + 16] != sync:
            return None
        pos += 16
        out.append((count, zlib.decompress(block, -15) if codec == b"deflate" else block))
    return out


def _path_at(block: bytes, q: int) -> bytes | None:
    """The path starting at q, from the 1- or 2-byte length varint before it; None when not exactly one fits."""
    b1 = block[q - 1]
    if b1 & 0x80:
        return None
    found = None
    n1 = b1 >> 1
    if block[q + n1 - 5:q + n1] == _AVRO:
        found = block[q:q + n1]
    if q >= 2 and block[q - 2] & 0x80:
        n2 = ((block[q - 2] & 0x7F) | (b1 << 7)) >> 1
        if block[q + n2 - 5:q + n2] == _AVRO:
            if found is not None:
                return None
            found = block[q:q + n2]
    return found


def _block(block: bytes, count: int, known: dict[bytes, Any], make: Make, out: list[Any]) -> bool:
    length, q = _varint(block, 0)
    path: bytes | None = block[q:q + length]
    assert path is not None
    colon = path.find(b"://")
    if colon < 0 or not path.endswith(_AVRO):
        return False
    prefix = path[:colon + 3]
    find = block.find
    n = 0
    while True:
        if n:
            path = _path_at(block, q)
            if path is None:
                return False
        assert path is not None
        hit = known.get(path)
        if hit is None:
            manifest_length, r = _varint(block, q + len(path))
            spec_id, r = _varint(block, r)
            content, r = _varint(block, r)
            hit = known[path] = make(path.decode(), manifest_length, spec_id, content)
        out.append(hit)
        n += 1
        q = find(prefix, q + len(path))
        if q < 0:
            return n == count
