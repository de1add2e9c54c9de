"""The delete-file half of a rewrite commit: delete files that no longer apply to any live data file (dangling,
lifecycle.compaction.mor_index) are removed in the same `replace` snapshot, as Iceberg's rewrite_data_files
with remove-dangling-deletes leaves the table (there in a second commit, here in the rewrite itself).

PyIceberg 0.12's overwrite producer records DELETED entries for data files only and rewrites manifests with a
data-content writer. Here each delete manifest that holds a dangling delete file is rewritten as a delete
manifest (content `deletes`): the dangling files as DELETED entries of this snapshot, the others EXISTING with
their sequence numbers, as Iceberg's own manifest filtering does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pyiceberg.manifest import ManifestContent, ManifestEntry, ManifestFile, ManifestWriterV2
from pyiceberg.schema import Schema
from pyiceberg.types import IcebergType, IntegerType, ListType, NestedField, StructType

EQUALITY_IDS = 135   # data_file.equality_ids (its element: 136)


class DeleteManifestWriter(ManifestWriterV2):
    """A format-2 manifest writer for delete files. `equality_ids` are written as the spec's list<int>:
    PyIceberg 0.12 declares list<long>, which Iceberg Java cannot read (ClassCastException in BaseFile)."""

    def content(self) -> ManifestContent:
        return ManifestContent.DELETES

    @property
    def _meta(self) -> dict[str, str]:
        return {**super()._meta, "content": "deletes"}

    def _with_partition(self, format_version: Any) -> Schema:
        entry = super()._with_partition(format_version)
        return Schema(*[NestedField(2, f.name, _int_equality_ids(f.field_type), required=f.required)
                        if f.field_id == 2 else f for f in entry.fields])


def _int_equality_ids(data_file: IcebergType) -> StructType:
    assert isinstance(data_file, StructType), data_file   # field 2 of a manifest entry is the data_file struct
    return StructType(*[NestedField(EQUALITY_IDS, f.name, ListType(EQUALITY_IDS + 1, IntegerType(), True),
                                    required=f.required, doc=f.doc)
                        if f.field_id == EQUALITY_IDS else f for f in data_file.fields])


def drop_deletes(producer: Any, manifests: Sequence[ManifestFile],
                 dangling: Sequence[tuple[ManifestEntry, str]]) -> list[ManifestFile]:
    """`manifests` (the new snapshot's, from the producer) with the dangling delete files marked DELETED.

    `producer` is the snapshot producer (its snapshot id, schema, specs, compression and manifest outputs)."""
    doomed: dict[str, set[str]] = {}
    for entry, manifest in dangling:
        doomed.setdefault(manifest, set()).add(entry.data_file.file_path)
    out, found = [], 0
    for m in manifests:
        paths = doomed.get(m.manifest_path)
        if not paths or m.content != ManifestContent.DELETES:
            out.append(m)
            continue
        with DeleteManifestWriter(producer.spec(m.partition_spec_id), producer.schema(),
                                  producer.new_manifest_output(), producer.snapshot_id,
                                  producer._compression) as writer:
            for e in m.fetch_manifest_entry(producer._io, discard_deleted=True):
                if e.data_file.file_path in paths:
                    writer.delete(e)
                    found += 1
                else:
                    writer.existing(e)
        out.append(writer.to_manifest_file())
    if found != len(dangling):
        raise ValueError(f"{len(dangling) - found} dangling delete file(s) not found in the snapshot's manifests")
    return out


def removed_per_group(removed: Sequence[str], deletes: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """How many of the removed delete files each committed group accounts for: the first group (by key) whose
    inputs they applied to, else (a delete that was already dangling) the first group."""
    keys = sorted(deletes)
    out = dict.fromkeys(keys, 0)
    if not keys:
        return out
    owner = {}
    for key in reversed(keys):
        owner.update(dict.fromkeys(deletes[key], key))
    for path in removed:
        out[owner.get(path, keys[0])] += 1
    return out
