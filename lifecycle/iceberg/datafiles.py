"""DataFile helpers around PyIceberg's footer reader."""

from __future__ import annotations

from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import parquet_file_to_data_file
from pyiceberg.manifest import DataFile
from pyiceberg.table.metadata import TableMetadata


def data_file_from_parquet(
    io: FileIO, metadata: TableMetadata, path: str, sort_order_id: int | None = None
) -> DataFile:
    """Read a parquet footer into a DataFile with stats and partition (inferred from min/max).

    PyIceberg 0.12 drops the spec id passed to DataFile.from_args; set it so deletes and overwrites that
    group files by spec work.
    """
    df = parquet_file_to_data_file(io, metadata, path)
    df.spec_id = metadata.default_spec_id
    if sort_order_id is not None:
        df[15] = sort_order_id  # DataFile.sort_order_id is a read-only property over position 15
    return df
