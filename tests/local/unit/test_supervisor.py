"""The local supervisor: pid files trusted only for our own live processes, health waits with log tails."""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from sagaz_lakehouse.errors import ComponentFailed
from sagaz_lakehouse.targets.local import class_cache
from sagaz_lakehouse.targets.local.supervisor import HealthProbe, ProcessSpec, Supervisor, port_owner, start_in_order


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_spec(run_dir, name: str, port: int, depends_on: tuple[str, ...] = ()) -> ProcessSpec:
    # A tiny real TCP server; the run folder in its argv marks it as ours.
    code = ("import socket,sys,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
            f"s.bind(('127.0.0.1',{port})); s.listen(); print('listening', flush=True); time.sleep(600)")
    return ProcessSpec(name, [sys.executable, "-c", code, str(run_dir)], health=HealthProbe("tcp", "127.0.0.1", port),
                       ports=(port,), depends_on=depends_on, timeout=20)


def test_start_in_dependency_order_then_idempotent_then_stop(tmp_path):
    supervisor = Supervisor(tmp_path)
    a, b = server_spec(tmp_path, "a", free_port()), server_spec(tmp_path, "b", free_port(), depends_on=("a",))
    events: list[str] = []
    assert start_in_order(supervisor, [b, a], events.append) == {"a": "started", "b": "started"}
    assert events.index("a: healthy") < events.index("b: starting")
    pid = supervisor.running_pid("a")
    assert pid and port_owner(a.ports[0])

    again = Supervisor(tmp_path)  # a later `up`, in another process: recognises its own processes by pid file
    assert start_in_order(again, [a, b], events.append) == {"a": "running", "b": "running"}
    assert again.running_pid("a") == pid
    assert again.stop("a", grace=5) and again.stop("b", grace=5)
    assert again.running_pid("a") is None and not port_owner(a.ports[0])
    assert "listening" in again.tail("a", 5)


def test_running_component_started_from_another_configuration_is_reported_not_restarted(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "server.yaml").write_text("a: 1\n")
    spec = replace(server_spec(tmp_path, "a", free_port()), config=(conf,), env={"MODE": "one"})
    supervisor = Supervisor(tmp_path)
    assert start_in_order(supervisor, [spec], lambda _m: None) == {"a": "started"}
    pid = supervisor.running_pid("a")
    events: list[str] = []
    try:
        assert start_in_order(Supervisor(tmp_path), [spec], events.append) == {"a": "running"}
        assert events == ["a: already running"]
        for changed in (replace(spec, env={"MODE": "two"}), replace(spec, config=(conf, "tiering args v2"))):
            events.clear()
            assert start_in_order(Supervisor(tmp_path), [changed], events.append) == {"a": "out of date"}
            assert "older configuration" in events[0] and "up --restart-changed` applies it" in events[0]
        (conf / "server.yaml").write_text("a: 2\n")
        assert Supervisor(tmp_path).out_of_date(spec)
        assert Supervisor(tmp_path).running_pid("a") == pid  # reported, never restarted behind the user's back
        assert "two" not in supervisor.config_file("a").read_text()  # a digest, never the environment itself
    finally:
        supervisor.stop("a", grace=5)
    assert not supervisor.config_file("a").exists()
    assert not Supervisor(tmp_path).out_of_date(spec)  # nothing running: nothing to compare


def test_launch_flags_go_after_the_executable_and_leave_the_fingerprint_alone(tmp_path):
    # A class cache trained meanwhile changes the flags of the next start, not what the process runs: a running
    # component must not show as out of date because of it.
    port = free_port()
    spec = server_spec(tmp_path, "a", port)
    flagged = replace(spec, launch_flags=("-X", "utf8"))  # python's own -X option: the argv it runs shows it
    assert flagged.fingerprint() == spec.fingerprint()
    supervisor = Supervisor(tmp_path)
    try:
        assert start_in_order(supervisor, [flagged], lambda _m: None) == {"a": "started"}
        pid = supervisor.running_pid("a")
        assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:3] == [b"-X", b"utf8"]
        assert start_in_order(Supervisor(tmp_path), [spec], lambda _m: None) == {"a": "running"}
    finally:
        supervisor.stop("a", grace=5)


def slow_exit_spec(run_dir: Path, name: str, exit_seconds: float, *argv: str) -> ProcessSpec:
    # On SIGTERM it works ``exit_seconds`` before it writes ``<name>.done`` and exits, as a training JVM writes its
    # class cache (class_cache.py); the extra argv stands for the JVM's flags.
    done = run_dir / f"{name}.done"
    code = ("import signal,sys,time,pathlib\n"
            "def leave(*_):\n"
            f"    time.sleep({exit_seconds}); pathlib.Path({str(done)!r}).write_text('written'); sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, leave)\n"
            "print('ready', flush=True)\n"
            "while True: time.sleep(0.1)\n")
    return ProcessSpec(name, [sys.executable, "-c", code, str(run_dir), *argv], timeout=20)


