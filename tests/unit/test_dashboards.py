"""The Grafana dashboards as code: valid for the SDK's own types, queries where the data is, and the committed
provisioning files (manifests/grafana, `make manifests`) up to date. The end-to-end test runs every query."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import config, dashboards

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "manifests" / "grafana"


@pytest.fixture(scope="module")
def settings() -> config.Settings:
    return lakehouse.load_settings(None, environ={})


def test_each_dashboard_round_trips_through_the_sdk_model(settings):
    for name, model in dashboards.dashboards(settings).items():
        again = json.loads(json.dumps(Dashboard.from_json(model), cls=JSONEncoder))
        assert again == model, name
        assert model["uid"].startswith("sagaz-") and model["panels"], name


def test_panels_have_unique_titles_and_our_data_sources(settings):
    for name, model in dashboards.dashboards(settings).items():
        titles = [p["title"] for p in model["panels"]]
        assert len(titles) == len(set(titles)), name
        for panel in model["panels"]:
            assert panel["targets"], (name, panel["title"])
            sources = {(t.get("datasource") or panel["datasource"])["uid"] for t in panel["targets"]}
            assert sources <= {dashboards.PROMETHEUS_UID, dashboards.TRINO_UID}, (name, panel["title"])


def test_history_queries_read_the_lake_table_without_probe_events(settings):
    sql = [q for q in dashboards.panel_queries(settings) if q.datasource == dashboards.TRINO_PLUGIN]
    assert sql
    for query in sql:
        assert f"iceberg.{settings.lake.database}." in query.text, query.panel
        if "saga_events " in query.text:
            assert "doctor_probe" in query.text and '$__timeFilter("timestamp")' in query.text, query.panel


def test_provisioning_names_the_data_sources_the_panels_use(settings):
    files = dashboards.provisioning(settings, "http://prometheus:9090", "http://trino:8080")
    sources = yaml.safe_load(files["provisioning/datasources/sagaz-lakehouse.yaml"])["datasources"]
    assert {s["uid"] for s in sources} == {dashboards.PROMETHEUS_UID, dashboards.TRINO_UID}
    assert {f"dashboards/{name}.json" for name in dashboards.BUILDERS} <= set(files)


def test_committed_grafana_files_are_up_to_date(settings):
    files = dashboards.provisioning(settings, "http://prometheus:9090", f"http://trino:{settings.ports.trino}")
    committed = {str(p.relative_to(COMMITTED)): p.read_text() for p in COMMITTED.rglob("*") if p.is_file()}
    assert committed == files, "manifests/grafana is out of date: run `make manifests`"
