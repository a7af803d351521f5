"""The alert rules and the generated Prometheus configuration, checked by the pinned promtool.

``promtool check rules`` and ``promtool check config`` validate what every target renders; ``promtool test rules``
runs ``tests/unit/prometheus/alerts_test.yml`` against the rules rendered for the dev profile, and every alert of the
rules file must fire in at least one of its cases. promtool is built by ``make tools`` (scripts/tools/prometheus.sh).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from support import tool

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import security, versions
from sagaz_lakehouse.components import prometheus
from sagaz_lakehouse.targets.compose import layout as compose
from sagaz_lakehouse.targets.kubernetes import layout as kubernetes
from sagaz_lakehouse.targets.local import layout as local

CASES = Path(__file__).resolve().parent / "prometheus" / "alerts_test.yml"


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tool(f"promtool-{versions.PROMETHEUS.version}")), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return result.stdout


def alert_names(rules: str) -> list[str]:
    return [r["alert"] for g in yaml.safe_load(rules)["groups"] for r in g["rules"] if "alert" in r]


@pytest.mark.parametrize("profile", ["dev", "prod"])
def test_rules_pass_promtool_check(tmp_path, profile):
    settings = lakehouse.load_settings(None, environ={}, overrides={"profile": profile})
    (tmp_path / "rules.yml").write_text(prometheus.alert_rules(settings))
    out = ok(promtool("check", "rules", "--lint=all", "--lint-fatal", "rules.yml", cwd=tmp_path))
    rules = [r for g in yaml.safe_load(prometheus.alert_rules(settings))["groups"] for r in g["rules"]]
    assert f"SUCCESS: {len(rules)} rules found" in out


def test_tiering_lag_threshold_is_three_freshness_intervals():
    assert prometheus.tiering_lag_threshold_ms(lakehouse.load_settings(None, environ={})) == 30_000  # dev: 10s
    prod = lakehouse.load_settings(None, environ={}, overrides={"profile": "prod"})
    assert prometheus.tiering_lag_threshold_ms(prod) == 540_000  # prod: 3min
    assert prometheus.LAG_THRESHOLD_TOKEN not in prometheus.alert_rules(prod)
    assert "> 540000" in prometheus.alert_rules(prod)


def test_every_alert_has_a_case_that_fires(tmp_path):
    rules = prometheus.alert_rules(lakehouse.load_settings(None, environ={}))
    shutil.copy(CASES, tmp_path / CASES.name)
    (tmp_path / "rules.yml").write_text(rules)
    ok(promtool("test", "rules", CASES.name, cwd=tmp_path))
    cases = yaml.safe_load(CASES.read_text())["tests"]
    fired = {t["alertname"] for case in cases for t in case.get("alert_rule_test", []) if t["exp_alerts"]}
    quiet = {t["alertname"] for case in cases for t in case.get("alert_rule_test", []) if not t["exp_alerts"]}
    assert set(alert_names(rules)) == fired, "every alert needs a case where it fires, and only alerts of the file"
    assert set(alert_names(rules)) <= quiet, "every alert needs a case where it stays quiet"


def test_the_anomaly_rules_take_their_windows_from_the_settings():
    settings = lakehouse.load_settings(None, environ={}, overrides={"anomaly": {
        "window": "20s", "baseline": "90s", "sustained": "15s", "threshold": "2.5"}})
    rules = prometheus.alert_rules(settings)
    assert "[20s]" in rules and "[90s] offset 35s" in rules and "for: 15s" in rules and "> 2.5 * clamp_min" in rules
    assert "__ANOMALY" not in rules
    defaults = prometheus.alert_rules(lakehouse.load_settings(None, environ={}))
    assert "[300s]" in defaults and "[21600s] offset 900s" in defaults and "for: 600s" in defaults


def rendered(files, prefix: str) -> dict[str, str]:
    return {f.path.removeprefix(prefix): f.content for f in files if f.path.startswith(prefix)}


@pytest.mark.parametrize("target", ["local", "compose", "kubernetes"])
def test_generated_config_passes_promtool_check(tmp_path, target):
    settings = lakehouse.load_settings(None, environ={},
                                       overrides={"replicas": {"tablet_servers": 2, "trino_workers": 1},
                                                  "monitoring": {"app_targets": "app:8000, 10.0.0.7:9100"}})
    credentials = lakehouse.resolve_credentials(settings, environ={})
    if target == "local":
        files = rendered(local.files(settings, credentials, local.Layout(tmp_path / "run", tmp_path)),
                         "config/prometheus/")
    elif target == "compose":
        files = rendered(compose.files(settings, credentials), "config/prometheus/")
    else:
        (config_map,) = [o for m in kubernetes.manifests(settings, credentials) for o in m.objects
                         if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "prometheus-config"]
        files = {key.replace("_", "/", 1) if key.startswith("rules_") else key: value
                 for key, value in config_map["data"].items()}
    # The files the configuration names by absolute path (the secrets folder in a container, the run folder natively)
    # are checked here, beside it; the bearer token MinIO's metrics want is a secret file of its own.
    native = str(tmp_path / "run" / "config" / "prometheus")
    files = {name: content.replace(security.SECRETS_DIR, str(tmp_path)).replace(native, str(tmp_path))
             for name, content in files.items()}
    files.setdefault("minio-token", "a-token")
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    ok(promtool("check", "config", "prometheus.yml", cwd=tmp_path))
    minio = next(j for j in yaml.safe_load(files["prometheus.yml"])["scrape_configs"] if j["job_name"] == "minio")
    assert minio["authorization"] == {"type": "Bearer", "credentials_file": str(tmp_path / "minio-token")}
    document = yaml.safe_load(files["prometheus.yml"])
    jobs = {job["job_name"]: [t["targets"][0] for t in job["static_configs"]] for job in document["scrape_configs"]}
    assert set(jobs) == {"prometheus", "zookeeper", "minio", "fluss-coordinator", "fluss-tablet", "flink-jobmanager",
                         "flink-taskmanager", "trino", "lake-maintenance", "sagaz-apps",
                         *(["trino-worker"] if target != "local" else [])}
    assert jobs["sagaz-apps"] == ["app:8000"]
    apps = next(j for j in document["scrape_configs"] if j["job_name"] == "sagaz-apps")
    assert apps["static_configs"][0]["targets"] == ["app:8000", "10.0.0.7:9100"]
    p = settings.ports
    if target == "local":  # every instance on loopback at its own host port
        assert jobs["fluss-tablet"] == [f"127.0.0.1:{p.fluss_tablet_metrics + i}" for i in range(2)]
        assert jobs["zookeeper"] == [f"127.0.0.1:{p.zookeeper_metrics}"]
    elif target == "compose":  # service names, container ports
        assert jobs["fluss-tablet"] == ["fluss-tablet-0:9249", "fluss-tablet-1:9249"]
        assert jobs["trino-worker"] == [f"trino-worker-0:{p.trino}"]
    else:  # replicas by their pod DNS names, the rest by their Service
        assert jobs["fluss-tablet"] == ["fluss-tablet-0.fluss-tablet-headless:9249",
                                        "fluss-tablet-1.fluss-tablet-headless:9249"]
        assert jobs["minio"] == [f"minio:{p.minio}"]
    trino = next(j for j in document["scrape_configs"] if j["job_name"] == "trino")
    assert trino["http_headers"] == {"X-Trino-User": {"values": ["prometheus"]}}
