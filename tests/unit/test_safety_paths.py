"""The one path identity: normalisation, containment, scheme/authority equivalence, ambiguity refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifecycle.errors import UnsafeDeleteError
from lifecycle.safety.paths import (
    AmbiguousPathError,
    LiveIndex,
    PathSet,
    Schemes,
    Uri,
    is_under,
    location_prefix,
    parse,
    readings,
    relative_to,
    require_under,
)


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


def test_local_forms_normalise_to_one_file() -> None:
    same = ["/wh/t/data/f.parquet", "file:/wh/t/data/f.parquet", "file:///wh/t/data/f.parquet",
            "file://localhost/wh/t/data/f.parquet", "file:///wh/t/data//f.parquet", "file:///wh/t/./data/f.parquet",
            "file:///wh/t/data/x/../f.parquet"]
    assert {parse(p) for p in same} == {Uri("file", "", "/wh/t/data/f.parquet")}
    live = PathSet(["file:/wh/t/data//f.parquet"])
    assert "/wh/t/data/f.parquet" in live and "file:///wh/t/data/g.parquet" not in live


def test_object_store_keys_stay_literal() -> None:
    assert parse("s3://b/t/a//c") != parse("s3://b/t/a/c")
    assert "s3://b/t/a/c" not in PathSet(["s3://b/t/a//c"])
    assert "s3a://b/t/a/c" in PathSet(["s3://b/t/a/c"], Schemes(["s3", "s3a"]))
    assert "s3a://b/t/a/c" not in PathSet(["s3://b/t/a/c"])


def test_percent_escapes_are_two_readings_protected_both_ways_and_never_deleted() -> None:
    assert readings("file:///wh/t/data/a%20b.parquet") == (Uri("file", "", "/wh/t/data/a%20b.parquet"),
                                                           Uri("file", "", "/wh/t/data/a b.parquet"))
    live = LiveIndex(["file:///wh/t/data/a%20b.parquet"], Schemes())
    assert live.is_live(parse("/wh/t/data/a b.parquet")) and live.is_live(parse("/wh/t/data/a%20b.parquet"))
    with pytest.raises(AmbiguousPathError):
        require_under("file:///wh/t/data/a%20b.parquet", location_prefix("file:///wh/t"), Schemes())
    assert len(readings("s3://b/t/a%20b")) == 1     # an object key is what it says


def test_dot_dot_through_a_symlink_cannot_be_decided(tmp_path: Path) -> None:
    (tmp_path / "real" / "deep").mkdir(parents=True)
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "link").symlink_to(tmp_path / "real" / "deep")
    with pytest.raises(AmbiguousPathError):
        parse(f"file://{tmp_path}/t/link/../f.parquet")    # lexically t/f.parquet, really real/f.parquet
    assert parse(f"file://{tmp_path}/t/plain/../f.parquet").path == f"{tmp_path}/t/f.parquet"


def test_containment_refuses_dot_dot_and_prefix_siblings() -> None:
    loc = location_prefix("file:///wh/t")
    assert relative_to("file:/wh/t/data/f.parquet", loc, Schemes()) == "data/f.parquet"
    for bad in ("file:///wh/t/metadata/../../precious", "file:///wh/t2/f", "/wh/t/../t2/f"):
        with pytest.raises(UnsafeDeleteError):
            relative_to(bad, loc, Schemes())


def test_local_cold_tier_refuses_destinations_outside_its_root(tmp_path: Path) -> None:
    from lifecycle.bandwidth import TokenBucket
    from lifecycle.expiration.coldtier import LocalColdTier

    tier = LocalColdTier(str(tmp_path / "cold"), TokenBucket(10**12))
    for relative in ("ns/t/../../../precious", "../escape", "ns/t/metadata/../../../../x"):
        with pytest.raises(UnsafeDeleteError):
            tier.holds(relative)
    (tmp_path / "cold").mkdir()
    (tmp_path / "cold" / "ns").symlink_to(tmp_path)
    with pytest.raises(UnsafeDeleteError, match="outside the cold root"):
        tier.holds("ns/anything")
