"""doctor judges components that no client reaches (ZooKeeper) from the target driver's own view, the same way on
every target: the driver's status rows, never a connection from the user's host (compose does not publish
ZooKeeper, Kubernetes does not port-forward it)."""

from __future__ import annotations

import pytest

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import addresses, clients, config, doctor
from sagaz_lakehouse.stack import View


def zookeeper_check(target: str, rows: list[dict], monkeypatch) -> tuple[str, str]:
    def no_connection(*_args, **_kwargs):
        raise AssertionError("doctor opened a connection to ZooKeeper")

    monkeypatch.setattr(clients, "tcp_open", no_connection)
    settings = lakehouse.load_settings(None, {"target": target}, environ={})
    calls: list[int] = []

    def status() -> list[dict]:
        calls.append(1)
        return rows

    probes = doctor.component_probes(settings, config.DEV_CREDENTIALS, addresses.endpoints(settings, View.EXTERNAL),
                                     status)
    try:
        detail = probes["zookeeper"]()
        outcome = doctor.PASS
    except doctor.CheckFailed as exc:
        detail, outcome = exc.detail, exc.status
    if outcome == doctor.PASS:
        probes["zookeeper"]()  # a second call uses the same rows
    assert len(calls) == 1, "status is asked once per doctor run"
    return outcome, detail


@pytest.mark.parametrize(("target", "row"), [
    ("compose", {"component": "zookeeper", "state": "healthy", "detail": "Up 2 minutes (healthy)"}),
    ("kubernetes", {"component": "zookeeper", "state": "healthy", "detail": "StatefulSet 1/1 ready"}),
    ("local", {"component": "zookeeper", "state": "healthy", "detail": "pid 42"}),
])
def test_healthy_by_the_targets_own_check(target, row, monkeypatch):
    rows = [row, {"component": "trino", "state": "starting"}]
    outcome, detail = zookeeper_check(target, rows, monkeypatch)
    assert outcome == doctor.PASS
    assert f"by the {target} target's own check" in detail and row["detail"] in detail


@pytest.mark.parametrize("state", ["unhealthy", "starting", "stopped", "absent"])
def test_not_healthy_fails_naming_the_state(state, monkeypatch):
    outcome, detail = zookeeper_check("compose", [{"component": "zookeeper", "state": state}], monkeypatch)
    assert outcome == doctor.FAIL and f"zookeeper {state}" in detail


def test_no_row_for_it_fails(monkeypatch):
    outcome, detail = zookeeper_check("compose", [{"component": "trino", "state": "healthy"}], monkeypatch)
    assert outcome == doctor.FAIL and "reports no zookeeper" in detail


def test_tiering_lag_per_table_from_prometheus(monkeypatch):
    from sagaz_lakehouse import addresses, clients, doctor
    from sagaz_lakehouse.stack import View

    answers = {
        "query": {"data": {"result": [
            {"metric": {"database": "sagaz", "table": "saga_events"}, "value": [0, "45000"]},
            {"metric": {"database": "sagaz", "table": "fresh"}, "value": [0, "-1"]}]}},  # never tiered: left out
        "targets": {"data": {"activeTargets": [{"labels": {"instance": "zookeeper"}, "health": "up", "scrapeUrl": ""},
                                               {"labels": {"instance": "trino"}, "health": "up", "scrapeUrl": ""}]}},
    }
    monkeypatch.setattr(clients, "http_json",
                        lambda url, timeout=5.0: answers["query" if "query" in url else "targets"])
    settings = lakehouse.load_settings(None, environ={})
    endpoints = addresses.endpoints(settings, View.EXTERNAL)
    assert doctor.tiering_lag(endpoints) == {"sagaz.saga_events": 45.0}
    probes = doctor.component_probes(settings, config.DEV_CREDENTIALS, endpoints, list)
    with pytest.raises(doctor.CheckFailed) as failed:  # 45 s > 3 x 10 s freshness (dev)
        probes["prometheus + tiering lag"]()
    assert failed.value.status == doctor.WARN
    assert failed.value.detail == "2/2 targets up; tiering lag: sagaz.saga_events 45.0s (alert above 30s)"


@pytest.mark.parametrize(("state", "outcome"), [("building", "warn"), ("build failed", "fail")])
def test_prometheus_still_built_in_the_background_is_a_warning_and_a_failed_build_a_failure(state, outcome):
    """A cold first `up` on the local target leaves Prometheus to a background build: doctor says so instead of
    failing on an unreachable Prometheus (nothing in the data path waits for it); a failed build fails."""
    from sagaz_lakehouse import addresses, doctor
    from sagaz_lakehouse.stack import View

    settings = lakehouse.load_settings(None, environ={})
    rows = [{"component": "prometheus", "state": state, "detail": "log: /run/logs/prometheus-build.log"}]
    probes = doctor.component_probes(settings, config.DEV_CREDENTIALS, addresses.endpoints(settings, View.EXTERNAL),
                                     lambda: rows)
    with pytest.raises(doctor.CheckFailed) as failed:
        probes["prometheus + tiering lag"]()
    assert failed.value.status == outcome and state in failed.value.detail
    assert "prometheus-build.log" in failed.value.detail
