"""What an operator sees from `lifecycle-cli`: a progress bar on a terminal (and nothing when piped or with
--json), bad input as one line with exit 2, `status` degrading per component, no third-party warnings."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from lifecycle.clock import ManualClock
from lifecycle.settings import Settings
from lifecycle.state import embedded_pg
from lifecycle_cli.synth import ArchiveSpec, OrphanSpec, build_archive
from tests.conftest import REPO, cli_env, free_port, run_cli, with_table_settings, write_config

TABLE = "archive.sda_observations"
PARTS = [("apollo-7", date(2024, 3, 15)), ("apollo-8", date(2024, 3, 15))]


def on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal; (exit status, stdout, what the terminal showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "lifecycle_cli", *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:          # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    out, _ = proc.communicate(timeout=240)
    os.close(master)
    return proc.returncode, out, shown.decode(errors="replace")


def _archive(catalog: Any, settings: Settings, clock: ManualClock, tmp_path: Path) -> tuple[Any, Path]:
    archive = build_archive(catalog, ArchiveSpec(partitions=PARTS, files_per_partition=[12, 4],
                                                 file_bytes=(20_000, 40_000), orphans=[OrphanSpec(6, 10.0)]), clock)
    settings = with_table_settings(settings, TABLE, small_file_bytes=200_000, min_small_files=3,
                                   target_file_bytes=150_000)
    return archive, write_config(tmp_path / "lifecycle.toml", settings)


def test_run_draws_a_progress_bar_on_a_terminal_and_nothing_when_piped_or_json(
    catalog: Any, settings: Settings, clock: ManualClock, tmp_path: Path,
) -> None:
    _, config = _archive(catalog, settings, clock, tmp_path)
    env = cli_env(config, LIFECYCLE_FAKE_NOW=clock.now().isoformat())
    partition = "mission_id=apollo-7,day=2024-03-15"

    status, out, shown = on_a_terminal(["run", "compact", "--table", TABLE, "--partition", partition], env)
    assert status == 0, shown
    assert out.startswith(f"compact {TABLE} [{partition}]: done"), out
    bars = re.findall(r"\[([#-]{24})\] +(\d+)%  ([\d.]+ [KMG]?B)/([\d.]+ [KMG]?B)  compact ", shown)
    assert bars and bars[-1][0] == "#" * 24 and bars[-1][1] == "100", shown   # bytes of the groups, to the end
    assert re.search(r"group \d+/\d+", shown) and shown.endswith("\r\x1b[K"), shown  # cleared at the end
    assert "\x1b" not in out                                                          # results stay clean

    status, out, shown = on_a_terminal(["run", "clean-orphans", "--table", TABLE], env)
    assert status == 0, shown
    assert re.search(r"\d+ objects  clean-orphans .*: listed \d+ objects", shown), shown  # the scan, in objects
    assert "] 100%  6/6 files  clean-orphans" in shown, shown                          # deletes, in files

    status, out, shown = on_a_terminal(["run", "compact", "--table", TABLE, "--json"], env)
    assert status == 0 and shown == "", shown                                        # --json: quiet
    assert json.loads(out)["job"] == "compact"

    piped = run_cli(["run", "expire", "--table", TABLE], env)
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr                 # piped: quiet


def test_bad_input_is_one_line_with_exit_2(catalog: Any, settings: Settings, clock: ManualClock,
                                           tmp_path: Path) -> None:
    _, config = _archive(catalog, settings, clock, tmp_path)
    env = cli_env(config)
    bogus = run_cli(["--log-level", "bogus", "status"], env)
    assert bogus.returncode == 2 and bogus.stdout == ""
    assert bogus.stderr.strip().splitlines() == [
        "lifecycle-cli: error: Invalid value for '--log-level': 'bogus' is not one of 'debug', 'info', 'warning',"
        " 'error', 'critical'."]

    before = catalog.load_table(TABLE).metadata_location
    for extra in ([], ["--dry-run"]):
        missing = run_cli(["run", "compact", "--table", TABLE, "--partition", "mission_id=apollo-9,day=2024-03-15",
                           *extra], env)
        assert missing.returncode == 2, missing
        assert missing.stderr.strip().splitlines() == [
            f"lifecycle-cli: error: --partition: table {TABLE} has no partition mission_id=apollo-9,day=2024-03-15"
            " (no live data files in it)"]
    assert catalog.load_table(TABLE).metadata_location == before
    assert run_cli(["status", "--json"], env).stdout.count('"run_id"') == 0        # no run was recorded


def test_status_shows_what_it_can_read_and_names_what_it_cannot_reach(
    catalog: Any, settings: Settings, clock: ManualClock, tmp_path: Path,
) -> None:
    _, config = _archive(catalog, settings, clock, tmp_path)
    done = run_cli(["run", "compact", "--table", TABLE], cli_env(config))
    assert done.returncode == 0, done.stderr
    closed = free_port()                                                   # nothing listens there
    env = cli_env(config, LIFECYCLE_BROKER_URL=f"redis://:s3cret@127.0.0.1:{closed}/0")

    out = run_cli(["status"], env)
    assert out.returncode == 1, out
    assert "recent runs:" in out.stdout and re.search(r"compact\s+archive.sda_observations", out.stdout)
    assert f"broker: unreachable (redis://:***@127.0.0.1:{closed}/0: ConnectionError:" in out.stdout
    assert "s3cret" not in out.stdout + out.stderr and out.stderr == ""
    data = json.loads(run_cli(["status", "--json"], env).stdout)
    assert data["recent_runs"] and "queues" not in data and list(data["unreachable"]) == ["broker"]

    env = cli_env(config, LIFECYCLE_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{closed}/nope")
    out = run_cli(["status"], env)
    assert out.returncode == 1 and "queues: compaction=0" in out.stdout, out
    assert "state database: unreachable (ServiceUnavailableError: state database" in out.stdout


def test_no_third_party_warning_on_stderr_without_xdg_runtime_dir() -> None:
    folder = Path(tempfile.mkdtemp(prefix="lifecycle-xdg-test-"))   # the embedded default, as cron would run it
    try:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LIFECYCLE_", "PYICEBERG_")) and k != "XDG_RUNTIME_DIR"}
        out = subprocess.run([sys.executable, "-m", "lifecycle_cli", "status"], cwd=folder, env=env,
                             capture_output=True, text=True, timeout=240)
        assert out.returncode == 0, out.stderr
        assert out.stderr == "" and "config: embedded default" in out.stdout
    finally:
        embedded_pg.stop(folder / "lifecycle-data")
        shutil.rmtree(folder, ignore_errors=True)
