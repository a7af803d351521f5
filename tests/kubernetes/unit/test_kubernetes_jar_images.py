"""kubernetes.jars: baked — pods on images carrying the locked jars (jar_images): the render, the image names, and
the `build-images` command's plan and bad input. Building runs on the real node suite (tests/kubernetes/kubelet)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
from manifest_helpers import containers, render_variant, settings_for

from sagaz_lakehouse import artifacts, versions
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components import flink as flink_component
from sagaz_lakehouse.components import fluss
from sagaz_lakehouse.components.catalog import DRIVER_DIR
from sagaz_lakehouse.targets.kubernetes import jar_images
from sagaz_lakehouse.targets.kubernetes import layout as k8s

REGISTRY = "registry.example.com:5000/lake"
BAKED = {"profile": "prod", "kubernetes.jars": "baked", "kubernetes.registry": REGISTRY}
CLI = [sys.executable, "-m", "sagaz_lakehouse"]


@pytest.fixture(scope="module")
def baked():
    return render_variant(BAKED)


@pytest.fixture(scope="module")
def fetched():
    return render_variant({"profile": "prod"})


def test_baked_pods_fetch_nothing_and_reach_no_jar_repository(baked, fetched):
    for workload in baked.workloads():
        spec = workload["spec"]["template"]["spec"]
        assert all(c["name"] != "fetch-jars" for c in spec.get("initContainers", [])), workload["metadata"]["name"]
        assert all(v["name"] != "artifacts" for v in spec.get("volumes", [])), workload["metadata"]["name"]
    text = "\n".join(f.content for f in baked.files.values())
    assert "repo1.maven.org" not in text and "maven2" not in text
    # the jar repository's rule (its port, to any address) is gone from exactly the policies that had it; every
    # other rule stays (the tablet servers' rack lookup keeps 443 beside the API server's port, in a rule of its own)
    repository = {"ports": [{"protocol": "TCP", "port": 443}]}
    had = set()
    for policy in fetched.of_kind("NetworkPolicy"):
        name = policy["metadata"]["name"]
        egress = policy["spec"].get("egress", [])
        if repository in egress:
            had.add(name)
        twin = baked.get("NetworkPolicy", name)["spec"].get("egress", [])
        assert twin == [rule for rule in egress if rule != repository], name
    assert had == {s.COORDINATOR, s.TABLET, s.JOBMANAGER, s.TASKMANAGER, s.SUBMIT_TIERING, s.REST_CATALOG}


def test_baked_images_carry_the_jars_where_fetch_jars_put_them(baked):
    lock = artifacts.load_lock()
    images = jar_images.jar_images(baked.settings, k8s.build_stack(baked.settings, s.View.INTERNAL,
                                                                     k8s.instance_address).components, lock)
    assert sorted(images) == ["flink", "fluss", "rest_catalog"]  # Trino, ZooKeeper, MinIO... need no jars
    expected = {"flink": [("flink-lib-fluss", flink_component.LIB_DIR), ("tiering-job", k8s.ARTIFACTS_DIR)],
                "fluss": [("fluss-iceberg-extras", fluss.PLUGIN_DIR)],
                "rest_catalog": [("postgresql-jdbc", DRIVER_DIR)]}
    for field, groups in expected.items():
        files = dict(images[field].files)
        assert files == {f"{d}/{a.name}": a for g, d in groups for a in lock[g]}, field
        base = getattr(baked.settings.images, field)
        tag = base.split(":")[-1]
        assert images[field].reference == (f"{REGISTRY}/sagaz-lakehouse-{field.replace('_', '-')}:"
                                           f"{tag}-{images[field].digest[:12]}")
    users = {s.COORDINATOR: "fluss", s.TABLET: "fluss", s.JOBMANAGER: "flink", s.TASKMANAGER: "flink",
             s.SUBMIT_TIERING: "flink", s.REST_CATALOG: "rest_catalog"}
    for component, field in users.items():
        assert baked.main(component)["image"] == images[field].reference, component
    for workload in baked.workloads():  # every other container keeps its upstream image
        for container in containers(workload):
            image = container["image"]
            assert image.startswith(REGISTRY) or image in {getattr(baked.settings.images, f) for f in
                                                           baked.settings.images.__dataclass_fields__}, image


def test_the_tag_changes_with_the_lock_the_base_and_the_registry():
    settings = settings_for(profile="prod", **{"kubernetes.jars": "baked"})
    lock = artifacts.load_lock()
    stack = k8s.build_stack(settings, s.View.INTERNAL, k8s.instance_address)
    first = jar_images.jar_images(settings, stack.components, lock)["fluss"]
    assert first.reference == f"sagaz-lakehouse-fluss:{versions.FLUSS.version}-{first.digest[:12]}"  # no registry
    changed = {**lock, "fluss-iceberg-extras": [dataclasses.replace(a, sha256="0" * 64)
                                                for a in lock["fluss-iceberg-extras"]]}
    assert jar_images.jar_images(settings, stack.components, changed)["fluss"].reference != first.reference
    other = settings_for(profile="prod", **{"kubernetes.jars": "baked", "images.fluss": "mirror.example/fluss:0.9.1"})
    other_stack = k8s.build_stack(other, s.View.INTERNAL, k8s.instance_address)
    moved = jar_images.jar_images(other, other_stack.components, lock)["fluss"]
    assert moved.base == "mirror.example/fluss:0.9.1" and moved.digest != first.digest
    assert moved.reference.startswith("sagaz-lakehouse-fluss:0.9.1-")


def test_fetched_stays_the_default():
    assert settings_for().kubernetes.jars == "fetched"
    assert any(c["name"] == "fetch-jars" for w in render_variant({}).workloads()
               for c in w["spec"]["template"]["spec"].get("initContainers", []))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, check=False)


def test_build_images_dry_run_lists_the_render_s_images():
    result = run("build-images", "--dry-run", "--json", "--profile", "prod", "--set", f"kubernetes.registry={REGISTRY}")
    assert result.returncode == 0, result.stderr
    plan = {row["image"]: row for row in json.loads(result.stdout)}
    assert sorted(plan) == ["images.flink", "images.fluss", "images.rest_catalog"]
    rendered = render_variant(BAKED)
    assert plan["images.fluss"]["reference"] == rendered.main(s.COORDINATOR)["image"]
    assert {row["state"] for row in plan.values()} == {"would build"}


@pytest.mark.parametrize(("args", "field"), [
    (("--set", "kubernetes.jars=bake"), "kubernetes.jars"),
    (("--set", "kubernetes.registry=https://registry.example.com"), "kubernetes.registry"),
    (("--set", "kubernetes.registry=Registry.Example.com"), "kubernetes.registry"),
    (("--push",), "kubernetes.registry"),  # nowhere to push to
])
def test_build_images_bad_input_exits_2_naming_the_field(args, field):
    result = run("build-images", "--dry-run", *args)
    assert result.returncode == 2, result.stderr
    assert field in result.stderr


def test_build_images_is_for_kubernetes_only():
    result = run("build-images", "--dry-run", "--target", "compose")
    assert result.returncode == 2 and "kubernetes target" in result.stderr


def test_render_rejects_a_bad_jars_setting():
    result = run("render", "--target", "kubernetes", "--dry-run", "--set", "kubernetes.jars=yes")
    assert result.returncode == 2 and "kubernetes.jars" in result.stderr
