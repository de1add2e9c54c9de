"""A light manifest reader: status, content, path, record count and size of each entry, nothing else.

PyIceberg's reader and pyiceberg-core's both pay milliseconds per FILE (schema parsing and resolution),
which dominates when a history has thousands of small per-commit manifests. Here the Avro schema in a
manifest's header is compiled once per distinct schema (cached by its bytes) into a small decoder that
reads the wanted fields and skips every other value by its Avro encoding. Returns None for anything it
does not handle (another codec, an unexpected schema), and the caller falls back to a full reader.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from lifecycle.iceberg.manifest_lists import _header, _varint, data_blocks

Skip = Callable[[bytes, int], int]
_DELETED = 2


def _skip_varint(b: bytes, p: int) -> int:
    while b[p] & 0x80:
        p += 1
    return p + 1


def _skip_len(b: bytes, p: int) -> int:
    n, p = _varint(b, p)
    return p + n


def _compile(t: Any, names: dict[str, Any]) -> Skip:
    if isinstance(t, list):
        branches = [_compile(x, names) for x in t]

        def union(b: bytes, p: int) -> int:
            i, p = _varint(b, p)
            return branches[i](b, p)
        return union
    if isinstance(t, str):
        if t in names:
            return names[t]  # type: ignore[no-any-return]  # a named type's reader, bound above
        return _PRIMITIVE[t]
    kind = t["type"]
    if kind == "record":
        fields = [_compile(f["type"], names) for f in t["fields"]]

        def record(b: bytes, p: int) -> int:
            for f in fields:
                p = f(b, p)
            return p
        names[t["name"]] = record
        return record
    if kind in ("array", "map"):
        item = _compile(t["items"] if kind == "array" else t["values"], names)
        is_map = kind == "map"

        def blocks(b: bytes, p: int) -> int:
            while True:
                n, p = _varint(b, p)
                if n == 0:
                    return p
                if n < 0:
                    size, p = _varint(b, p)
                    p += size
                    continue
                for _ in range(n):
                    if is_map:
                        p = _skip_len(b, p)
                    p = item(b, p)
        return blocks
    if kind == "fixed":
        size = int(t["size"])
        return lambda b, p: p + size
    if kind == "enum":
        return _skip_varint
    return _compile(kind, names)   # a primitive with a logical type


_PRIMITIVE: dict[str, Skip] = {
    "null": lambda b, p: p, "boolean": lambda b, p: p + 1, "int": _skip_varint, "long": _skip_varint,
    "float": lambda b, p: p + 4, "double": lambda b, p: p + 8, "bytes": _skip_len, "string": _skip_len,
}

Entry = tuple[int, int, str, int, int]   # status, content, path, record count, size
Reader = Callable[[bytes, int], tuple[Entry, int]]


def _entry_reader(schema: dict[str, Any]) -> Reader | None:
    names: dict[str, Any] = {}
    plan: list[tuple[str, Any]] = []
    data_plan: list[tuple[str, Any]] = []
    for f in schema["fields"]:
        if f["name"] == "status":
            plan.append(("status", None))
        elif f["name"] == "data_file" and isinstance(f["type"], dict) and f["type"].get("type") == "record":
            for g in f["type"]["fields"]:
                want = g["name"] in ("content", "file_path", "record_count", "file_size_in_bytes")
                data_plan.append((g["name"] if want else "", None if want else _compile(g["type"], names)))
            plan.append(("data_file", None))
        else:
            plan.append(("", _compile(f["type"], names)))
    if ("status", None) not in plan or ("data_file", None) not in plan:
        return None

    def read(b: bytes, p: int) -> tuple[Entry, int]:
        status = content = count = size = 0
        path = ""
        for name, skip in plan:
            if skip is not None:
                p = skip(b, p)
            elif name == "status":
                status, p = _varint(b, p)
            else:
                for dname, dskip in data_plan:
                    if dskip is not None:
                        p = dskip(b, p)
                    elif dname == "file_path":
                        n, p = _varint(b, p)
                        path = b[p:p + n].decode()
                        p += n
                    elif dname == "content":
                        content, p = _varint(b, p)
                    elif dname == "record_count":
                        count, p = _varint(b, p)
                    else:
                        size, p = _varint(b, p)
        return (status, content, path, count, size), p
    return read


_readers: dict[bytes, Reader | None] = {}
_lock = threading.Lock()


def read_live_entries(data: bytes) -> list[Entry] | None:
    """Added and existing entries (deleted ones dropped), or None when the fast path does not apply."""
    head = _header(data)
    if head is None:
        return None
    meta, pos = head
    codec = meta.get("avro.codec", b"null")
    raw = meta.get("avro.schema")
    if codec not in (b"null", b"deflate") or raw is None:
        return None
    with _lock:
        if raw not in _readers:
            try:
                _readers[raw] = _entry_reader(json.loads(raw))
            except (KeyError, TypeError, ValueError):
                _readers[raw] = None
        reader = _readers[raw]
    if reader is None:
        return None
    blocks = data_blocks(data, pos, codec)
    if blocks is None:
        return None
    out: list[Entry] = []
    for count, block in blocks:
        p = 0
        for _ in range(count):
            entry, p = reader(block, p)
            if entry[0] != _DELETED:
                out.append(entry)
        if p != len(block):
            return None
    return out
