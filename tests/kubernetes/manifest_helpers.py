"""Helpers for the Kubernetes manifest tests: render a variant, parse every object, find things in them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import render, tls
from sagaz_lakehouse.config import Credentials, Settings
from sagaz_lakehouse.targets import base

# Distinctive credentials, so a leak into any other file is unmistakable; prod's passwords and Trino's key too.
CREDENTIALS = Credentials("AKIDtestaccess", "s3cr3t-value-that-must-stay-in-the-secret",
                          "fluss-password-that-must-stay-in-the-secret", "trino-password-that-must-stay-in-the-secret",
                          tls.self_signed_keystore(("127.0.0.1", "localhost", "trino")))

# Variants every structural test runs on: dev/prod, 1 and 3 tablet servers, Trino workers, a storage class.
VARIANTS: dict[str, dict[str, Any]] = {
    "dev": {},
    "prod": {"profile": "prod"},
    "three-tablets": {"replicas.tablet_servers": 3},
    "trino-workers": {"replicas.trino_workers": 2, "replicas.flink_taskmanagers": 2},
    "prod-big": {"profile": "prod", "replicas.tablet_servers": 3, "replicas.trino_workers": 1,
                 "volumes.storage_class": "fast-ssd", "kubernetes.namespace": "lake-prod",
                 "lake.bucket": "other-bucket", "lake.region": "eu-west-1"},
}


# The memory of the stack the real single-node cluster runs (tests/kubernetes/kubelet): small but above every
# floor, since the machine is shared (about 6 GiB for the whole stack). The scanners check the same rendering.
SMALL_MEMORY = {"zookeeper": "256Mi", "minio": "256Mi", "rest_catalog": "384Mi", "fluss_coordinator": "768Mi",
                "fluss_tablet": "1Gi", "flink_jobmanager": "768Mi", "flink_taskmanager": "1536Mi", "trino": "1Gi"}


def settings_for(**overrides: Any) -> Settings:
    return lakehouse.load_settings(None, {"target": "kubernetes", **overrides}, environ={})


@dataclass
class Rendered:
    settings: Settings
    files: dict[str, render.RenderedFile]
    objects: list[tuple[str, dict[str, Any]]]  # (file path, object)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for _, o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for obj in self.of_kind(kind):
            if obj["metadata"]["name"] == name:
                return obj
        raise KeyError(f"{kind}/{name}")

    def workloads(self) -> list[dict[str, Any]]:
        return [o for _, o in self.objects if o["kind"] in ("StatefulSet", "Deployment", "Job")]

    def config_data(self, name: str) -> dict[str, str]:
        return self.get("ConfigMap", name)["data"]

    def workload(self, name: str) -> dict[str, Any]:
        """The StatefulSet, Deployment or Job of a component (a Job's name carries a digest after the component's)."""
        (found,) = [w for w in self.workloads() if w["metadata"]["labels"]["app.kubernetes.io/component"] == name]
        return found

    def main(self, name: str) -> dict[str, Any]:
        """The component's own container (init containers left out)."""
        return next(containers(self.workload(name), init=False))

    def mounted_file(self, name: str, path: str) -> str:
        """The content of the file the component's container sees at ``path``, read from the ConfigMap key that
        is mounted there, or from the Secret's key a secret volume puts there (KeyError when nothing is)."""
        workload = self.workload(name)
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"].get("volumes", [])}
        for mount in self.main(name).get("volumeMounts", []):
            if mount["mountPath"] == path and "configMap" in volumes.get(mount["name"], {}):
                config_map = volumes[mount["name"]]["configMap"]["name"]
                return self.config_data(config_map)[mount["subPath"]]
            secret = volumes.get(mount["name"], {}).get("secret")
            if secret and path.startswith(mount["mountPath"] + "/"):
                items = {item["path"]: item["key"] for item in secret["items"]}
                key = items[path.removeprefix(mount["mountPath"] + "/")]
                return self.get("Secret", secret["secretName"])["stringData"][key]
        raise KeyError(f"{name}: nothing mounted at {path}")


def render_variant(overrides: dict[str, Any], credentials: Credentials = CREDENTIALS) -> Rendered:
    settings = settings_for(**overrides)
    files = {f.path: f for f in base.render(settings, credentials, "kubernetes")}
    objects = [(path, obj) for path, f in files.items() if path != "kustomization.yaml"
               for obj in yaml.safe_load_all(f.content) if obj is not None]
    return Rendered(settings, files, objects)


def containers(workload: dict[str, Any], init: bool = True) -> Iterator[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    yield from spec.get("initContainers", []) if init else ()
    yield from spec["containers"]


def env(container: dict[str, Any]) -> dict[str, Any]:
    """Name → value, or the valueFrom source for variables that are references."""
    return {e["name"]: e["value"] if "value" in e else e["valueFrom"] for e in container.get("env", [])}


def properties(text: str, separator: str) -> dict[str, str]:
    """Parse 'key: value' (Fluss, Flink) or 'key=value' (Java properties, zoo.cfg) lines; '#' lines are comments."""
    out = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition(separator)
            out[key.strip()] = value.strip()
    return out
