"""The `cluster` fixture: one real control plane (tests/kube/cluster.py) shared by every test of the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cluster import TestCluster, start_cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    with start_cluster(tmp_path_factory.mktemp("kube-cluster")) as running:
        yield running
