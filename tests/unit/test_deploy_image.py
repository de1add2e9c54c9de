"""Structural checks of deploy/Dockerfile and deploy/requirements.lock (no Docker engine needed): slim base
matching the lock's Python, non-root user, exec-form commands, installs only from the lock, and a lock that
pins every runtime dependency of the project and nothing from the dev tools."""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
from pathlib import Path
from types import ModuleType

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
LOCK = ROOT / "deploy" / "requirements.lock"

Instruction = tuple[str, str]


def instructions(text: str) -> list[Instruction]:
    """(KEYWORD, arguments) per instruction: comments dropped, backslash continuations joined."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "dangling line continuation"
    return out


def stages(instrs: list[Instruction]) -> list[list[Instruction]]:
    out: list[list[Instruction]] = []
    for ins in instrs:
        if ins[0] == "FROM":
            out.append([])
        assert out, f"{ins[0]} before the first FROM"
        out[-1].append(ins)
    return out


def lock_requirements() -> list[str]:
    """The lock's requirements, each with its `--hash` options (backslash continuations joined)."""
    out: list[str] = []
    pending = ""
    for line in LOCK.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            out.append(pending.strip())
            pending = ""
    assert not pending, "dangling continuation in the lock"
    return out


def lock_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for req in lock_requirements():
        name, _, rest = req.split()[0].partition("==")
        assert rest and ";" not in req, f"not an exact pin: {req}"
        pins[canonicalize_name(name)] = rest
    return pins


def lockfile_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_lockfile", ROOT / "deploy" / "lockfile.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_instruction_parser_joins_continuations_and_drops_comments() -> None:
    text = "# c\nFROM x AS y\nRUN a \\\n  # inside\n  && b\nUSER 1\n"
    assert instructions(text) == [("FROM", "x AS y"), ("RUN", "a  && b"), ("USER", "1")]


def test_every_stage_builds_on_a_slim_python_of_the_locked_version() -> None:
    locked = re.search(r"^# python (\d+\.\d+)$", LOCK.read_text(), flags=re.M)
    assert locked, "the lock must record its Python version"
    images = set()
    for stage in stages(instructions(DOCKERFILE.read_text())):
        _keyword, args = stage[0]
        image = args.split()[0]
        assert re.fullmatch(rf"python:{re.escape(locked.group(1))}-slim(-\w+)?@sha256:[0-9a-f]{{64}}", image), image
        images.add(image)
    assert len(images) == 1, f"every stage must build on the same pinned base: {images}"


def test_every_lock_pin_carries_a_sha256_and_the_image_installs_with_require_hashes() -> None:
    for req in lock_requirements():
        hashes = re.findall(r"--hash=sha256:([0-9a-f]+)", req)
        assert hashes and all(len(h) == 64 for h in hashes), f"no sha256 for {req.split()[0]}"
    installs = [a for kw, a in instructions(DOCKERFILE.read_text()) if kw == "RUN" and "requirements.lock" in a]
    assert installs and all("--require-hashes" in a for a in installs)


def test_the_final_stage_runs_as_a_non_root_user_with_exec_form_commands() -> None:
    final = stages(instructions(DOCKERFILE.read_text()))[-1]
    users = [args for kw, args in final if kw == "USER"]
    assert users, "the final stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and (not user.isdigit() or int(user) >= 1000)
    for kw, args in final:
        if kw in ("CMD", "ENTRYPOINT"):
            argv = json.loads(args)  # exec form: a JSON array, so signals reach the process itself
            assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    (cmd,) = [json.loads(args) for kw, args in final if kw == "CMD"]
    assert cmd[:3] == ["celery", "-A", "workers.app"]
    env = " ".join(args for kw, args in final if kw == "ENV")
    assert "PROMETHEUS_MULTIPROC_DIR=/var/run/lifecycle/prometheus" in env
    assert "LIFECYCLE_HEARTBEAT_FILE=/tmp/lifecycle-worker-heartbeat" in env
    assert any(kw == "RUN" and "chown" in a and "/var/run/lifecycle" in a for kw, a in final)


def test_dependencies_come_only_from_the_lock() -> None:
    pip_runs = [a for kw, a in instructions(DOCKERFILE.read_text()) if kw == "RUN" and "pip install" in a]
    assert pip_runs
    for run in pip_runs:
        for command in run.split("&&"):
            if "pip install" in command:
                assert "--no-deps" in command, f"resolves outside the lock: {command.strip()}"
    assert any("-r /src/deploy/requirements.lock" in r for r in pip_runs)
    assert any("pip check" in r for r in pip_runs), "the locked set must be consistent"


def test_every_copied_path_exists_and_passes_the_dockerignore() -> None:
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].removesuffix("/**") for line in ignore if line.startswith("!")}
    for kw, args in instructions(DOCKERFILE.read_text()):
        if kw != "COPY" or args.startswith("--from"):
            continue
        *sources, _dest = args.split()
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: no such path"
            assert src in allowed, f"COPY {src}: excluded by Dockerfile.dockerignore"


def test_the_lock_pins_every_runtime_dependency_and_no_dev_tool() -> None:
    pins = lock_pins()
    closure = lockfile_module().runtime_closure()
    missing = sorted(set(closure) - set(pins))
    assert not missing, f"not in deploy/requirements.lock (rerun deploy/lockfile.py): {missing}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dep in project["dependencies"]:
        req = Requirement(dep)
        assert req.specifier.contains(pins[canonicalize_name(req.name)]), f"lock violates {dep}"
    dev_only = {canonicalize_name(Requirement(d).name) for d in project["optional-dependencies"]["dev"]}
    assert not dev_only & set(pins), f"dev tools in the runtime lock: {dev_only & set(pins)}"
    assert lockfile_module().render(closure).splitlines()[1] in LOCK.read_text().splitlines()
