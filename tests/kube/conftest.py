"""The `cluster` fixture: one real control plane (tests/kube/cluster.py) shared by every test of the session;
`stack`: a stack of its own namespace on it, purged afterwards (tests/kube/stacks.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cluster import TestCluster, start_cluster
from stacks import Stack


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    with start_cluster(tmp_path_factory.mktemp("kube-cluster")) as running:
        yield running


@pytest.fixture
def stack(cluster, tmp_path):
    made = Stack(cluster, tmp_path)
    yield made
    made.driver.down(purge=True)
