"""A file outside S3 copied to an S3 cold tier (moto's server on loopback): streamed in parts, every byte
charged to the limiter, the object byte-identical with the requested storage class."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import boto3
from pyiceberg.io.pyarrow import PyArrowFileIO

from lifecycle.bandwidth import TokenBucket
from lifecycle.expiration.coldtier import S3ColdTier


def test_a_local_file_streams_to_an_s3_cold_tier_in_parts_and_is_charged(
    tmp_path: Path, moto_endpoint: str, s3_bucket: str,
) -> None:
    data = os.urandom(20 * 1024 * 1024 + 123)          # above boto3's 8 MiB multipart threshold
    source = tmp_path / "data" / "part-0.parquet"
    source.parent.mkdir()
    source.write_bytes(data)
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    bucket = TokenBucket(10**12)
    tier = S3ColdTier(f"s3://{s3_bucket}/cold", "GLACIER_IR", bucket, client)

    copied = tier.copy(PyArrowFileIO(), f"file://{source}", "archive/t/data/part-0.parquet")

    assert copied.cold_uri == f"s3://{s3_bucket}/cold/archive/t/data/part-0.parquet"
    assert copied.bytes == len(data) and bucket.charged_bytes == len(data)
    assert copied.checksum.endswith("-3")               # a multipart ETag: 3 parts of 8 MiB, never one body
    obj = client.get_object(Bucket=s3_bucket, Key="cold/archive/t/data/part-0.parquet")
    assert hashlib.sha256(obj["Body"].read()).digest() == hashlib.sha256(data).digest()
    assert obj.get("StorageClass") == "GLACIER_IR"
    assert tier.holds("archive/t/data/part-0.parquet")
