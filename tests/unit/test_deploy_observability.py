"""The Grafana dashboard and the Prometheus alert rules parse, and name only metrics our code exports (with
the labels it gives them), so renaming a metric fails here; every alert links to a runbook section."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from pathlib import Path
from typing import Any

import prometheus_client
import promql_parser
import pytest
import yaml

import lifecycle
import workers

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "artemis-lifecycle.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
PROMETHEUS_RULE = ROOT / "deploy" / "k8s" / "base" / "prometheusrule.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"

# Metrics that other exporters produce, each with the exporter that must run for the panel to fill.
EXTERNAL_METRICS = {
    "redis_key_size": "oliver006/redis_exporter, --check-single-keys=compaction,expiration,orphans,metadata,control",
}
# Labels Prometheus (or the Prometheus operator) attaches to every scraped series.
TARGET_LABELS = {"instance", "job", "namespace", "pod", "container", "endpoint", "service"}
REQUIRED_ALERTS = {
    "LifecycleSmallFileBacklogGrowing", "LifecyclePurgeJournalOverdue", "LifecycleLineageValidationFailures",
    "LifecycleJobFailureRate", "LifecycleNoBeatEmission",
}
CONTRACT = ("files_compacted_total", "snapshots_expired_total", "orphans_cleaned_total",
            "lineage_validation_failures_total")
_SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum", "_created"),
             "summary": ("", "_count", "_sum", "_created"), "info": ("_info",)}


def _import_all(package: Any) -> None:
    for mod in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not mod.name.endswith("__main__"):
            importlib.import_module(mod.name)


def exported() -> dict[str, set[str]]:
    """{sample name: label names} for every metric the code registers (lifecycle and workers, all modules)."""
    _import_all(lifecycle)
    _import_all(workers)
    out: dict[str, set[str]] = {}
    for collector, names in list(prometheus_client.REGISTRY._collector_to_names.items()):
        if not isinstance(collector, prometheus_client.metrics.MetricWrapperBase):
            out.update({n: set() for n in names})  # process / platform / gc collectors
            continue
        labels = set(collector._labelnames)
        for suffix in _SUFFIXES[str(collector._type)]:
            out[collector._name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return out


def substitute(expr: str) -> str:
    """Grafana's variables, replaced by something PromQL accepts."""
    expr = re.sub(r"\$__(rate_)?interval|\$__range", "5m", expr)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def selectors(expr: str) -> tuple[list[tuple[str, set[str]]], set[str]]:
    """([(metric name, matcher label names)], grouping labels) of a PromQL expression."""
    found: list[tuple[str, set[str]]] = []
    grouping: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = {m.name: m.value for m in node.matchers.matchers}
            found.append((node.name or matchers.pop("__name__"), set(matchers) - {"__name__"}))
        modifier = getattr(node, "modifier", None) if isinstance(node, promql_parser.AggregateExpr) else None
        if modifier is not None and "By" in str(modifier.type):
            grouping.update(modifier.labels)
        return True

    promql_parser.walk(promql_parser.parse(substitute(expr)), visit)
    return found, grouping


def problems(exprs: list[str], known: dict[str, set[str]]) -> list[str]:
    out: list[str] = []
    for expr in exprs:
        found, grouping = selectors(expr)
        labels_here: set[str] = set(TARGET_LABELS)
        for name, matched in found:
            if name in EXTERNAL_METRICS:
                labels_here |= matched | grouping  # another exporter's labels: not ours to check
                continue
            if name not in known:
                out.append(f"unknown metric {name} in {expr!r}")
                continue
            labels_here |= known[name]
            out += [f"{name} has no label {lb!r} ({expr!r})" for lb in sorted(matched - known[name] - TARGET_LABELS)]
        out += [f"no metric in {expr!r} has label {lb!r}" for lb in sorted(grouping - labels_here)]
    return out


def dashboard_exprs(dash: dict[str, Any]) -> list[str]:
    panels = list(dash["panels"])
    for p in list(panels):
        panels += p.get("panels", [])
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    for var in dash.get("templating", {}).get("list", []):
        query = var.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query or "")
        if m:
            exprs.append(f"count by ({m.group(2)}) ({m.group(1)})")
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_the_contract_metrics_are_registered_with_a_table_label() -> None:
    known = exported()
    for name in CONTRACT:
        assert known[name] == {"table"}, name


def test_dashboard_parses_and_shows_what_operators_asked_for() -> None:
    dash = json.loads(DASHBOARD.read_text())
    exprs = dashboard_exprs(dash)
    text = "\n".join(exprs)
    for needle in (*CONTRACT, "lifecycle_job_duration_seconds_bucket", 'outcome="failed"',
                   "lifecycle_bandwidth_bytes_total", "lifecycle_bandwidth_budget_bytes_per_second", "redis_key_size"):
        assert needle in text, needle
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and dash["uid"]


def test_every_metric_the_dashboard_names_exists_in_the_code() -> None:
    assert problems(dashboard_exprs(json.loads(DASHBOARD.read_text())), exported()) == []


def test_every_metric_an_alert_names_exists_in_the_code() -> None:
    assert problems([r["expr"] for r in alert_rules()], exported()) == []


def test_the_check_fails_on_a_renamed_metric_or_label() -> None:
    known = exported()
    assert problems(["sum(rate(files_compacted[5m]))"], known) == [
        "unknown metric files_compacted in 'sum(rate(files_compacted[5m]))'"]
    assert problems(['orphans_cleaned_total{tbl="x"}'], known) == [
        "orphans_cleaned_total has no label 'tbl' ('orphans_cleaned_total{tbl=\"x\"}')"]
    assert problems(["sum by (partition) (files_compacted_total)"], known) == [
        "no metric in 'sum by (partition) (files_compacted_total)' has label 'partition'"]


def test_alerts_cover_the_failure_modes_and_link_to_a_runbook_section() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= REQUIRED_ALERTS
    sections = anchors(OPERATIONS.read_text())
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path == "docs/operations.md" and anchor in sections, f"{rule['alert']}: no section #{anchor}"
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["for"]


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_expressions_parse(rule: dict[str, Any]) -> None:
    promql_parser.parse(rule["expr"])


def test_the_prometheus_operator_rule_carries_the_same_alerts() -> None:
    operator = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert operator["kind"] == "PrometheusRule" and operator["apiVersion"] == "monitoring.coreos.com/v1"
    assert operator["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]


def test_links_inside_the_operations_page_resolve() -> None:
    text = OPERATIONS.read_text()
    links = set(re.findall(r"\]\(#([\w-]+)\)", text))
    assert links and links <= anchors(text), links - anchors(text)
