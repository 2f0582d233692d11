"""The monitoring stack shipped with Driftboard: the Grafana dashboard asks only for metrics /metrics really
exports, and docker-compose.yml's `monitoring` profile wires Prometheus to web's /metrics and Grafana to
Prometheus and the dashboard, leaving a plain `docker compose up` as it was."""

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from evals.models import EvalRun
from tests.factories import ArtifactFactory, EvalRunFactory, FamilyFactory, VerdictFactory

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "integrations" / "grafana" / "driftboard.json"
PROMETHEUS = ROOT / "integrations" / "prometheus" / "prometheus.yml"
DATASOURCES = ROOT / "integrations" / "grafana" / "provisioning" / "datasources" / "driftboard.yml"
COMPOSE = ROOT / "docker-compose.yml"
TOKEN = "scrape-token-for-tests"
REQUIRED_PANELS = (
    "Queue depth",
    "Run wait latency",
    "Spent in the time range",
    "Saved share",
    "Judge calls",
    "Weekly budget used",
)
# What PromQL names that is not a metric: functions and aggregations are followed by "(" and dropped anyway.
KEYWORDS = {"bool", "offset", "and", "or", "unless", "group_left", "group_right", "inf", "nan"}
SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
}


def dashboard_targets() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of every panel."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(panel["title"], target["expr"]) for panel in panels for target in panel.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    identifiers = re.findall(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr)
    return {name for name in identifiers if name.lower() not in KEYWORDS}


def exported_names(exposition: str) -> set[str]:
    """Every series name /metrics declares, with or without samples at the moment."""
    names = set()
    for family in text_string_to_metric_families(exposition):
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in SAMPLE_SUFFIXES.get(family.type, ("",))}
    return names


@pytest.fixture
def scraped(client, db, settings) -> str:
    """/metrics over a board with runs of every kind of interest, a budgeted family and a verdict."""
    settings.DRIFTBOARD_METRICS_TOKEN = TOKEN
    settings.DRIFTBOARD_METRICS_ALLOWED_IPS = []
    now = timezone.now()
    family = FamilyFactory(weekly_budget=10.0)
    usage = {"device": "cpu", "device_kind": "cpu", "worker_seconds": 5.0, "samples_full": 10, "samples_scored": 10}
    EvalRunFactory(
        artifact=ArtifactFactory(family=family),
        status=EvalRun.Status.SUCCEEDED,
        enqueued_at=now - timedelta(minutes=3),
        started_at=now - timedelta(minutes=2),
        finished_at=now - timedelta(minutes=1),
        tokens=1000,
        usage=usage,
        drafting={"answers": 2, "accepted_tokens": 10},
    )
    EvalRunFactory(status=EvalRun.Status.QUEUED, enqueued_at=now - timedelta(minutes=5))
    VerdictFactory(outcome="green")
    assert client.get("/healthz").status_code in (200, 503)  # a request for the latency histogram
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return response.content.decode()


def test_every_panel_asks_only_for_metrics_that_metrics_exports(scraped):
    exported = exported_names(scraped)
    targets = dashboard_targets()

    assert targets
    for title, expr in targets:
        names = metric_names(expr)
        assert names, f"{title!r}: no metric in {expr!r}"
        assert names <= exported, f"{title!r} asks for {sorted(names - exported)}, which /metrics does not export"
    asked = set().union(*(metric_names(expr) for _, expr in targets))
    assert {"driftboard_cost_amount_total", "driftboard_family_budget_used_ratio", "driftboard_saved_share"} <= asked


def test_the_name_reader_sees_through_functions_labels_and_ranges():
    expr = 'histogram_quantile(0.95, sum by (le, queue) (rate(driftboard_x_bucket{queue="a b"}[$__rate_interval])))'
    assert metric_names(expr) == {"driftboard_x_bucket"}
    assert metric_names("rate(a_total[5m]) / on (job) group_left b * 3600 > bool 1") == {"a_total", "b"}


def test_the_dashboard_has_its_panels_and_reads_the_provisioned_datasource():
    dashboard = json.loads(DASHBOARD.read_text())
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert set(REQUIRED_PANELS) <= titles
    [variable] = dashboard["templating"]["list"]
    [datasource] = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert variable["current"]["value"] == datasource["uid"]
    assert datasource["url"] == "http://prometheus:9090"
    queried = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert all(panel["datasource"]["uid"] == "${datasource}" for panel in queried)


def test_compose_starts_prometheus_and_grafana_only_with_the_monitoring_profile():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    monitoring = {name for name, service in services.items() if "monitoring" in service.get("profiles", [])}
    assert monitoring == {"prometheus", "grafana"}
    assert all("profiles" not in service for name, service in services.items() if name not in monitoring)
    for name in monitoring:
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
    [secret] = services["prometheus"]["secrets"]
    assert compose["secrets"][secret] == {"environment": "DRIFTBOARD_METRICS_TOKEN"}
    [job] = yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [{"targets": ["web:8000"]}]
    assert job["authorization"] == {"type": "Bearer", "credentials_file": f"/run/secrets/{secret}"}
    assert "web" in services and "8000:8000" in services["web"]["ports"]
