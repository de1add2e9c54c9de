"""One boto3 S3 client factory for every job that talks to S3 directly (orphan listing and deletes, the
cold tier): the catalog's PyIceberg `s3.*` FileIO properties (endpoint, keys, region, addressing) where
set, else the standard AWS environment and credential chain (`AWS_ENDPOINT_URL_S3` included)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any


def s3_client(properties: Mapping[str, Any]) -> Any:
    import boto3
    from botocore.config import Config

    endpoint = properties.get("s3.endpoint") or os.environ.get("AWS_ENDPOINT_URL_S3") or None
    kwargs: dict[str, Any] = {"endpoint_url": endpoint}
    for prop, arg in (("s3.access-key-id", "aws_access_key_id"), ("s3.secret-access-key", "aws_secret_access_key"),
                      ("s3.session-token", "aws_session_token"), ("s3.region", "region_name")):
        if properties.get(prop):
            kwargs[arg] = properties[prop]
    virtual = str(properties.get("s3.force-virtual-addressing", "false")).lower() == "true"
    style = "virtual" if virtual else ("path" if endpoint else "auto")   # custom endpoints (MinIO, moto): path
    s3_options: Any = {"addressing_style": style}   # botocore's stubs want a TypedDict
    config = Config(s3=s3_options, retries={"max_attempts": 5, "mode": "standard"})
    return boto3.client("s3", config=config, **kwargs)
