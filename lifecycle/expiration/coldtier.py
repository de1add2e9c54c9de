"""The cold tier: S3 (server-side copy with a storage class) or a local folder (the embedded default).

Objects keep their table-relative path under `<cold root>/<namespace>/<table>/`, so a file is found again
from its source path alone. S3 → S3 copies are server-side (`copy_object`, or a managed multipart copy
above 5 GB) and never pass through the worker; any other copy streams through it and is charged to the
bandwidth limiter chunk by chunk, before each chunk is read.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from pyiceberg.io import FileIO

from lifecycle.bandwidth import Limiter
from lifecycle.errors import UnsafeDeleteError
from lifecycle.s3 import s3_client
from lifecycle.safety.paths import Schemes, location_prefix, parse, require_under

CHUNK = 8 * 1024 * 1024
_COPY_OBJECT_MAX = 5 * 1024**3


@dataclass(frozen=True)
class Copied:
    cold_uri: str
    checksum: str        # ETag on S3, sha256 of a local copy
    bytes: int
    storage_class: str | None


class ColdTier(Protocol):
    def copy(self, io: FileIO, source: str, relative: str) -> Copied: ...

    def holds(self, relative: str) -> bool: ...


def _split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


class S3ColdTier:
    def __init__(self, uri: str, storage_class: str, limiter: Limiter, client: Any) -> None:
        self.bucket, prefix = _split_s3(uri)
        self.prefix = prefix.strip("/")
        self.storage_class = storage_class
        self.limiter = limiter
        self.client = client

    def _key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def copy(self, io: FileIO, source: str, relative: str) -> Copied:
        key = self._key(relative)
        uri = f"s3://{self.bucket}/{key}"
        if source.startswith(("s3://", "s3a://", "s3n://")):
            src_bucket, src_key = _split_s3(source)
            size = int(self.client.head_object(Bucket=src_bucket, Key=src_key)["ContentLength"])
            if size < _COPY_OBJECT_MAX:
                out = self.client.copy_object(CopySource={"Bucket": src_bucket, "Key": src_key}, Bucket=self.bucket,
                                              Key=key, StorageClass=self.storage_class, MetadataDirective="COPY")
                etag = str(out["CopyObjectResult"]["ETag"]).strip('"')
            else:
                self.client.copy({"Bucket": src_bucket, "Key": src_key}, self.bucket, key,
                                 ExtraArgs={"StorageClass": self.storage_class})
                etag = str(self.client.head_object(Bucket=self.bucket, Key=key)["ETag"]).strip('"')
            return Copied(uri, etag, size, self.storage_class)
        inp = io.new_input(source)
        with inp.open() as src:   # streamed (multipart above 8 MiB), never held whole in memory
            reader = _ChargedReader(src, len(inp), self.limiter)
            self.client.upload_fileobj(reader, self.bucket, key, ExtraArgs={"StorageClass": self.storage_class})
        etag = str(self.client.head_object(Bucket=self.bucket, Key=key)["ETag"]).strip('"')
        return Copied(uri, etag, reader.read_bytes, self.storage_class)

    def holds(self, relative: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(relative))
            return True
        except self.client.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise


class LocalColdTier:
    def __init__(self, root: str, limiter: Limiter) -> None:
        self.root = Path(parse(root).path)
        self.limiter = limiter

    def _dest(self, relative: str) -> Path:
        """The copy's path, refused (UnsafeDeleteError) unless it lies inside the cold root: by the path
        identity (no `..`, no escape), and again after symlinks are resolved."""
        root = location_prefix(str(self.root))
        dest = require_under(f"{root.path}{relative}", root, Schemes())
        real_root = os.path.realpath(self.root)
        if not os.path.realpath(dest.path).startswith(real_root.rstrip("/") + "/"):
            raise UnsafeDeleteError(f"cold tier: {relative} resolves outside the cold root {self.root}")
        return Path(dest.path)

    def copy(self, io: FileIO, source: str, relative: str) -> Copied:
        dest = self._dest(relative)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".partial")
        digest = hashlib.sha256()
        size = 0
        inp = io.new_input(source)
        remaining = len(inp)
        with inp.open() as src, open(tmp, "wb") as out:
            while True:
                self.limiter.acquire(min(CHUNK, max(remaining, 1)), "copy")
                chunk = src.read(CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
                remaining -= len(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
        return Copied(str(dest), f"sha256:{digest.hexdigest()}", size, None)

    def holds(self, relative: str) -> bool:
        return self._dest(relative).is_file()


class _ChargedReader:
    """A read-only file object that charges the limiter before each read (what remains, at most the ask)."""

    def __init__(self, src: Any, size: int, limiter: Limiter) -> None:
        self._src, self._remaining, self._limiter = src, size, limiter
        self.read_bytes = 0

    def read(self, n: int = -1) -> bytes:
        ask = self._remaining if n is None or n < 0 else min(n, self._remaining)
        if ask > 0:
            self._limiter.acquire(ask, "copy")
        data: bytes = self._src.read(n if n is not None and n >= 0 else -1)
        self.read_bytes += len(data)
        self._remaining = max(0, self._remaining - len(data))
        return data


def cold_tier(uri: str, storage_class: str, limiter: Limiter, io_properties: dict[str, str]) -> ColdTier:
    if uri.startswith("s3://"):
        return S3ColdTier(uri, storage_class, limiter, s3_client(io_properties))
    return LocalColdTier(uri, limiter)
