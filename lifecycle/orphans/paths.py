"""Path normalisation and scheme/authority equivalence for the orphan scan.

Listed files and live-set paths are compared by their path component; when the paths are equal but the
scheme or authority differ, the comparison is refused (`UnsafeDeleteError`) unless the schemes are configured
as equivalent (`[orphans] equivalent_schemes = ["s3", "s3a", "s3n"]`). Guards that only ever protect more
(writers, staged outputs, the purge journal) compare without the scheme, which can only keep more files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lifecycle.errors import UnsafeDeleteError


@dataclass(frozen=True, slots=True)
class Uri:
    scheme: str       # "file", "s3", "s3a", ...
    authority: str    # bucket or host; "" for local files
    path: str         # starts with "/"

    @property
    def key(self) -> str:
        """Authority and path without the scheme (what the conservative guards compare)."""
        return self.authority + self.path

    def __str__(self) -> str:
        return f"{self.scheme}://{self.authority}{self.path}"


def parse(uri: str) -> Uri:
    """`s3://bucket/a/b`, `file:///a/b`, `file:/a/b` and `/a/b` (local) into scheme, authority, path."""
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        authority, slash, path = rest.partition("/")
        scheme = scheme.lower()
        if scheme == "file" and authority == "localhost":
            authority = ""
        return Uri(scheme, authority, slash + path if slash else "/")
    if uri.startswith("file:"):
        return Uri("file", "", "/" + uri[5:].lstrip("/"))
    if uri.startswith("/"):
        return Uri("file", "", uri)
    raise UnsafeDeleteError(f"path {uri!r}: not an absolute path or URI")


class Schemes:
    """Which schemes name the same store. Without configuration only identical schemes are equal."""

    def __init__(self, equivalent: Iterable[str] = ()) -> None:
        group = sorted({s.lower() for s in equivalent})
        self._canon = {s: group[0] for s in group}

    def canonical(self, scheme: str) -> str:
        return self._canon.get(scheme, scheme)

    def same_store(self, a: Uri, b: Uri) -> bool:
        return self.canonical(a.scheme) == self.canonical(b.scheme) and a.authority == b.authority


def location_prefix(location: str) -> Uri:
    """The table location with exactly one trailing slash in its path (so `t` never matches `t2/...`)."""
    loc = parse(location)
    return Uri(loc.scheme, loc.authority, loc.path.rstrip("/") + "/")


def is_under(uri: Uri, prefix: Uri, schemes: Schemes) -> bool:
    return schemes.same_store(uri, prefix) and uri.path.startswith(prefix.path)


def require_under(path: str, prefix: Uri, schemes: Schemes) -> Uri:
    """The parsed path, or UnsafeDeleteError if it lies outside the table location (the delete guard)."""
    uri = parse(path)
    if not is_under(uri, prefix, schemes) or "/../" in uri.path or uri.path.endswith("/.."):
        raise UnsafeDeleteError(f"refusing to delete {path}: outside the table location {prefix}")
    return uri


class LiveIndex:
    """The live set indexed by path component, to detect scheme/authority mismatches."""

    def __init__(self, live: Iterable[str], schemes: Schemes) -> None:
        self.schemes = schemes
        self._by_path: dict[str, Uri | list[Uri]] = {}
        for p in live:
            uri = parse(p)
            hit = self._by_path.get(uri.path)
            if hit is None:
                self._by_path[uri.path] = uri
            elif isinstance(hit, list):
                hit.append(uri)
            elif hit != uri:
                self._by_path[uri.path] = [hit, uri]

    def __len__(self) -> int:
        return len(self._by_path)

    def is_live(self, uri: Uri) -> bool:
        """True if the live set names this file; UnsafeDeleteError if it names the same path on a store
        that is not configured as equivalent (we cannot tell whether the listed file is live)."""
        hit = self._by_path.get(uri.path)
        if hit is None:
            return False
        uris = hit if isinstance(hit, list) else [hit]
        if any(self.schemes.same_store(uri, u) for u in uris):
            return True
        raise UnsafeDeleteError(
            f"scheme/authority mismatch: listed {uri} but the live set names {uris[0]}; refusing to decide."
            " Configure [orphans] equivalent_schemes if these schemes name the same store"
        )
