"""Background builds on the local target (targets.local.background): `up` leaves an instance whose software is
still being built to a builder process, which starts it once built and hands it to the watchdog; `down` stops the
builder and nothing starts after it; a failed build is reported with its log and built again by the next `up`.
Real processes: the "build" is a python one-liner that writes the component's program after a delay."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from test_watchdog import wait_until

from sagaz_lakehouse.targets.local import background
from sagaz_lakehouse.targets.local import watchdog as wd

NAME = "prometheus"
SECRET = "s3cr3t-value-of-the-built-component"


def build_command(program: Path, delay: float, code: int = 0) -> list[str]:
    """Writes ``program`` (a fake server that prints its secret variable and sleeps) after ``delay`` seconds."""
    server = "import os,time; print('up', os.environ.get('SECRET_VALUE'), flush=True); time.sleep(600)"
    script = (f"import sys,time; time.sleep({delay}); print('compiling', flush=True); "
              f"open({str(program)!r}, 'w').write({server!r}); sys.exit({code})")
    return [sys.executable, "-c", script]


def leave_pending(run_dir: Path, program: Path) -> None:
    """What `up` does for an instance built later: its start specification goes to pending/, not specs/."""
    wd.write_spec(run_dir, NAME, [sys.executable, str(program), str(run_dir)], {"SECRET_VALUE": SECRET},
                  pending=True)


def test_the_builder_starts_the_instance_once_built_and_hands_it_to_the_watchdog(run_dir: Path,
                                                                                   tmp_path: Path) -> None:
    program = tmp_path / "server.py"
    wd.write_spec(run_dir, NAME, [sys.executable, str(program), str(run_dir)])  # an earlier `up`'s, binary since gone
    leave_pending(run_dir, program)
    assert not wd.spec_path(run_dir, NAME).exists(), "the watchdog must not start what is still being built"
    background.launch(run_dir, NAME, [NAME], build_command(program, delay=1.5))
    building = background.state(run_dir, NAME)
    assert building is not None and building.state == "building", building
    assert str(background.build_log(run_dir, NAME)) in building.detail
    assert background.launch(run_dir, NAME, [NAME], ["false"]) == background.running_pid(run_dir, NAME), \
        "a second `up` while it builds must not start a second build"

    wait_until(lambda: wd.component_pid(run_dir, NAME) is not None, timeout=20, what="the built instance to start")
    wait_until(lambda: background.state(run_dir, NAME) is None, what="the builder to finish")
    assert wd.spec_path(run_dir, NAME).exists() and not wd.pending_path(run_dir, NAME).exists()
    wait_until(lambda: f"up {SECRET}" in wd.component_log_file(run_dir, NAME).read_text(),
               what="the instance's own environment (from the 0600 env file)")
    log = background.build_log(run_dir, NAME).read_text()
    assert "compiling" in log and f"{NAME}: started" in log
    assert SECRET not in log

    wd.start(run_dir)  # from now on the watchdog restarts it like any instance
    first = wd.component_pid(run_dir, NAME)
    assert first is not None
    os.killpg(first, signal.SIGKILL)
    wait_until(lambda: wd.component_pid(run_dir, NAME) not in (None, first), timeout=20,
               what="the watchdog to restart the built instance")


def test_down_stops_the_build_and_nothing_starts_after_it(run_dir: Path, tmp_path: Path) -> None:
    program = tmp_path / "server.py"
    leave_pending(run_dir, program)
    pid = background.launch(run_dir, NAME, [NAME], build_command(program, delay=60))
    assert background.stop_all(run_dir) == [NAME]
    wait_until(lambda: not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid), what="the builder to stop")
    assert background.state(run_dir, NAME) is None
    assert not wd.pending_path(run_dir, NAME).exists()
    time.sleep(1)
    assert wd.component_pid(run_dir, NAME) is None and not program.exists()
    assert background.stop_all(run_dir) == [], "down twice is fine"


def test_a_build_that_ends_after_down_starts_nothing(run_dir: Path, tmp_path: Path) -> None:
    program = tmp_path / "server.py"
    leave_pending(run_dir, program)
    wd.pending_path(run_dir, NAME).unlink()  # `down` removed it while the build was finishing
    assert background.main([str(run_dir), NAME, f"--start={NAME}", "--", *build_command(program, 0)]) == 0
    assert program.exists() and wd.component_pid(run_dir, NAME) is None
    assert not wd.spec_path(run_dir, NAME).exists()


def test_a_failed_build_is_reported_with_its_log_and_built_again_by_the_next_up(run_dir: Path,
                                                                                 tmp_path: Path) -> None:
    program = tmp_path / "server.py"
    leave_pending(run_dir, program)
    background.launch(run_dir, NAME, [NAME], build_command(program, delay=0, code=7))
    wait_until(lambda: (b := background.state(run_dir, NAME)) is not None and b.state == "build failed",
               what="the failure to be recorded")
    failed = background.state(run_dir, NAME)
    assert failed is not None and "exited 7" in failed.detail and "compiling" in failed.log_tail
    assert wd.component_pid(run_dir, NAME) is None and wd.pending_path(run_dir, NAME).exists()

    background.launch(run_dir, NAME, [NAME], build_command(program, delay=0))
    wait_until(lambda: wd.component_pid(run_dir, NAME) is not None, timeout=20, what="the second build's start")
    assert background.state(run_dir, NAME) is None


@pytest.fixture
def run_dir(tmp_path: Path):
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    yield folder
    background.stop_all(folder, grace=1)  # never leave a builder or a fake component behind
    pid = wd.component_pid(folder, NAME)
    if pid is not None:
        os.killpg(pid, signal.SIGKILL)
    wd.stop(folder, grace=2)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "zombie"
