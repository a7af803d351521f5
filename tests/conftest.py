"""Test layout: unit/ (fast, no servers), compose/ and kubernetes/ (rendering, real validators), e2e/ (the real
servers on loopback), kube/ (a real Kubernetes API server). Shared helpers live in support.py.

`make test` runs the suite on two pytest-xdist workers (``--dist loadgroup``), one per *lane* below, then the
``serial`` tests alone. A lane is a group of modules that must share one worker: their session fixtures (the kwok
API server, the real node) start once per worker, and the stacks of a lane run one after another, so at most two
stacks share the 2 cores. Tests outside a lane are fast and go to whichever worker is free."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
LANES = {  # top-level folder under tests/ -> xdist group
    "e2e": "local-stacks",  # the local target's stacks, each on its own ports
    "containers": "engines",  # the private Docker Engine's compose stacks
    "kube": "engines",  # the kwok API server and the real single-node cluster
}


def pytest_itemcollected(item: pytest.Item) -> None:
    """Marks each test of a lane as it is collected: xdist reads the marks in its own collection hook."""
    if not item.config.pluginmanager.hasplugin("xdist"):  # a plain `pytest` run: one process, no lanes
        return
    folder = Path(item.fspath).resolve().relative_to(TESTS).parts[0]
    if folder in LANES and not item.get_closest_marker("serial"):
        item.add_marker(pytest.mark.xdist_group(LANES[folder]))