def test_a_jvm_training_its_class_cache_gets_the_time_to_write_it_at_stop(tmp_path):
    training = slow_exit_spec(tmp_path, "trains", 2.0, f"{class_cache.TRAINING_FLAG}{tmp_path / 'x.aot'}")
    plain = slow_exit_spec(tmp_path, "plain", 2.0)
    supervisor = Supervisor(tmp_path)
    for spec in (training, plain):
        supervisor.start(spec)
    deadline = time.monotonic() + 20
    while not all("ready" in supervisor.tail(name, 1) for name in ("trains", "plain")):
        assert time.monotonic() < deadline, supervisor.tail("trains", 5) + supervisor.tail("plain", 5)
        time.sleep(0.1)
    assert supervisor.stop("trains", grace=0.5) and supervisor.stop("plain", grace=0.5)
    assert (tmp_path / "trains.done").read_text() == "written"
    assert not (tmp_path / "plain.done").exists()  # the usual grace is kept for everything else
    assert supervisor.running_pid("trains") is None and supervisor.running_pid("plain") is None


def test_restart_changed_restarts_only_the_changed_component_after_its_dependencies(tmp_path):
    a, b = server_spec(tmp_path, "a", free_port()), server_spec(tmp_path, "b", free_port(), depends_on=("a",))
    supervisor = Supervisor(tmp_path)
    assert start_in_order(supervisor, [a, b], lambda _m: None) == {"a": "started", "b": "started"}
    pids = {name: supervisor.running_pid(name) for name in "ab"}
    changed = replace(b, env={"MODE": "two"})
    events: list[str] = []
    try:
        assert start_in_order(Supervisor(tmp_path), [a, changed], events.append, restart_changed=True) == {
            "a": "running", "b": "started"}
        assert events == ["a: already running", "b: stopped, to start with its new configuration", "b: starting",
                          "b: healthy"]
        later = Supervisor(tmp_path)  # as the next command sees it
        assert later.running_pid("a") == pids["a"] and later.running_pid("b") not in (None, pids["b"])
        assert not later.out_of_date(changed)  # it runs the new configuration now
        assert start_in_order(Supervisor(tmp_path), [a, changed], events.append, restart_changed=True) == {
            "a": "running", "b": "running"}  # nothing changed since: nothing restarted
    finally:
        Supervisor(tmp_path).stop("b", grace=5)
        Supervisor(tmp_path).stop("a", grace=5)


def test_stale_or_foreign_pid_file_is_ignored_and_removed(tmp_path):
    supervisor = Supervisor(tmp_path)
    supervisor.pid_dir.mkdir(parents=True)
    supervisor.pid_file("x").write_text("1\n")  # pid 1 is alive but not ours
    assert supervisor.running_pid("x") is None
    assert not supervisor.pid_file("x").exists()
    assert supervisor.stop("x") is False


def test_component_that_dies_fails_with_its_log_tail_and_masks_secrets(tmp_path):
    supervisor = Supervisor(tmp_path)
    code = "print('token hunter2 leaked'); print('fatal: cannot bind'); raise SystemExit(3)"
    spec = ProcessSpec("broken", [sys.executable, "-c", code, str(tmp_path)],
                       health=HealthProbe("tcp", "127.0.0.1", free_port()), timeout=20, secret_values=("hunter2",))
    started = time.monotonic()
    with pytest.raises(ComponentFailed) as excinfo:
        start_in_order(supervisor, [spec], lambda _m: None)
    assert time.monotonic() - started < 15
    text = str(excinfo.value)
    assert "broken did not become healthy" in text and "fatal: cannot bind" in text
    assert "hunter2" not in text and "***" in text


def test_one_shot_success_and_failure(tmp_path):
    supervisor = Supervisor(tmp_path)
    ok = ProcessSpec("job", [sys.executable, "-c", "print('done')", str(tmp_path)], one_shot=True, timeout=20)
    assert start_in_order(supervisor, [ok], lambda _m: None) == {"job": "completed"}
    assert not supervisor.pid_file("job").exists()
    bad = ProcessSpec("bad-job", [sys.executable, "-c", "raise SystemExit(4)", str(tmp_path)], one_shot=True,
                      timeout=20)
    with pytest.raises(ComponentFailed, match="exited with code 4"):
        start_in_order(supervisor, [bad], lambda _m: None)


def test_fourletter_probe_describes_itself():
    probe = HealthProbe("fourletter", "127.0.0.1", free_port(), "srvr", expect="Mode:")
    assert not probe.ok()
    assert "srvr" in probe.describe()


def _answering(reply: bytes) -> tuple[socket.socket, int]:
    """A listener that answers the first message of one client with ``reply`` (a PostgreSQL server's first word)."""
    import threading

    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(4096)
            connection.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


@pytest.mark.parametrize(("reply", "ready"), [
    (b"R\x00\x00\x00\x17\x00\x00\x00\x0aSCRAM-SHA-256\x00\x00", True),  # AuthenticationSASL: accepting
    (b"E\x00\x00\x00\x30SFATAL\x00C57P03\x00Mthe database system is starting up\x00\x00", False),
    (b"E\x00\x00\x00\x30SFATAL\x00C28000\x00Mno pg_hba.conf entry\x00\x00", True),  # up, refusing this login
])
def test_postgres_probe_asks_what_pg_isready_asks(reply, ready):
    from sagaz_lakehouse.targets.local.supervisor import postgres_accepts

    server, port = _answering(reply)
    with server:
        assert postgres_accepts("127.0.0.1", port) is ready
    assert HealthProbe("postgres", "127.0.0.1", port).describe().endswith("accepts connections")


def test_postgres_probe_without_a_server_is_not_ready():
    from support import free_port

    from sagaz_lakehouse.targets.local.supervisor import postgres_accepts

    assert postgres_accepts("127.0.0.1", free_port()) is False
