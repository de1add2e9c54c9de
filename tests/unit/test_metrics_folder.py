"""The worker's metrics folder (workers/metrics_dir.py) and prometheus-client's value class
(lifecycle/metrics.py): private by default, never wiped through a planted symlink, and used even when
prometheus-client was imported before the folder was chosen (as the `celery` command does)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lifecycle.errors import ConfigError
from workers import metrics_dir


def test_the_default_folder_is_new_private_and_unpredictable(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    # someone plants the old predictable name, pointing at a folder of theirs
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    (tmp_path / f"lifecycle-prometheus-{os.getpid()}").symlink_to(victim)

    first = metrics_dir.prepare_multiproc_dir()
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    second = metrics_dir.prepare_multiproc_dir()
    assert first != second and first.parent == tmp_path and first.name.startswith(metrics_dir.PREFIX)
    for folder in (first, second):
        st = os.lstat(folder)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(second)
    assert (victim / "precious").read_text() == "keep me"


def test_a_configured_folder_is_emptied_without_following_links(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "precious").write_text("keep me")
    (victim / "sub" / "also").write_text("keep me too")
    folder = tmp_path / "prom"
    (folder / "old-dir").mkdir(parents=True)
    (folder / "counter_123.db").write_bytes(b"x")
    (folder / "old-dir" / "f").write_bytes(b"y")
    (folder / "link-to-dir").symlink_to(victim)
    (folder / "link-to-file").symlink_to(victim / "precious")
    (folder / "old-dir" / "link").symlink_to(victim / "sub")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))

    assert metrics_dir.prepare_multiproc_dir() == folder
    assert list(folder.iterdir()) == []
    assert (victim / "precious").read_text() == "keep me" and (victim / "sub" / "also").exists()


def test_a_configured_folder_that_is_a_symlink_or_someone_elses_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    link = tmp_path / "planted"
    link.symlink_to(victim)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(link))
    with pytest.raises(ConfigError, match="symbolic link"):
        metrics_dir.prepare_multiproc_dir()
    assert (victim / "precious").read_text() == "keep me"

    if os.geteuid() != 0:
        pytest.skip("needs root to give a folder to another user")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "their-file").write_text("theirs")
    os.chown(theirs, 4242, 4242)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(theirs))
    with pytest.raises(ConfigError, match="belongs to uid 4242"):
        metrics_dir.prepare_multiproc_dir()
    assert (theirs / "their-file").exists()


def test_a_missing_configured_folder_is_created_private(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    assert metrics_dir.prepare_multiproc_dir() == folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


_EARLY_IMPORT = textwrap.dedent("""
    import os, sys
    import prometheus_client                      # as the `celery` command does, via Flower's plug-in
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]   # then workers/app.py chooses the folder
    from lifecycle import metrics
    metrics.FILES_COMPACTED.labels("archive.t").inc(3)
    metrics.BANDWIDTH_BYTES.labels("read").inc(10)
""")


def test_samples_reach_the_folder_even_when_prometheus_client_was_imported_first(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    folder = tmp_path / "prom"
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    subprocess.run([sys.executable, "-c", _EARLY_IMPORT, str(folder)], env=env, check=True, timeout=60)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    assert registry.get_sample_value("files_compacted_total", {"table": "archive.t"}) == 3
    assert registry.get_sample_value("lifecycle_bandwidth_bytes_total", {"direction": "read"}) == 10


def test_a_metrics_folder_that_cannot_be_made_leaves_metrics_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = ("from lifecycle import metrics; metrics.FILES_COMPACTED.labels('t').inc(); "
            "print(metrics.MULTIPROCESS)")
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(blocker / "x"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
