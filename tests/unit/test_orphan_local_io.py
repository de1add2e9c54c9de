"""Local listing (recursive, sizes, mtimes) and deletes (missing = done, outside the location refused)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lifecycle.errors import UnsafeDeleteError
from lifecycle.orphans.listing import list_files
from lifecycle.safety.deletes import TableFiles, delete_files


def _files(table: Path) -> TableFiles:
    return TableFiles("ns.t", f"file://{table}", {}, io=None)


def _tree(root: Path) -> dict[str, int]:
    files = {"metadata/v1.metadata.json": 10, "data/a=1/x.parquet": 20, "data/a=1/b=2/y.parquet": 30, "z": 0}
    for rel, size in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * size)
    (root / "data/empty").mkdir()
    return files


def test_listing_is_recursive_with_sizes_and_mtimes(tmp_path: Path) -> None:
    table = tmp_path / "t"
    files = _tree(table)
    (tmp_path / "t2").mkdir()
    (tmp_path / "t2" / "sibling").write_bytes(b"s")
    os.utime(table / "z", (1_000_000, 1_000_000))
    listed = {f.path: f for f in list_files(f"file://{table}", {})}
    assert set(listed) == {f"file://{table}/{rel}" for rel in files}
    assert {p: f.size for p, f in listed.items()} == {f"file://{table}/{r}": s for r, s in files.items()}
    assert listed[f"file://{table}/z"].mtime == pytest.approx(1_000_000)
    assert {f.path for f in list_files(str(table), {})} == {f"{table}/{rel}" for rel in files}


def test_listing_a_missing_location_is_empty(tmp_path: Path) -> None:
    assert list(list_files(f"file://{tmp_path}/nope", {})) == []


def test_delete_counts_missing_as_done(tmp_path: Path) -> None:
    table = tmp_path / "t"
    _tree(table)
    paths = [f"file://{table}/data/a=1/x.parquet", f"file://{table}/data/gone.parquet"]
    out = delete_files(paths, _files(table), "clean-orphans")
    assert out.deleted == paths[:1]
    assert out.already_gone == paths[1:]
    assert not out.failed
    assert not (table / "data/a=1/x.parquet").exists()


def test_delete_refuses_everything_if_one_path_is_outside(tmp_path: Path) -> None:
    table = tmp_path / "t"
    _tree(table)
    (tmp_path / "precious").write_bytes(b"p")
    with pytest.raises(UnsafeDeleteError):
        delete_files([f"file://{table}/z", f"file://{tmp_path}/precious"], _files(table), "clean-orphans")
    assert (table / "z").exists()
    assert (tmp_path / "precious").exists()


def test_symlinks_are_never_listed_nor_deleted_through(tmp_path: Path) -> None:
    table = tmp_path / "t"
    _tree(table)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "victim.parquet").write_bytes(b"v")
    (table / "data" / "link").symlink_to(outside)
    (table / "data" / "file-link.parquet").symlink_to(outside / "victim.parquet")
    listed = {f.path for f in list_files(f"file://{table}", {})}
    assert not any(p.startswith(f"file://{table}/data/link") or "file-link" in p for p in listed)
    assert len(listed) == 4
    with pytest.raises(UnsafeDeleteError, match="resolves outside"):
        delete_files([f"file://{table}/data/link/victim.parquet"], _files(table), "clean-orphans")
    assert (outside / "victim.parquet").exists()
