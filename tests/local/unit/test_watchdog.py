"""The local watchdog: restarts from recorded start specifications, backoff, crash loops, secrets kept out of the
specs, and the process lifecycle (start by `up`, stop by `down`). Fake components are python one-liners whose
command line carries the run folder (that is how pid files are trusted)."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse.targets.local import watchdog as wd
from sagaz_lakehouse.targets.local.supervisor import HealthProbe

SECRET = "s3cr3t-value-never-in-a-spec"


def wait_until(condition: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}", pytrace=False)
        time.sleep(0.05)


def sleeper(run_dir: Path, note: str = "") -> list[str]:
    """A long-lived fake component that writes its SECRET variable to its log (to prove the value arrived)."""
    code = "import os,sys,time; print('secret', os.environ.get('SECRET_VALUE'), flush=True); time.sleep(600)"
    return [sys.executable, "-c", code, str(run_dir), note]


def crasher(run_dir: Path, code: int = 3) -> list[str]:
    return [sys.executable, "-c", f"import sys; print('boom', flush=True); sys.exit({code})", str(run_dir)]


def start_component(run_dir: Path, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    """What `up` does today: start detached in its own group and write the pid file."""
    import subprocess

    (run_dir / "pids").mkdir(parents=True, exist_ok=True)
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    with (run_dir / "logs" / f"{name}.log").open("ab") as log:
        child = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    wd.component_pid_file(run_dir, name).write_text(f"{child.pid}\n")
    wait_until(lambda: wd.is_ours(child.pid, run_dir), what=f"{name} to exec")  # as `up` waits for health
    return child.pid


def kill(run_dir: Path, name: str) -> None:
    pid = wd.component_pid(run_dir, name)
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    wait_until(lambda: wd.component_pid(run_dir, name) is None, what=f"{name} to die")


@pytest.fixture
def run_dir(tmp_path: Path):
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    yield folder
    for pid_file in (folder / "pids").glob("*.pid"):  # never leave fake components behind
        pid = int(pid_file.read_text())
        if wd.is_ours(pid, folder):
            os.killpg(pid, signal.SIGKILL)
    wd.stop(folder, grace=2)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_spec_keeps_names_and_the_values_go_to_a_private_env_file(run_dir):
    spec = wd.write_spec(run_dir, "minio", ["/bin/minio", "server", str(run_dir)], {"SECRET_VALUE": SECRET},
                         fingerprint="abc")
    text = wd.spec_path(run_dir, "minio").read_text()
    assert SECRET not in text and json.loads(text)["env_names"] == ["SECRET_VALUE"]
    for path in (wd.spec_path(run_dir, "minio"), wd.env_path(run_dir, "minio")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(wd.folder(run_dir).stat().st_mode) == 0o700
    assert wd.load_specs(run_dir) == {"minio": spec}
    assert wd.environment_for(spec, {})["SECRET_VALUE"] == SECRET


def test_a_killed_component_is_restarted_from_its_spec_with_its_environment(run_dir):
    argv = sleeper(run_dir)
    first = start_component(run_dir, "tablet", argv, {"SECRET_VALUE": SECRET})
    wd.write_spec(run_dir, "tablet", argv, {"SECRET_VALUE": SECRET}, fingerprint="digest-1")
    clock = FakeClock()
    dog = wd.Watchdog(run_dir, wd.Policy(initial_backoff=1), environ={"PATH": os.environ["PATH"]}, clock=clock)
    dog.tick()
    assert wd.read_state(run_dir) == {} or wd.read_state(run_dir)["tablet"].restarts == 0

    kill(run_dir, "tablet")
    dog.tick()  # notices the death, schedules the restart after the backoff
    state = wd.read_state(run_dir)["tablet"]
    assert state.state == "restarting" and state.last_exit.startswith("unknown")
    dog.tick()
    assert wd.component_pid(run_dir, "tablet") is None  # backoff not over yet
    clock.now += 1.1
    dog.tick()
    pid = wd.component_pid(run_dir, "tablet")
    assert pid is not None and pid != first and os.getpgid(pid) == pid
    assert (run_dir / "pids" / "tablet.config").read_text().strip() == "digest-1"
    wait_until(lambda: f"secret {SECRET}" in wd.tail(wd.component_log_file(run_dir, "tablet")).split("restarting")[-1],
               what="the restarted process to see its secret")
    dog.tick()
    state = wd.read_state(run_dir)["tablet"]
    assert (state.state, state.restarts) == ("running", 1) and state.last_restart

    kill(run_dir, "tablet")  # our own child now: the exit status is known
    dog.tick()
    assert wd.read_state(run_dir)["tablet"].last_exit == "signal 9 (SIGKILL)"
    assert "1 restart(s)" in wd.status_rows(run_dir)["tablet"]


def test_backoff_doubles_and_a_crash_loop_stops_restarts_with_the_log_tail(run_dir):
    argv = crasher(run_dir, code=3)
    wd.write_spec(run_dir, "coordinator", argv, {"SECRET_VALUE": SECRET})
    clock, wall = FakeClock(), FakeClock()
    policy = wd.Policy(initial_backoff=1, max_backoff=4, crash_loop_restarts=3, crash_loop_window=600)
    dog = wd.Watchdog(run_dir, policy, environ={"PATH": os.environ["PATH"]}, clock=clock, wall=wall)
    delays = []
    for _ in range(3):
        dog.tick()  # notice: not running
        state = dog.states["coordinator"]
        delays.append(dog.tracked["coordinator"].backoff)
        clock.now += dog.tracked["coordinator"].backoff + 0.01
        wall.now += 1
        dog.tick()  # restart
        assert dog.states["coordinator"].state == "restarting"
        child = dog.tracked["coordinator"].child  # (the pid file check alone could run before the exec)
        wait_until(lambda child=child: child.poll() is not None, what="the crasher to exit")
    assert delays == [1, 2, 4]
    dog.tick()  # notices the third crash, with the exit code of our own child
    assert dog.states["coordinator"].last_exit == "exit code 3"
    clock.now += 10
    dog.tick()
    state = wd.read_state(run_dir)["coordinator"]
    assert state.state == "crash loop" and state.restarts == 3
    assert "boom" in state.log_tail and SECRET not in state.log_tail
    clock.now += 1000
    dog.tick()
    assert wd.component_pid(run_dir, "coordinator") is None and dog.states["coordinator"].restarts == 3
    assert "crash loop" in wd.status_rows(run_dir)["coordinator"]


def test_an_env_file_others_can_read_is_refused(run_dir):
    env_file = run_dir / "loose.env"
    env_file.write_text(f"SECRET_VALUE={SECRET}\n")
    env_file.chmod(0o644)
    wd.write_spec(run_dir, "minio", sleeper(run_dir), env_files=[env_file])
    dog = wd.Watchdog(run_dir, wd.Policy(initial_backoff=0), environ={})
    dog.tick()
    dog.tick()
    state = wd.read_state(run_dir)["minio"]
    assert state.state == "failed" and "readable by others" in state.detail
    assert wd.component_pid(run_dir, "minio") is None


def test_a_component_waits_for_its_dead_dependency(run_dir):
    wd.write_spec(run_dir, "zookeeper", sleeper(run_dir, "zk"))
    wd.write_spec(run_dir, "coordinator", sleeper(run_dir, "coord"), depends_on=["zookeeper"])
    clock = FakeClock()
    dog = wd.Watchdog(run_dir, wd.Policy(initial_backoff=0), environ={"PATH": os.environ["PATH"]}, clock=clock)
    assert wd.dependency_order(wd.load_specs(run_dir)) == ["zookeeper", "coordinator"]
    dog.tick()  # both noticed dead
    dog.tick()  # zookeeper restarted first, in the same pass the coordinator sees it alive
    assert wd.component_pid(run_dir, "zookeeper") is not None
    assert wd.component_pid(run_dir, "coordinator") is not None


def test_after_start_commands_run_once_the_restart_is_healthy(run_dir):
    marker = run_dir / "resubmitted"
    follow_up = [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('ok')"]
    wd.write_spec(run_dir, "jobmanager", sleeper(run_dir), after_start=[follow_up])
    dog = wd.Watchdog(run_dir, wd.Policy(initial_backoff=0), environ={"PATH": os.environ["PATH"]})
    dog.tick()
    dog.tick()  # restarted
    assert not marker.exists()
    dog.tick()  # alive and (no health probe) healthy: the follow-up runs
    assert marker.read_text() == "ok"
    assert wd.read_state(run_dir)["jobmanager"].state == "running"


def test_the_watchdog_process_restarts_a_killed_component_and_stops_when_told(run_dir):
    argv = sleeper(run_dir)
    start_component(run_dir, "tablet", argv)
    wd.write_spec(run_dir, "tablet", argv)
    pid = wd.start(run_dir, extra_args=["--interval", "0.1"])
    assert wd.start(run_dir) == pid  # idempotent
    kill(run_dir, "tablet")
    wait_until(lambda: wd.component_pid(run_dir, "tablet") is not None, timeout=20, what="the automatic restart")
    wait_until(lambda: wd.read_state(run_dir).get("tablet", wd.ComponentState()).restarts == 1, what="the record")
    assert wd.stop(run_dir) is True
    assert wd.running_pid(run_dir) is None and not wd.is_ours(pid, run_dir)
    assert wd.stop(run_dir) is False
    assert "watching" in (wd.folder(run_dir) / "watchdog.log").read_text()


def test_a_failing_liveness_check_gets_a_running_component_restarted(run_dir):
    argv = sleeper(run_dir, "jobmanager")
    first = start_component(run_dir, "jobmanager", argv)
    verdict = [sys.executable, "-c", "print('stalled-tiering: bucket 3'); raise SystemExit(1)"]
    wd.write_spec(run_dir, "jobmanager", argv, liveness=wd.Liveness(tuple(verdict), interval=0, failures=2, grace=0))
    clock = FakeClock()
    dog = wd.Watchdog(run_dir, wd.Policy(initial_backoff=0), environ={"PATH": os.environ["PATH"]}, clock=clock)

    def probe_round() -> None:
        dog.tick()  # starts the check in the background
        probe = dog.tracked["jobmanager"].probe
        assert probe is not None
        wait_until(lambda: probe.poll() is not None, what="the liveness check")
        clock.now += 1
        dog.tick()  # reads its verdict

    probe_round()
    assert wd.component_pid(run_dir, "jobmanager") == first  # one failure is not enough
    probe_round()
    wait_until(lambda: wd.component_pid(run_dir, "jobmanager") is None, what="the kill")
    assert "liveness check failed 2x: stalled-tiering: bucket 3" in dog.states["jobmanager"].detail
    dog.tick()  # noticed dead
    dog.tick()  # restarted
    assert wd.component_pid(run_dir, "jobmanager") not in (None, first)
    assert wd.read_state(run_dir)["jobmanager"].restarts == 1


def test_a_liveness_check_that_cannot_tell_changes_nothing(run_dir):
    argv = sleeper(run_dir)
    first = start_component(run_dir, "jobmanager", argv)
    unknown = [sys.executable, "-c", "raise SystemExit(3)"]
    wd.write_spec(run_dir, "jobmanager", argv, liveness=wd.Liveness(tuple(unknown), interval=0, failures=1, grace=0))
    dog = wd.Watchdog(run_dir, wd.Policy(initial_backoff=0), environ={"PATH": os.environ["PATH"]})
    for _ in range(3):
        dog.tick()
        probe = dog.tracked["jobmanager"].probe
        wait_until(lambda probe=probe: probe is None or probe.poll() is not None, what="the check")
    dog.tick()
    assert wd.component_pid(run_dir, "jobmanager") == first


def test_a_component_waits_until_its_dependency_answers_its_health_probe(run_dir):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens on it once closed
    start_component(run_dir, "catalog", sleeper(run_dir, "catalog"))
    wd.write_spec(run_dir, "catalog", sleeper(run_dir, "catalog"), health=HealthProbe("tcp", "127.0.0.1", port))
    wd.write_spec(run_dir, "coordinator", sleeper(run_dir, "coord"), depends_on=["catalog"])
    dog = wd.Watchdog(run_dir, wd.Policy(initial_backoff=0), environ={"PATH": os.environ["PATH"]})
    dog.tick()
    dog.tick()
    state = wd.read_state(run_dir)["coordinator"]
    assert (state.state, state.detail) == ("waiting", "waiting for catalog")
    assert wd.component_pid(run_dir, "coordinator") is None


def local_driver(run_dir: Path):
    from sagaz_lakehouse.targets.local.driver import LocalDriver

    settings = lakehouse.load_settings(None, {"local.run_dir": str(run_dir)}, environ={})
    return LocalDriver(settings, run_dir.parent, progress=lambda _m: None)


def test_status_shows_restarts_last_exit_and_a_crash_loop_with_its_log_tail(run_dir):
    wd.write_state(run_dir, {
        "fluss-tablet-0": wd.ComponentState("running", restarts=2, last_exit="signal 9 (SIGKILL)"),
        "fluss-tablet-1": wd.ComponentState("crash loop", restarts=5, last_exit="exit code 1",
                                            detail="5 restarts within 10 min; not restarting", log_tail="boom")})
    wd.write_spec(run_dir, "fluss-tablet-0", sleeper(run_dir))  # specs but no watchdog: status says so
    rows = {r["component"]: r for r in local_driver(run_dir).status()}
    tablet0, tablet1 = rows["fluss-tablet-0"], rows["fluss-tablet-1"]
    assert (tablet0["restarts"], tablet0["last_exit"]) == (2, "signal 9 (SIGKILL)")
    assert "2 restart(s)" in tablet0["detail"] and "SIGKILL" in tablet0["detail"]
    assert tablet1["state"] == "crash loop" and tablet1["log_tail"] == "boom" and tablet1["restarts"] == 5
    assert rows["watchdog"]["state"] == "stopped"
    assert "restarts" not in rows["zookeeper"]


def test_down_stops_the_watchdog_first_and_every_component_with_a_pid_file(run_dir):
    """Including an instance the settings no longer name (a third tablet server after scaling down)."""
    start_component(run_dir, "fluss-tablet-2", sleeper(run_dir))
    wd.write_spec(run_dir, "fluss-tablet-2", sleeper(run_dir))
    watchdog_pid = wd.start(run_dir)
    assert wd.running_pid(run_dir) == watchdog_pid
    local_driver(run_dir).down()
    assert wd.running_pid(run_dir) is None
    assert wd.component_pid(run_dir, "fluss-tablet-2") is None
    assert wd.load_specs(run_dir) == {} and wd.read_state(run_dir) == {}
