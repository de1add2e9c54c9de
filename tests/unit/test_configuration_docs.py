"""docs/configuration.md and lifecycle.example.toml are complete: every key of every section with its
default, every LIFECYCLE_* variable the code reads; the example loads and equals the defaults; the README
links to both and to nothing outside this repository."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

from lifecycle.settings import _SECTIONS, ENV_OVERRIDES, PROCESS_ENV, Settings, TableSettings, load

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"
EXAMPLE = ROOT / "lifecycle.example.toml"


def _parsed(text: str) -> object:
    value = tomllib.loads(f"v = {text}")["v"]
    return tuple(value) if isinstance(value, list) else value


def test_every_key_is_documented_with_its_default() -> None:
    text = DOC.read_text()
    for section, cls in _SECTIONS.items():
        for f in dataclasses.fields(cls):
            default = getattr(cls(), f.name)
            if section == "defaults":
                row = re.search(rf"^\| `{f.name}` \| `([^`]*)`", text, flags=re.M)
            else:
                row = re.search(rf"^\| `\[{section}\] {f.name}` \| `([^`]*)`", text, flags=re.M)
            assert row, f"{section}.{f.name} is not in docs/configuration.md"
            assert _parsed(row.group(1)) == default, f"{section}.{f.name}: documented {row.group(1)}, is {default!r}"
    for var in ENV_OVERRIDES.values():
        assert f"`{var}`" in text, var


def test_every_environment_variable_the_code_reads_is_documented() -> None:
    text = DOC.read_text()
    found: set[str] = set()
    for folder in ("lifecycle", "workers"):
        for path in (ROOT / folder).rglob("*.py"):
            found |= set(re.findall(r"\bLIFECYCLE_[A-Z][A-Z_]*[A-Z]\b", path.read_text()))
    found |= {"LIFECYCLE_LOG_LEVEL", "LIFECYCLE_METRICS_ADDR"}
    missing = sorted(v for v in found if f"`{v}`" not in text)
    assert missing == [], missing


def test_every_variable_is_declared_once_and_only_settings_reads_those_that_override_a_key() -> None:
    declared = set(ENV_OVERRIDES.values()) | set(PROCESS_ENV)
    assert not set(ENV_OVERRIDES.values()) & set(PROCESS_ENV)
    for folder in ("lifecycle", "lifecycle_cli", "workers"):
        for path in (ROOT / folder).rglob("*.py"):
            used = set(re.findall(r"\bLIFECYCLE_[A-Z][A-Z_]*[A-Z]\b", path.read_text()))
            assert used <= declared, f"{path.relative_to(ROOT)} reads undeclared {sorted(used - declared)}"
            if path.name != "settings.py":
                reads = set(re.findall(r"environ(?:\.get)?[\[(]\s*\"(LIFECYCLE_[A-Z_]+)", path.read_text()))
                assert not reads & set(ENV_OVERRIDES.values()), f"{path.relative_to(ROOT)} reads {reads}"


def test_the_example_lists_every_key_at_its_default_and_loads() -> None:
    settings = load(str(EXAMPLE), env={})
    default = Settings()
    for section in _SECTIONS:
        if section != "defaults":
            assert getattr(settings, section) == getattr(default, section), section
    assert settings.defaults == TableSettings()
    assert settings.for_table("archive.sda_observations").retention_days == 90
    text = EXAMPLE.read_text()
    for section, cls in _SECTIONS.items():
        body = text.split(f"[{section}]", 1)[1].split("\n[", 1)[0]
        for f in dataclasses.fields(cls):
            assert re.search(rf"^{f.name} = ", body, flags=re.M), f"{section}.{f.name} missing from the example"


def test_the_readme_links_to_the_configuration_and_nothing_outside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/configuration.md" in readme and "lifecycle.example.toml" in readme
    assert "shared/design.md" not in readme
    for target in re.findall(r"\]\(([^)#]+)", readme) + re.findall(r"`((?:docs|deploy|scripts)/[\w./-]+)`", readme):
        assert not target.startswith(("http://", "https://", "/")), target
        assert (ROOT / target).exists(), f"README links to {target}, which is not in the repository"
