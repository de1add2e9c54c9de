"""Batched deletes: S3 DeleteObjects (up to 1,000 keys a request) or local unlink.

Every path is checked against the table location first (`UnsafeDeleteError` otherwise, before anything
is deleted). A file that is already gone counts as deleted (S3 cannot tell the difference: a delete of a
missing key succeeds).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lifecycle.errors import UnsafeDeleteError
from lifecycle.orphans.listing import S3_SCHEMES
from lifecycle.orphans.paths import Schemes, Uri, require_under
from lifecycle.s3 import s3_client

S3_MAX_KEYS = 1000


@dataclass
class DeleteOutcome:
    deleted: list[str] = field(default_factory=list)        # removed now (or gone, on S3)
    already_gone: list[str] = field(default_factory=list)   # not found: counts as deleted
    failed: dict[str, str] = field(default_factory=dict)    # path -> error; stays pending


def delete_files(paths: Sequence[str], location: Uri, schemes: Schemes,
                 properties: Mapping[str, Any]) -> DeleteOutcome:
    uris = [(p, require_under(p, location, schemes)) for p in paths]  # all checked before any delete
    out = DeleteOutcome()
    if not uris:
        return out
    if location.scheme == "file":
        _check_real_folders([uri for _, uri in uris], location)
        for path, uri in uris:
            try:
                os.unlink(uri.path)
                out.deleted.append(path)
            except FileNotFoundError:
                out.already_gone.append(path)
            except OSError as exc:
                out.failed[path] = f"{type(exc).__name__}: {exc}"
        return out
    if location.scheme not in S3_SCHEMES:
        raise ValueError(f"cannot delete under {location}: unsupported scheme")
    client = s3_client(properties)
    for start in range(0, len(uris), S3_MAX_KEYS):
        chunk = uris[start:start + S3_MAX_KEYS]
        by_key = {uri.path.lstrip("/"): path for path, uri in chunk}
        resp = client.delete_objects(
            Bucket=location.authority,
            Delete={"Objects": [{"Key": k} for k in by_key], "Quiet": True},
        )
        errors = {e["Key"]: f"{e.get('Code')}: {e.get('Message')}" for e in resp.get("Errors", ())}
        for key, path in by_key.items():
            if key in errors:
                if errors[key].startswith("NoSuchKey"):
                    out.already_gone.append(path)
                else:
                    out.failed[path] = errors[key]
            else:
                out.deleted.append(path)
    return out


def _check_real_folders(uris: Sequence[Uri], location: Uri) -> None:
    """Every file's folder, symlinks resolved, is inside the location (checked before any unlink)."""
    root = os.path.realpath(location.path).rstrip("/") + "/"
    for folder in {os.path.dirname(u.path) for u in uris}:
        real = os.path.realpath(folder) + "/"
        if not real.startswith(root):
            raise UnsafeDeleteError(f"refusing to delete under {folder}: it resolves outside {location}")
