"""Pure classification of listed files: live, kept by a guard, or an orphan candidate.

A file is a candidate only if it is under the table location, unreachable from the live set, not hidden,
not staged by an in-flight compaction or manifest rewrite, not queued in the purge journal, not under an
active writer's in-progress paths, and older than the minimum age. When several guards apply the first in
`GUARDS` order is the one credited.

Hidden, as Apache Iceberg's own orphan scan treats it (its FileSystemWalker / HiddenPathFilter): a file whose
path below the table location has a segment (folder or file name) starting with `.` or `_` is never an orphan
(Hadoop's `.<name>.crc` checksum sidecars, `_SUCCESS` markers, `_temporary/` and `.staging` folders), except a
segment `<field>=...` where `<field>` is a partition field of one of the table's specs whose name itself
starts with `.` or `_` (the partition folders of such a field are ordinary data folders).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from lifecycle.orphans.listing import ListedFile
from lifecycle.safety.paths import LiveIndex, Schemes, Uri, is_under, parse

LIVE = "live"
OUTSIDE = "outside-location"
HIDDEN = "hidden"
STAGED = "compaction-staged"
PURGE = "purge-queued"
WRITER = "active-writer"
YOUNG = "too-young"
CANDIDATE = "candidate"
GUARDS = (OUTSIDE, LIVE, HIDDEN, STAGED, PURGE, WRITER, YOUNG)
HIDDEN_MARKS = (".", "_")


@dataclass(frozen=True)
class Guards:
    """Everything a classification needs, captured at one moment."""

    location: Uri                  # the table location, with a trailing slash
    live: LiveIndex
    schemes: Schemes
    staged: frozenset[str]         # Uri.key of compaction / manifest-rewrite staged outputs
    purge: frozenset[str]          # Uri.key of files queued in the purge journal
    writer_prefixes: tuple[str, ...]  # Uri.key of active writers' in-progress paths (files or prefixes)
    cutoff: float | None           # epoch seconds: only files modified strictly before are old enough
    hidden_partitions: tuple[str, ...] = ()  # "<field>=" of partition fields named with a leading . or _

    @staticmethod
    def keys(paths: Iterable[str]) -> frozenset[str]:
        return frozenset(parse(p).key for p in paths)


def hidden_partition_prefixes(field_names: Iterable[str]) -> tuple[str, ...]:
    """The folder-name prefixes exempt from the hidden rule: `<field>=` for each partition field (of any
    spec the table has had) whose name starts with `.` or `_`."""
    return tuple(sorted({f"{name}=" for name in field_names if name.startswith(HIDDEN_MARKS)}))


def is_hidden(uri: Uri, location: Uri, partitions: tuple[str, ...] = ()) -> bool:
    """True if a segment of the path below `location` starts with `.` or `_` and is not a partition
    folder of a field so named. `uri` must be under `location`."""
    for segment in uri.path[len(location.path):].split("/"):
        if segment.startswith(HIDDEN_MARKS) and not (partitions and segment.startswith(partitions)):
            return True
    return False


def classify_uri(uri: Uri, mtime: float | None, g: Guards) -> str:
    if not is_under(uri, g.location, g.schemes):
        return OUTSIDE
    if g.live.is_live(uri):
        return LIVE
    if is_hidden(uri, g.location, g.hidden_partitions):
        return HIDDEN
    key = uri.key
    if key in g.staged:
        return STAGED
    if key in g.purge:
        return PURGE
    if any(key.startswith(p) for p in g.writer_prefixes):
        return WRITER
    if g.cutoff is not None and (mtime is None or mtime >= g.cutoff):
        return YOUNG
    return CANDIDATE


def classify(f: ListedFile, g: Guards) -> str:
    return classify_uri(parse(f.path), f.mtime, g)


@dataclass
class Classification:
    listed: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys((*GUARDS, CANDIDATE), 0))
    candidates: list[ListedFile] = field(default_factory=list)
    candidate_bytes: int = 0

    def kept(self) -> dict[str, int]:
        """Unreachable files each guard kept (live files are not 'kept', they are live)."""
        return {g: self.counts[g] for g in GUARDS if g != LIVE}


def nested_table_root(f: ListedFile, location: Uri) -> str | None:
    """The root of another table nested under this location, if `f` is that table's metadata file."""
    if not f.path.endswith(".metadata.json"):
        return None
    parent, _, _ = f.path.rpartition("/")
    root, _, leaf = parent.rpartition("/")
    uri = parse(root + "/")
    if leaf != "metadata" or uri.path == location.path:
        return None
    return root + "/"


def classify_all(files: Iterable[ListedFile], g: Guards) -> Classification:
    """Stream the listing through the guards; only candidates are retained. Files under another table
    nested in this location (a folder with its own `metadata/*.metadata.json`) are never candidates:
    they are credited to the outside-location guard."""
    out = Classification()
    nested: set[str] = set()
    for f in files:
        out.listed += 1
        label = classify(f, g)
        root = nested_table_root(f, g.location)
        if root is not None:
            nested.add(root)
        out.counts[label] += 1
        if label == CANDIDATE:
            out.candidates.append(f)
    if nested:
        roots = tuple(nested)
        foreign = [f for f in out.candidates if f.path.startswith(roots)]
        out.candidates = [f for f in out.candidates if not f.path.startswith(roots)]
        out.counts[CANDIDATE] -= len(foreign)
        out.counts[OUTSIDE] += len(foreign)
    out.candidate_bytes = sum(f.size for f in out.candidates)
    return out
