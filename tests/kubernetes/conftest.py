"""Fixtures of the Kubernetes suites; their helpers live beside this file.

- ``variant``, ``default``: rendered manifests (manifest_helpers.py), for unit/ and scan/
- ``cluster``: one real control plane (cluster.py) with kwok for the kubelet, shared by every test of the session;
  ``stack``: a stack of its own namespace on it, purged afterwards (stacks.py), for apiserver/
- ``real_cluster``: the control plane with a real node (node.py: containerd, kubelet, kube-proxy, CoreDNS, local
  volumes) running the stand-in images, for kubelet/
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from cluster import TestCluster, start_cluster
from manifest_helpers import VARIANTS, Rendered, render_variant
from node import RealCluster, baked_images, start_real_cluster
from stacks import Stack

import sagaz_lakehouse as lakehouse


@pytest.fixture(scope="session", params=list(VARIANTS), ids=list(VARIANTS))
def variant(request) -> Rendered:
    return render_variant(VARIANTS[request.param])


@pytest.fixture(scope="session")
def default() -> Rendered:
    return render_variant({})


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    with start_cluster(tmp_path_factory.mktemp("kube-cluster")) as running:
        yield running


@pytest.fixture
def stack(cluster, tmp_path):
    made = Stack(cluster, tmp_path)
    yield made
    made.driver.down(purge=True)


def stand_in_images() -> list[str]:
    """Every image the default settings render (images/ builds each under exactly that tag)."""
    images = lakehouse.load_settings(None, {}, environ={}).images
    return sorted({getattr(images, field) for field in images.__dataclass_fields__})


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt  # SIGTERM too ends the session through the teardown: the node is cleaned up

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        with start_real_cluster(tmp_path_factory.mktemp("real-cluster"),
                                stand_in_images() + baked_images()) as running:
            yield running
    finally:
        signal.signal(signal.SIGTERM, previous)
