"""Write the new manifests: every live entry of the base snapshot's data manifests, as EXISTING (snapshot id
and sequence numbers preserved), sorted by partition and cut when a manifest reaches the target size.

Each manifest is journaled (`stage-manifest`, pending) before it is created and marked written once closed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any, cast, get_args

from pyiceberg.avro.codecs import CODEC_MAPPING_ICEBERG_TO_AVRO, AvroCompressionCodec
from pyiceberg.manifest import ManifestContent, ManifestEntry, ManifestFile, write_manifest
from pyiceberg.table import Table

from lifecycle.errors import ConfigError
from lifecycle.faults import crash_point
from lifecycle.jobs.base import JobContext
from lifecycle.manifests.plan import JOB, ManifestPlan
from lifecycle.state.models import PENDING, STAGE_MANIFEST, WRITTEN, NewEntry

STAGE_KIND = STAGE_MANIFEST


def _partition_key(entry: ManifestEntry) -> tuple[Any, ...]:
    record = entry.data_file.partition
    values = [record[i] for i in range(len(record))] if record is not None else []
    return (*((1, "") if v is None else (0, v) for v in values), (0, entry.data_file.file_path))


def read_entries(ctx: JobContext, table: Table, manifests: list[ManifestFile]) -> dict[int, list[ManifestEntry]]:
    """Live entries of the data manifests, by spec id, sorted by partition then path."""
    by_spec: dict[int, list[ManifestEntry]] = defaultdict(list)
    for mf in manifests:
        if mf.content != ManifestContent.DATA:
            continue
        ctx.limiter.acquire(mf.manifest_length, "read")
        by_spec[mf.partition_spec_id].extend(mf.fetch_manifest_entry(table.io, discard_deleted=True))
    for entries in by_spec.values():
        entries.sort(key=_partition_key)
    return dict(by_spec)


def avro_codec(properties: Mapping[str, str]) -> AvroCompressionCodec:
    """The table's `write.avro.compression-codec` for the manifests we write (gzip, PyIceberg's name for deflate,
    by default); an unknown codec is a configuration error."""
    name = properties.get("write.avro.compression-codec", "gzip").lower()
    codec = CODEC_MAPPING_ICEBERG_TO_AVRO.get(name, name)
    if codec not in get_args(AvroCompressionCodec):
        raise ConfigError(f"table property write.avro.compression-codec: unknown codec {codec!r}")
    return cast(AvroCompressionCodec, codec)


def manifest_dir(table: Table) -> str:
    return str(table.metadata_location).rsplit("/", 1)[0]


def write_manifests(ctx: JobContext, table: Table, plan: ManifestPlan, plan_id: str, snapshot_id: int,
                    entries: dict[int, list[ManifestEntry]]) -> list[ManifestFile]:
    meta = table.metadata
    specs = meta.specs()
    schema = meta.schema()
    compression = avro_codec(meta.properties)
    base = manifest_dir(table)
    out: list[ManifestFile] = []
    for spec_id in sorted(entries):
        pending = entries[spec_id]
        pos = 0
        while pos < len(pending):
            ctx.checkpoint(JOB)
            path = f"{base}/{plan_id}-rm-{len(out):05d}.avro"
            ctx.store.add_entries(plan_id, plan.table, STAGE_KIND, [NewEntry(path, info={"spec_id": spec_id})])
            ctx.limiter.acquire(plan.target_bytes, "write")
            with write_manifest(format_version=meta.format_version, spec=specs[spec_id], schema=schema,
                                output_file=table.io.new_output(path), snapshot_id=snapshot_id,
                                avro_compression=compression) as writer:
                while pos < len(pending):
                    writer.existing(pending[pos])
                    pos += 1
                    if writer.tell() >= plan.target_bytes:
                        break
            mf = writer.to_manifest_file()
            out.append(mf)
            ids = [e.entry_id for e in ctx.store.entries(plan_id=plan_id, kind=STAGE_KIND, states=[PENDING])
                   if e.path == path]
            ctx.store.transition_entries(ids, PENDING, WRITTEN, info={"bytes": mf.manifest_length})
            crash_point("rewrite-manifests.after-stage")
    return out
