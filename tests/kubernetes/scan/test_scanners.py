"""checkov and kube-score on the rendered prod Kubernetes manifests: every check passes but the allow-listed ones
(tests/kubernetes/scan/scanner-allowlist.yaml, each with its reason). The scanners come from `make tools`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from manifest_helpers import SMALL_MEMORY, settings_for
from support import tool

from sagaz_lakehouse import config, tls
from sagaz_lakehouse import render as rendering
from sagaz_lakehouse.config import Credentials
from sagaz_lakehouse.targets import base

ALLOWLIST = yaml.safe_load((Path(__file__).parent / "scanner-allowlist.yaml").read_text())


def by_digest(image: str) -> str:
    """The image pinned as a production rendering pins it: name:tag@sha256:<digest> (a made-up digest; the
    scanners read the reference, nothing pulls it)."""
    return f"{image}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


DEFAULTS = config.Images()
# The prod profile as the real-node suite runs it (tests/kubernetes/kubelet: every image by digest, its memory, a
# jar mirror inside the cluster), scaled out, with the real-time queries' gateway on so that it is scanned too.
PROD = {"profile": "prod", "replicas.tablet_servers": 3, "replicas.trino_workers": 2, "analytics.sql_gateway": "on",
        "local.maven_repository": "http://10.214.0.1:15000",
        **{f"memory.{name}": value for name, value in SMALL_MEMORY.items()},
        **{f"images.{f.name}": by_digest(getattr(DEFAULTS, f.name)) for f in dataclasses.fields(config.Images)}}
CREDENTIALS = Credentials("scan-access", "scan-secret-value", "scan-fluss-password", "scan-trino-password",
                          tls.self_signed_keystore(("127.0.0.1", "localhost", "trino")))


def allowed(scanner: str) -> list[str]:
    return [entry[scanner] for entry in ALLOWLIST if scanner in entry]


@pytest.fixture(scope="module")
def prod_manifests(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("prod-manifests")
    files = base.render(settings_for(**PROD), CREDENTIALS, "kubernetes")
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
