"""scripts/demo installs the project without the development extras; scripts/test (through bootstrap)
installs them. Checked with a stand-in virtualenv whose python records what pip was asked to install."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _fake_venv(tmp_path: Path) -> tuple[Path, Path]:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    calls = tmp_path / "calls"
    for name in ("python", "lifecycle-cli"):
        script = venv / "bin" / name
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\n')
        script.chmod(0o755)
    return venv, calls


def test_the_demo_installs_only_the_project_and_the_tests_install_the_dev_extras(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("bootstrap", "demo"):
        shutil.copy2(ROOT / "scripts" / name, repo / "scripts" / name)
    venv, calls = _fake_venv(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "LIFECYCLE_EXTRAS"}
    env["LIFECYCLE_VENV"] = str(venv)

    subprocess.run([str(repo / "scripts" / "demo"), "--keep-db"], env=env, check=True, timeout=60)
    assert calls.read_text().splitlines() == [
        "python -m pip install -q --upgrade pip", "python -m pip install -q -e .", "lifecycle-cli demo --keep-db"]

    calls.unlink()
    subprocess.run([str(repo / "scripts" / "bootstrap")], env=env, check=True, timeout=60)
    assert calls.read_text().splitlines()[-1] == "python -m pip install -q -e .[dev]"
