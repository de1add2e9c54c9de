"""Streaming listing of every file under a table location, with size and modification time.

`file://` walks directories one at a time with os.scandir (memory grows with one directory, not the
table; symlinks are skipped); `s3://` (and s3a/s3n) pages through boto3's list_objects_v2 paginator, 1,000
keys a page, with the catalog's `s3.*` FileIO properties (endpoint, keys, region) or the standard AWS
environment (`AWS_ENDPOINT_URL_S3` included).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from lifecycle.errors import ConfigError
from lifecycle.s3 import s3_client
from lifecycle.safety.deletes import S3_SCHEMES
from lifecycle.safety.paths import Uri, location_prefix


@dataclass(frozen=True, slots=True)
class ListedFile:
    path: str            # in the location's own scheme and authority
    size: int
    mtime: float | None  # seconds since the epoch (UTC); None when the store did not say


def list_files(location: str, properties: Mapping[str, Any], page_size: int = 1000) -> Iterator[ListedFile]:
    """Every file under `location` (recursively). Directories themselves are not yielded."""
    prefix = location_prefix(location)
    if prefix.scheme == "file":
        yield from _list_local(prefix, location.startswith("file:"))
    elif prefix.scheme in S3_SCHEMES:
        yield from _list_s3(prefix, properties, page_size)
    else:
        raise ConfigError(f"clean-orphans: cannot list {location}: scheme {prefix.scheme!r} is not supported")


def _list_local(prefix: Uri, as_uri: bool) -> Iterator[ListedFile]:
    """Depth-first with os.scandir (as fast as pyarrow's LocalFileSystem here, and it tells symlinks
    apart): symlinks are neither listed nor followed, so nothing reached through one is ever a candidate."""
    stack = [prefix.path.rstrip("/")]
    lead = "file://" if as_uri else ""
    while stack:
        directory = stack.pop()
        try:
            it = os.scandir(directory)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with it:
            for entry in it:
                if entry.is_symlink():
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    yield ListedFile(lead + entry.path, st.st_size, st.st_mtime_ns / 1e9)


def _list_s3(prefix: Uri, properties: Mapping[str, Any], page_size: int) -> Iterator[ListedFile]:
    client = s3_client(properties)
    lead = f"{prefix.scheme}://{prefix.authority}/"
    paginator = client.get_paginator("list_objects_v2")
    pages = paginator.paginate(Bucket=prefix.authority, Prefix=prefix.path.lstrip("/"),
                               PaginationConfig={"PageSize": page_size})
    for page in pages:
        for obj in page.get("Contents", ()):
            key = obj["Key"]
            if key.endswith("/"):
                continue  # a "directory marker" object, not a file
            modified = obj.get("LastModified")
            yield ListedFile(lead + key, int(obj.get("Size", 0)),
                             modified.timestamp() if modified is not None else None)
