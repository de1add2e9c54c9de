"""The one way any job deletes files: every path checked first, `gc.enabled` honoured, missing means done.

- Every path is checked against the table location with the path identity BEFORE anything is deleted
  (`UnsafeDeleteError` otherwise, nothing deleted); on a local disk each file's folder must also resolve,
  symlinks followed, inside the location.
- A table with `gc.enabled=false` has no file deleted (`GcDisabledError`), as in Iceberg; the only
  exception is `own_staged=True`: files this product wrote for a commit that never landed, which belong to
  no table.
- A file that is already gone counts as deleted (a local FileNotFoundError, an S3 NoSuchKey; S3 cannot tell
  the difference anyway: deleting a missing key succeeds).
- Local files are unlinked; S3 objects are deleted with DeleteObjects, up to 1,000 keys a request; any other
  scheme goes through the table's PyIceberg FileIO.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lifecycle.errors import GcDisabledError, UnsafeDeleteError
from lifecycle.s3 import s3_client
from lifecycle.safety.paths import Schemes, Uri, location_prefix, require_under

S3_SCHEMES = frozenset({"s3", "s3a", "s3n"})
S3_MAX_KEYS = 1000
_S3_MISSING = ("NoSuchKey", "404", "NotFound")


@dataclass
class DeleteOutcome:
    deleted: list[str] = field(default_factory=list)        # removed now (or gone, on S3)
    already_gone: list[str] = field(default_factory=list)   # not found: counts as deleted
    failed: dict[str, str] = field(default_factory=dict)    # path -> error; stays journaled

    @property
    def done(self) -> list[str]:
        return self.deleted + self.already_gone


def gc_enabled(properties: Mapping[str, str]) -> bool:
    return str(properties.get("gc.enabled", "true")).strip().lower() != "false"


def check_gc_enabled(properties: Mapping[str, str], identifier: str, job: str) -> None:
    """GcDisabledError when the table sets `gc.enabled=false`: no job may delete its files."""
    if not gc_enabled(properties):
        raise GcDisabledError(f"{job}: table {identifier} has gc.enabled=false; refusing to delete its files")


@dataclass(frozen=True)
class TableFiles:
    """What a delete needs to know of a table: its location, its properties and its FileIO."""

    identifier: str
    location: str
    properties: Mapping[str, str]
    io: Any
    schemes: Schemes = field(default_factory=Schemes)

    @staticmethod
    def of(table: Any, identifier: str, schemes: Schemes | None = None) -> TableFiles:
        return TableFiles(identifier, table.location(), dict(table.properties), table.io, schemes or Schemes())

    @property
    def prefix(self) -> Uri:
        return location_prefix(self.location)


def delete_files(paths: Sequence[str], table: TableFiles, job: str, own_staged: bool = False) -> DeleteOutcome:
    """Delete `paths` of one table (see the module docstring); failures are reported, not raised."""
    if not own_staged:
        check_gc_enabled(table.properties, table.identifier, job)
    prefix = table.prefix
    uris = [(p, require_under(p, prefix, table.schemes)) for p in paths]  # all checked before any delete
    out = DeleteOutcome()
    if not uris:
        return out
    if prefix.scheme in S3_SCHEMES:
        _delete_s3(uris, prefix, dict(table.io.properties), out)
        return out
    if prefix.scheme == "file":
        _check_real_folders([uri for _, uri in uris], prefix)
    for path, uri in uris:
        try:
            if prefix.scheme == "file":
                os.unlink(uri.path)
            else:
                table.io.delete(path)
            out.deleted.append(path)
        except FileNotFoundError:
            out.already_gone.append(path)
        except Exception as exc:
            out.failed[path] = f"{type(exc).__name__}: {exc}"
    return out


def _delete_s3(uris: Sequence[tuple[str, Uri]], prefix: Uri, properties: Mapping[str, Any],
               out: DeleteOutcome) -> None:
    client = s3_client(properties)
    for start in range(0, len(uris), S3_MAX_KEYS):
        chunk = uris[start:start + S3_MAX_KEYS]
        by_key = {uri.path.lstrip("/"): path for path, uri in chunk}
        resp = client.delete_objects(
            Bucket=prefix.authority,
            Delete={"Objects": [{"Key": k} for k in by_key], "Quiet": True},
        )
        errors = {e["Key"]: (str(e.get("Code")), str(e.get("Message"))) for e in resp.get("Errors", ())}
        for key, path in by_key.items():
            if key not in errors:
                out.deleted.append(path)
            elif errors[key][0] in _S3_MISSING:
                out.already_gone.append(path)
            else:
                out.failed[path] = f"{errors[key][0]}: {errors[key][1]}"


def _check_real_folders(uris: Sequence[Uri], location: Uri) -> None:
    """Every file's folder, symlinks resolved, is inside the location (checked before any unlink)."""
    root = os.path.realpath(location.path).rstrip("/") + "/"
    for folder in {os.path.dirname(u.path) for u in uris}:
        real = os.path.realpath(folder) + "/"
        if not real.startswith(root):
            raise UnsafeDeleteError(f"refusing to delete under {folder}: it resolves outside {location}")
