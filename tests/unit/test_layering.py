"""The layering rules (pyproject.toml [tool.importlinter], docs/architecture.md) hold, and the check that
scripts/test runs fails on a forbidden import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the packages and the contracts, to break on purpose."""
    root = tmp_path_factory.mktemp("layering")
    for pkg in ("lifecycle", "lifecycle_cli", "workers"):
        shutil.copytree(REPO / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_project_keeps_every_layering_contract() -> None:
    out = _lint(REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("lifecycle/compaction/planner.py", "from workers import tasks", "never imports Celery"),
    ("lifecycle/state/store.py", "import lifecycle.compaction.job", "never import a job"),
    ("lifecycle/orphans/plan.py", "from lifecycle.expiration import purge", "Each job stands alone"),
    ("lifecycle/expiration/job.py", "from lifecycle.fleet import reaper", "Jobs never import the fleet"),
])
def test_a_forbidden_import_breaks_the_check_and_names_the_contract(tree: Path, module: str, line: str,
                                                                    contract: str) -> None:
    path = tree / module
    original = path.read_text()
    # inside a function, where a lazy import would hide from a test that only imports modules
    path.write_text(original + f"\n\ndef _forbidden() -> None:\n    {line}  # noqa\n")
    try:
        out = _lint(tree)
    finally:
        path.write_text(original)
    assert out.returncode == 1, out.stdout
    broken = out.stdout.split("Broken contracts", 1)[-1]
    assert contract in " ".join(broken.split())
