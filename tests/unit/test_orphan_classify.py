"""Pure classification: every guard, their order, and the age boundary."""

from __future__ import annotations

import pytest

from lifecycle.errors import UnsafeDeleteError
from lifecycle.orphans.classify import (
    CANDIDATE,
    LIVE,
    OUTSIDE,
    PURGE,
    STAGED,
    WRITER,
    YOUNG,
    Guards,
    classify,
    classify_all,
)
from lifecycle.orphans.listing import ListedFile
from lifecycle.safety.paths import LiveIndex, Schemes, location_prefix

LOC = "s3://bucket/wh/t"
NOW = 1_800_000_000.0
DAY = 86400.0


def guards(schemes: Schemes | None = None, **kw: object) -> Guards:
    schemes = schemes or Schemes()
    base: dict[str, object] = dict(
        location=location_prefix(LOC),
        live=LiveIndex([f"{LOC}/data/live.parquet", f"{LOC}/metadata/v1.metadata.json"], schemes),
        schemes=schemes,
        staged=Guards.keys([f"{LOC}/data/staged.parquet"]),
        purge=Guards.keys([f"{LOC}/data/purge.parquet"]),
        writer_prefixes=tuple(Guards.keys([f"{LOC}/data/writer-a/", f"{LOC}/data/one.parquet"])),
        cutoff=NOW - 7 * DAY,
    )
    base.update(kw)
    return Guards(**base)  # type: ignore[arg-type]


def f(rel: str, age_days: float | None = 30, root: str = LOC) -> ListedFile:
    return ListedFile(f"{root}/{rel}", 100, None if age_days is None else NOW - age_days * DAY)


@pytest.mark.parametrize(("file", "label"), [
    (f("data/live.parquet"), LIVE),
    (f("metadata/v1.metadata.json", age_days=0), LIVE),
    (f("data/staged.parquet", age_days=400), STAGED),
    (f("data/purge.parquet", age_days=400), PURGE),
    (f("data/writer-a/x.parquet"), WRITER),
    (f("data/one.parquet"), WRITER),
    (f("data/orphan.parquet", age_days=6.99), YOUNG),
    (f("data/orphan.parquet", age_days=7), YOUNG),          # exactly the minimum age: not older
    (f("data/orphan.parquet", age_days=7.001), CANDIDATE),
    (f("data/orphan.parquet", age_days=None), YOUNG),        # unknown age: never deleted
    (f("data/x.parquet", root="s3://bucket/wh/t2"), OUTSIDE),
    (f("data/x.parquet", root="s3://other/wh/t"), OUTSIDE),
])
def test_each_guard(file: ListedFile, label: str) -> None:
    assert classify(file, guards()) == label


def test_guards_compare_without_scheme_so_they_only_protect_more() -> None:
    g = guards(staged=Guards.keys(["s3a://bucket/wh/t/data/s.parquet"]),
               writer_prefixes=tuple(Guards.keys(["s3n://bucket/wh/t/data/w/"])))
    assert classify(f("data/s.parquet"), g) == STAGED
    assert classify(f("data/w/1.parquet"), g) == WRITER


def test_live_scheme_mismatch_refuses_unless_configured() -> None:
    live = ["s3a://bucket/wh/t/data/a.parquet"]
    with pytest.raises(UnsafeDeleteError):
        classify(f("data/a.parquet"), guards(live=LiveIndex(live, Schemes())))
    eq = Schemes(["s3", "s3a", "s3n"])
    assert classify(f("data/a.parquet"), guards(eq, live=LiveIndex(live, eq))) == LIVE


def test_classify_all_counts_and_keeps_only_candidates() -> None:
    files = [f("data/live.parquet"), f("data/staged.parquet"), f("data/writer-a/1"), f("data/new", 1),
             f("data/old1", 8), f("data/old2", 100)]
    out = classify_all(files, guards())
    assert out.listed == 6
    assert [c.path for c in out.candidates] == [f"{LOC}/data/old1", f"{LOC}/data/old2"]
    assert out.candidate_bytes == 200
    assert out.kept() == {OUTSIDE: 0, "hidden": 0, STAGED: 1, PURGE: 0, WRITER: 1, YOUNG: 1}
    assert out.counts[LIVE] == 1


def test_no_age_check_when_rechecking() -> None:
    assert classify(f("data/orphan", age_days=0), guards(cutoff=None)) == CANDIDATE


def test_files_of_a_table_nested_in_the_location_are_never_candidates() -> None:
    files = [f("data/old1", 30), f("other_table/data/x.parquet", 30), f("other_table/metadata/v1.metadata.json", 30),
             f("other_table/metadata/snap-1.avro", 30)]
    out = classify_all(files, guards())
    assert [c.path for c in out.candidates] == [f"{LOC}/data/old1"]
    assert out.kept()[OUTSIDE] == 3
    assert out.candidate_bytes == 100
