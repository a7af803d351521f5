"""checkov and kube-score on the rendered prod Kubernetes manifests: every check passes but the allow-listed ones
(tests/kubernetes/scan/scanner-allowlist.yaml, each with its reason). The scanners come from `make tools`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from manifest_helpers import settings_for
from support import tool

from sagaz_lakehouse import render as rendering
from sagaz_lakehouse.config import Credentials
from sagaz_lakehouse.targets import base

ALLOWLIST = yaml.safe_load((Path(__file__).parent / "scanner-allowlist.yaml").read_text())
PROD = {"profile": "prod", "replicas.tablet_servers": 3, "replicas.trino_workers": 2}


def allowed(scanner: str) -> list[str]:
    return [entry[scanner] for entry in ALLOWLIST if scanner in entry]


@pytest.fixture(scope="module")
def prod_manifests(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("prod-manifests")
    files = base.render(settings_for(**PROD), Credentials("scan-access", "scan-secret-value"), "kubernetes")
    rendering.write_files(files, folder)
    return folder


def test_every_allowance_has_a_reason():
    for entry in ALLOWLIST:
        assert set(entry) <= {"checkov", "kube-score", "reason"} and len(entry.get("reason", "")) > 40, entry


def test_checkov_passes_but_the_allow_list(prod_manifests):
    result = subprocess.run([str(tool("checkov")), "-d", str(prod_manifests), "--framework", "kubernetes",
                             "--skip-check", ",".join(allowed("checkov")), "--output", "json", "--quiet"],
                            capture_output=True, text=True, timeout=600)
    report = json.loads(result.stdout)
    failed = sorted({f"{c['check_id']} {c['check_name']} ({c['resource']})"
                     for c in report["results"]["failed_checks"]})
    assert failed == [], "\n".join(failed)
    assert report["summary"]["passed"] > 500, report["summary"]  # it did scan the manifests


def test_kube_score_passes_but_the_allow_list(prod_manifests):
    flags = []
    for name in allowed("kube-score"):
        flags += [f"--{name}"] if name.startswith("ignore-") else ["--ignore-test", name]
    manifests = sorted(str(p) for p in prod_manifests.glob("*.yaml") if p.name != "kustomization.yaml")
    result = subprocess.run([str(tool("kube-score")), "score", "--output-format", "ci", *flags, *manifests],
                            capture_output=True, text=True, timeout=300)
    critical = [line for line in result.stdout.splitlines() if line.startswith("[CRITICAL]")]
    assert critical == [] and result.returncode == 0, "\n".join(critical) or result.stderr
    assert sum(line.startswith("[OK]") for line in result.stdout.splitlines()) > 100
