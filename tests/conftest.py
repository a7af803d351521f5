"""Test layout: a folder per thing exercised, and in it a folder per kind of test. A test's marks follow its folder
(``SUITES``; pyproject.toml says what each mark means), so ``-m`` selects by folder and no module declares its own:

- ``unit/``: fast, no servers (settings, the stack model, the CLI, doctor, the query packs, the listener, ...)
- ``local/``: the local target: ``unit/`` (layout, supervisor, watchdog), ``stacks/`` (real servers on loopback,
  e2e), ``timed/`` (the fault test, e2e and serial)
- ``compose/``: ``unit/`` (the project as rendered, the driver), ``validate/`` (the real docker-compose binary and the
  Compose schema), ``engine/`` (stand-in images and the compose stack on a real Docker Engine)
- ``kubernetes/``: ``unit/`` (manifests, scripts, driver logic), ``scan/`` (checkov, kube-score), ``apiserver/`` (a
  real API server, kwok for the kubelet), ``kubelet/`` (a real single-node cluster)

Shared helpers live beside this file: support.py (ports, the CLI, SuiteStack), running.py (RunningStack, the one
running-stack helper), saga_data.py.

`make test` runs the suite on two pytest-xdist workers (``--dist loadgroup``), one per *lane* below, then the
``serial`` tests alone. A lane is a group of tests that must share one worker: their session fixtures (the kwok
API server, the real node) start once per worker, and the stacks of a lane run one after another, so at most two
stacks share the 2 cores. Tests outside a lane are fast and go to whichever worker is free. A module may run in
another lane than its marks say (MOVED), to even out the lanes."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SUITES = {  # folder under tests/ -> the marks of every test in it
    "unit": ("unit",),
    "local/unit": ("unit",),
    "local/stacks": ("e2e",),
    "local/timed": ("e2e", "serial"),  # its recovery budgets are timed: run alone
    "compose/unit": ("unit",),
    "compose/validate": ("compose",),
    "compose/engine": ("containers",),
    "kubernetes/unit": ("unit",),
    "kubernetes/scan": ("scan",),
    "kubernetes/apiserver": ("kube",),
    "kubernetes/kubelet": ("kubelet",),
}
LANES = {  # mark -> xdist group
    "e2e": "local-stacks",  # the local target's stacks, each on its own ports
    "containers": "engines",  # the private Docker Engine's compose stacks
    "kube": "engines",  # the kwok API server ...
    "kubelet": "engines",  # ... and the real single-node cluster
}


# Modules that run in another lane than their marks say (path under tests/ -> lane), to even out the lanes' busy
# times (issue 29): the local-stacks lane was the critical path (CI of 2026-12-06: local-stacks 1935 s, engines
# 1563 s, the fast tests 169 s, which fill in at the end of whichever lane finishes first). A module moved here still
# runs one stack at a time on its own port block (support.suite_ports), and the engines lane runs its own stacks one
# after another, so at most two stacks share the 2 cores as before. The external-catalog module needs nothing of the
# local-stacks lane (its catalog is a stand-in of its own on its own port): it runs after the Kubernetes tests.
MOVED = {
    "local/stacks/test_external_catalog_on_stack.py": "engines",
}


def lane_of(marks: Iterable[str]) -> str | None:
    """The lane of a test with these marks (None: it goes to whichever worker is free)."""
    given = set(marks)
    return next((lane for mark, lane in LANES.items() if mark in given), None)


def lane_of_test(path: Path, marks: Iterable[str]) -> str | None:
    """The lane of the test in ``path``: its module's in MOVED, else its marks'."""
    return MOVED.get(path.resolve().relative_to(TESTS).as_posix()) or lane_of(marks)


def suite_marks(path: Path) -> tuple[str, ...]:
    """The marks of a test file: those of the nearest folder of SUITES above it."""
    folder = path.resolve().parent.relative_to(TESTS)
    for candidate in (folder, *folder.parents):
        if candidate.as_posix() in SUITES:
            return SUITES[candidate.as_posix()]
    raise pytest.UsageError(f"{path} is in no suite folder: move it into one of tests/{', tests/'.join(SUITES)}")


def pytest_configure(config: pytest.Config) -> None:
    stale = [path for path in MOVED if not (TESTS / path).is_file()]
    if stale:  # a renamed module would silently go back to its marks' lane
        raise pytest.UsageError(f"tests/conftest.py MOVED names no test module: {', '.join(stale)}")


def pytest_itemcollected(item: pytest.Item) -> None:
    """Marks each test as it is collected, before `-m` selects and xdist groups (both read the marks later)."""
    marks = suite_marks(Path(item.fspath))
    for mark in marks:
        item.add_marker(getattr(pytest.mark, mark))
    if "serial" in marks or not item.config.pluginmanager.hasplugin("xdist"):  # serial runs alone; no xdist: no lanes
        return
    lane = lane_of_test(Path(item.fspath), marks)
    if lane:
        item.add_marker(pytest.mark.xdist_group(lane))


# -- where the time goes (issue 29): each worker's busy time and each lane's, at the end of a run on xdist workers ---

_BUSY: dict[str, dict[str, float]] = {"worker": {}, "lane": {}}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Adds the report's phase (setup, call or teardown) to its worker and its lane. Under xdist the controller
    sees every worker's reports; without it everything is one worker, "main"."""
    worker = getattr(getattr(report, "node", None), "gateway", None)
    group = report.nodeid.rpartition("@")[2]  # loadgroup names a test of a group "<node id>@<group>"
    lane = group if group in LANES.values() else "outside a lane"
    for kind, key in (("worker", worker.id if worker else "main"), ("lane", lane)):
        _BUSY[kind][key] = _BUSY[kind].get(key, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if set(_BUSY["worker"]) <= {"main"}:  # one process: its own wall time says it all
        return
    for kind, busy in _BUSY.items():
        times = ", ".join(f"{key} {seconds:.0f} s" for key, seconds in sorted(busy.items(), key=lambda kv: -kv[1]))
        terminalreporter.write_line(f"busy time by {kind}: {times}")
