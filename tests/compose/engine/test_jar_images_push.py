"""`build-images --push` to a real registry, and back: the way a team gets the images carrying the jars
(`kubernetes.jars: baked`) to a cluster that pulls from its own registry.

The registry is CNCF Distribution (scripts/tools/registry.sh builds it from the Go module proxy), started here on
loopback; the Docker Engine pushes to 127.0.0.0/8 over plain HTTP without configuration. The prod images are built
FROM the stand-ins with `kubernetes.registry` set, pushed, and found in the registry's own API under exactly the
names the Kubernetes render gives the pods; one is removed from the engine and pulled back, and its jars pass the
lock's sha256 check inside the pulled image.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import must, run
from support import cache_dir, free_ports

from sagaz_lakehouse import versions

TEAM = "team-lakehouse"  # the path under the registry host, as a team's registry has one
MANIFEST_TYPES = ", ".join(("application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                            "application/vnd.docker.distribution.manifest.v2+json",
                            "application/vnd.docker.distribution.manifest.list.v2+json"))


@pytest.fixture(scope="module")
def registry(engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a running registry; its storage and log in a folder of the test's."""
    binary = cache_dir() / "bin" / f"registry-{versions.REGISTRY_TEST}"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: `make tools` (scripts/tools/registry.sh) builds it", pytrace=False)
    folder = tmp_path_factory.mktemp("registry")
    address = f"127.0.0.1:{free_ports(1)[0]}"
    (folder / "config.yml").write_text(yaml.safe_dump({
        "version": 0.1, "log": {"level": "info"},
        "storage": {"filesystem": {"rootdirectory": str(folder / "data")}},
        "http": {"addr": address}}))
    log = (folder / "registry.log").open("wb")
    process = subprocess.Popen([str(binary), "serve", str(folder / "config.yml")], stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not _answers(f"http://{address}/v2/"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the registry did not start (exit {process.poll()}):\n"
                            f"{(folder / 'registry.log').read_text()[-3000:]}", pytrace=False)
            time.sleep(0.5)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:  # noqa: S310 - the test's own loopback registry
            return bool(reply.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def registry_json(url: str, accept: str = "application/json") -> tuple[dict, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Accept": accept})  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310 - loopback
        return json.loads(reply.read()), dict(reply.headers)


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "sagaz_lakehouse", *args], timeout=1800, cwd=tmp_path)


def test_build_images_pushes_the_jar_images_where_the_render_points_and_they_pull_back(registry, tmp_path):
    settings = ["--target", "kubernetes", "--profile", "prod", "--set", f"kubernetes.registry={registry}/{TEAM}",
                "--set", "kubernetes.jars=baked"]
    planned = json.loads(must(cli(tmp_path, "build-images", "--dry-run", "--json", *settings),
                              "build-images --dry-run").stdout)
    pushed = json.loads(must(cli(tmp_path, "build-images", "--push", "--json", *settings),
                             "build-images --push").stdout)
    assert [r["reference"] for r in pushed] == [r["reference"] for r in planned] and len(pushed) == 3
    assert all(r["state"].endswith(", pushed") for r in pushed), pushed

    for image in pushed:  # in the registry, by the registry's own API
        name, tag = image["reference"].removeprefix(f"{registry}/").rsplit(":", 1)
        assert name.startswith(f"{TEAM}/sagaz-lakehouse-"), image["reference"]
        tags, _ = registry_json(f"http://{registry}/v2/{name}/tags/list")
        assert tag in tags["tags"], tags
        _, headers = registry_json(f"http://{registry}/v2/{name}/manifests/{tag}", MANIFEST_TYPES)
        assert headers.get("Docker-Content-Digest", "").startswith("sha256:"), headers

    # The pods of the render run exactly these references (no fetch-jars init container to fetch anything).
    out = tmp_path / "render"
    must(cli(tmp_path, "render", *settings, "--placeholders", "--out", str(out)), "render")
    rendered = {c["image"] for doc in _documents(out) for c in _containers(doc)}
    assert {r["reference"] for r in pushed} <= rendered, sorted(rendered)
    assert not any(c["name"] == "fetch-jars" for doc in _documents(out) for c in _containers(doc))

    # Pulled back from the registry: the jars are in it, each as the lock has it.
    reference = next(r["reference"] for r in pushed if "sagaz-lakehouse-flink" in r["reference"])
    must(run(["docker", "image", "rm", reference]), f"docker image rm {reference}")
    must(run(["docker", "pull", reference], timeout=900), f"docker pull {reference}")
    checked = must(run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "sha256sum", reference,
                        "--check", "--strict", "/opt/sagaz-lakehouse/jars.sha256"], timeout=300),
                   f"the jars of {reference}").stdout
    flink = next(r for r in pushed if r["reference"] == reference)
    assert checked.count(": OK") == len(flink["jars"]) >= 1, checked


def _documents(folder: Path) -> list[dict]:
    return [doc for path in sorted(folder.rglob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def _containers(doc: dict) -> list[dict]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    if doc.get("kind") == "Job":
        spec = doc["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec.get("containers", [])]

