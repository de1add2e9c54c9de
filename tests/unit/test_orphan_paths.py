"""Path normalisation, location containment and scheme/authority equivalence for the orphan scan."""

from __future__ import annotations

import pytest

from lifecycle.errors import UnsafeDeleteError
from lifecycle.orphans.paths import LiveIndex, Schemes, Uri, is_under, location_prefix, parse, require_under


def test_parse_forms() -> None:
    assert parse("s3://bucket/t/data/a.parquet") == Uri("s3", "bucket", "/t/data/a.parquet")
    assert parse("S3A://bucket/t") == Uri("s3a", "bucket", "/t")
    assert parse("file:///tmp/t/a") == Uri("file", "", "/tmp/t/a")
    assert parse("file:/tmp/t/a") == Uri("file", "", "/tmp/t/a")
    assert parse("file://localhost/tmp/t/a") == Uri("file", "", "/tmp/t/a")
    assert parse("/tmp/t/a") == Uri("file", "", "/tmp/t/a")
    with pytest.raises(UnsafeDeleteError):
        parse("relative/path")


def test_location_prefix_never_matches_a_sibling_table() -> None:
    loc = location_prefix("s3://b/wh/t/")
    plain = Schemes()
    assert is_under(parse("s3://b/wh/t/data/x"), loc, plain)
    assert not is_under(parse("s3://b/wh/t2/data/x"), loc, plain)
    assert not is_under(parse("s3://other/wh/t/data/x"), loc, plain)
    assert not is_under(parse("s3a://b/wh/t/data/x"), loc, plain)
    assert is_under(parse("s3a://b/wh/t/data/x"), loc, Schemes(["s3", "s3a", "s3n"]))


def test_require_under_refuses_outside_and_dot_dot() -> None:
    loc = location_prefix("file:///wh/t")
    assert require_under("/wh/t/data/a", loc, Schemes()).path == "/wh/t/data/a"
    for bad in ("/wh/other/a", "/wh/t/../other/a", "s3://b/wh/t/a"):
        with pytest.raises(UnsafeDeleteError, match="outside the table location"):
            require_under(bad, loc, Schemes())


def test_live_index_mismatch_is_an_error_by_default() -> None:
    idx = LiveIndex(["s3a://b/t/data/a.parquet", "s3://b/t/data/b.parquet"], Schemes())
    assert idx.is_live(parse("s3://b/t/data/b.parquet"))
    assert not idx.is_live(parse("s3://b/t/data/c.parquet"))
    with pytest.raises(UnsafeDeleteError, match="equivalent_schemes"):
        idx.is_live(parse("s3://b/t/data/a.parquet"))
    with pytest.raises(UnsafeDeleteError, match="mismatch"):
        LiveIndex(["s3://other/t/data/b.parquet"], Schemes()).is_live(parse("s3://b/t/data/b.parquet"))


def test_live_index_with_equivalent_schemes() -> None:
    idx = LiveIndex(["s3a://b/t/data/a.parquet", "s3n://b/t/data/a.parquet"], Schemes(["s3", "s3a", "s3n"]))
    assert idx.is_live(parse("s3://b/t/data/a.parquet"))
    with pytest.raises(UnsafeDeleteError):  # authority still has to match
        idx.is_live(parse("s3://c/t/data/a.parquet"))


def test_local_forms_are_the_same_store() -> None:
    idx = LiveIndex(["file:///wh/t/data/a"], Schemes())
    assert idx.is_live(parse("/wh/t/data/a"))


def test_equivalent_schemes_setting() -> None:
    from lifecycle.errors import ConfigError
    from lifecycle.settings import from_mapping

    assert from_mapping({}, env={}).orphans.equivalent_schemes == ()
    s = from_mapping({"orphans": {"equivalent_schemes": ["s3", "s3a", "s3n"]}}, env={})
    assert s.orphans.equivalent_schemes == ("s3", "s3a", "s3n")
    with pytest.raises(ConfigError, match=r"orphans\.equivalent_schemes"):
        from_mapping({"orphans": {"equivalent_schemes": "s3"}}, env={})
    with pytest.raises(ConfigError, match=r"orphans\.prefix_mode"):
        from_mapping({"orphans": {"prefix_mode": "ignore"}}, env={})
