"""The one path identity: when two path strings name the same file, and when a path lies inside a location.

Every comparison of paths in the product goes through here: the live set against a listing, a purge or
staged file against the table location, a journaled path against the live set, a cold-tier destination
against its root.

- Local paths are normalised: `/a/b`, `file:/a/b`, `file:///a/b` and `file://localhost/a/b` are one file;
  `//` and `/./` collapse; a `..` segment is resolved only where the file system agrees (the lexical and the
  real path are the same), otherwise the path cannot be decided and `AmbiguousPathError` is raised.
  A `%xx` escape is ambiguous on a local disk (Java's Hadoop paths decode it, PyIceberg's file IO does not):
  both readings are identities of the path (`keys`), so a live set protects both, and a delete refuses it.
- Object-store keys are literal (`s3://b/a//c` and `s3://b/a/c` are two objects); schemes name the same
  store only when configured as equivalent (`[orphans] equivalent_schemes`, e.g. s3, s3a, s3n).
- Containment (`is_under`) needs the same store, the location's path as a whole-segment prefix, and no `..`
  segment left; `require_under` is the guard in front of every delete.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote

from lifecycle.errors import UnsafeDeleteError


class AmbiguousPathError(UnsafeDeleteError):
    """Two readings of a path cannot be told apart: refuse rather than guess (delete nothing)."""


@dataclass(frozen=True, slots=True)
class Uri:
    scheme: str       # "file", "s3", "s3a", ...
    authority: str    # bucket or host; "" for local files
    path: str         # starts with "/"

    @property
    def key(self) -> str:
        """Authority and path without the scheme (what the conservative guards compare)."""
        return self.authority + self.path

    @property
    def local(self) -> bool:
        return self.scheme == "file"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.authority}{self.path}"


def _split(uri: str) -> Uri:
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        authority, slash, path = rest.partition("/")
        scheme = scheme.lower()
        if scheme == "file" and authority == "localhost":
            authority = ""
        return Uri(scheme, authority, slash + path if slash else "/")
    if uri[:5].lower() == "file:":
        return Uri("file", "", "/" + uri[5:].lstrip("/"))
    if uri.startswith("/"):
        return Uri("file", "", uri)
    raise UnsafeDeleteError(f"path {uri!r}: not an absolute path or URI")


def _segments_dotdot(path: str) -> bool:
    return any(seg == ".." for seg in path.split("/"))


def _normal_local(path: str, original: str) -> str:
    """`//` and `/./` collapsed; `..` resolved only where the file system says the same."""
    trailing = path.endswith("/") and path != "/"
    lexical = posixpath.normpath(path)
    if lexical.startswith("//"):
        lexical = "/" + lexical.lstrip("/")
    if _segments_dotdot(path) and os.path.realpath(path) != os.path.realpath(lexical):
        raise AmbiguousPathError(f"path {original!r}: '..' through a symbolic link; refusing to decide")
    return lexical + "/" if trailing and lexical != "/" else lexical


def parse(uri: str) -> Uri:
    """The normalised form of a path (see the module docstring). Object-store keys stay literal."""
    raw = _split(uri)
    if raw.local:
        return Uri("file", raw.authority, _normal_local(raw.path, uri))
    return raw


def readings(uri: str) -> tuple[Uri, ...]:
    """Every file a path may name: one, or two for a local path with a `%xx` escape (raw and decoded)."""
    first = parse(uri)
    if first.local and "%" in first.path:
        decoded = Uri("file", first.authority, _normal_local(unquote(first.path), uri))
        if decoded != first:
            return first, decoded
    return (first,)


class Schemes:
    """Which schemes name the same store. Without configuration only identical schemes are equal."""

    def __init__(self, equivalent: Iterable[str] = ()) -> None:
        group = sorted({s.lower() for s in equivalent})
        self._canon = {s: group[0] for s in group}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schemes) and other._canon == self._canon

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._canon.items())))

    def canonical(self, scheme: str) -> str:
        return self._canon.get(scheme, scheme)

    def same_store(self, a: Uri, b: Uri) -> bool:
        return self.canonical(a.scheme) == self.canonical(b.scheme) and a.authority == b.authority

    def key(self, uri: Uri) -> str:
        return f"{self.canonical(uri.scheme)}://{uri.authority}{uri.path}"


def location_prefix(location: str) -> Uri:
    """The table location with exactly one trailing slash in its path (so `t` never matches `t2/...`)."""
    loc = parse(location)
    return Uri(loc.scheme, loc.authority, loc.path.rstrip("/") + "/")


def is_under(uri: Uri, prefix: Uri, schemes: Schemes) -> bool:
    return (schemes.same_store(uri, prefix) and uri.path.startswith(prefix.path)
            and not _segments_dotdot(uri.path))


def require_under(path: str, prefix: Uri, schemes: Schemes) -> Uri:
    """The parsed path, or UnsafeDeleteError if it may lie outside the location (the guard before a delete).
    A local path with a `%xx` escape is refused too: which file it names is not decidable."""
    uri = parse(path)
    if not is_under(uri, prefix, schemes) or _segments_dotdot(_split(path).path):
        raise UnsafeDeleteError(f"refusing to delete {path}: outside the table location {prefix}")
    if len(readings(path)) > 1:
        raise AmbiguousPathError(f"refusing to delete {path}: its %-escapes name two different files")
    return uri


def relative_to(path: str, prefix: Uri, schemes: Schemes) -> str:
    """The part of `path` below the location (for the cold tier's object names); refuses outside paths."""
    return require_under(path, prefix, schemes).path[len(prefix.path):]


class PathSet:
    """A set of paths compared by identity: `p in s` when some reading of `p` names a member's file."""

    def __init__(self, paths: Iterable[str] = (), schemes: Schemes | None = None) -> None:
        self.schemes = schemes or Schemes()
        self._keys: set[str] = set()
        for p in paths:
            self.add(p)

    def add(self, path: str) -> None:
        self._keys.update(self.schemes.key(u) for u in readings(path))

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and any(self.schemes.key(u) in self._keys for u in readings(path))

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)


class LiveIndex:
    """The live set indexed by path component, to detect scheme/authority mismatches."""

    def __init__(self, live: Iterable[str], schemes: Schemes) -> None:
        self.schemes = schemes
        self._by_path: dict[str, Uri | list[Uri]] = {}
        for p in live:
            for uri in readings(p):
                hit = self._by_path.get(uri.path)
                if hit is None:
                    self._by_path[uri.path] = uri
                elif isinstance(hit, list):
                    if uri not in hit:
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
