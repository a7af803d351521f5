"""A small process supervisor for the local target: start, identify, health-check and stop native processes.

State lives in the run folder: ``pids/<name>.pid`` and ``logs/<name>.log``. A pid file is trusted only if the
process is alive *and* its command line mentions the run folder, so a recycled pid never gets killed by mistake
and stale pid files are cleaned up. ``pids/<name>.config`` holds a digest of what the process was started with
(command line, environment, config files), so a later ``up`` can tell that a running component is out of date.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sagaz_lakehouse.errors import ComponentFailed
from sagaz_lakehouse.targets.local import class_cache

LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class HealthProbe:
    """tcp: a connect succeeds; http: GET answers 2xx; fourletter: ZooKeeper answers the command in ``path``;
    postgres: PostgreSQL accepts connections. With ``expect``, the answer must also contain it."""

    kind: str
    host: str
    port: int
    path: str = ""
    expect: str = ""

    def describe(self) -> str:
        if self.kind == "fourletter":
            return f"ZooKeeper '{self.path}' on {self.host}:{self.port} answers {self.expect!r}"
        if self.kind == "http":
            return f"GET http://{self.host}:{self.port}{self.path}" + (f" contains {self.expect!r}"
                                                                      if self.expect else "")
        if self.kind == "postgres":
            return f"PostgreSQL on {self.host}:{self.port} accepts connections"
        return f"TCP connect {self.host}:{self.port}"

    def ok(self) -> bool:
        if self.kind == "fourletter":
            return self.expect in _four_letter(self.host, self.port, self.path)
        if self.kind == "postgres":
            return postgres_accepts(self.host, self.port)
        if self.kind == "tcp":
            try:
                with socket.create_connection((self.host, self.port), timeout=2):
                    return True
            except OSError:
                return False
        try:
            url = f"http://{self.host}:{self.port}{self.path}"
            with urllib.request.urlopen(url, timeout=3) as response:
                body = response.read().decode(errors="replace")
                return 200 <= response.status < 300 and (not self.expect or self.expect in body)
        except (urllib.error.URLError, OSError, ValueError):
            return False


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    health: HealthProbe | None = None
    depends_on: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()  # ports it binds (checked before starting)
    one_shot: bool = False  # runs to completion (exit 0) instead of staying up
    timeout: float = 180.0  # seconds to become healthy (or to finish, for one-shot)
    secret_values: tuple[str, ...] = ()  # never echoed in errors
    config: tuple[Path | str, ...] = ()  # config files/folders (or values) it reads: a change makes it out of date
    # JVM flags that change how fast it starts, not what it runs (class_cache: train a cache, later map it): put
    # after argv[0] at start, and outside the fingerprint, so a cache trained meanwhile makes nothing out of date
    launch_flags: tuple[str, ...] = ()

    def fingerprint(self) -> str:
        """Digest of everything the process starts from; the environment is hashed, never stored."""
        digest = hashlib.sha256()
        for part in (*self.argv, *sorted(f"{k}={v}" for k, v in self.env.items())):
            digest.update(part.encode() + b"\0")
        for item in self.config:
            if isinstance(item, str):
                digest.update(item.encode() + b"\0")
                continue
            for path in _files_of(item):
                digest.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()


def _files_of(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path] if path.is_file() else []


class Supervisor:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.pid_dir = run_dir / "pids"
        self.log_dir = run_dir / "logs"
        self._children: dict[str, subprocess.Popen] = {}  # reaped by this process; lets us read exit codes

    # ------------------------------------------------------------------------------------------ state

    def pid_file(self, name: str) -> Path:
        return self.pid_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def config_file(self, name: str) -> Path:
        return self.pid_dir / f"{name}.config"

    def exit_file(self, name: str) -> Path:
        return self.pid_dir / f"{name}.exit"

    def last_exit(self, name: str) -> int | None:
        """The exit code a one-shot task last finished with (None: it has not run from this folder)."""
        try:
            return int(self.exit_file(name).read_text().strip())
        except (OSError, ValueError):
            return None

    def out_of_date(self, spec: ProcessSpec) -> bool:
        """True if ``spec`` differs from what its running process was started with (unknown counts as current)."""
        try:
            return self.config_file(spec.name).read_text().strip() != spec.fingerprint()
        except OSError:
            return False

    def running_pid(self, name: str) -> int | None:
        """The pid of our live process for ``name``; removes a stale pid file."""
        child = self._children.get(name)
        if child is not None:  # started by us: trust the handle (right after fork, /proc still shows python)
            return child.pid if child.poll() is None else None
        path = self.pid_file(name)
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            return None
        if self._is_ours(pid):
            return pid
        self.forget(name)
        return None

    def tracked(self) -> list[str]:
        """Every name with a pid file: what this run folder may have running, whatever the settings say now."""
        return sorted(p.stem for p in self.pid_dir.glob("*.pid")) if self.pid_dir.is_dir() else []

    def forget(self, name: str) -> None:
        self.pid_file(name).unlink(missing_ok=True)
        self.config_file(name).unlink(missing_ok=True)

    def _is_ours(self, pid: int) -> bool:
        return is_ours(pid, self.run_dir)

    # ------------------------------------------------------------------------------------------ start

    def start(self, spec: ProcessSpec) -> int:
        """Start ``spec`` detached; its output goes to its log. Returns the pid."""
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_file(spec.name).open("ab")
        log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {spec.name} =====\n".encode())
        log.flush()
        env = {**os.environ, **spec.env}
        argv = [*spec.argv[:1], *spec.launch_flags, *spec.argv[1:]]
        process = subprocess.Popen(argv, cwd=spec.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.pid_file(spec.name).write_text(f"{process.pid}\n")
        self.config_file(spec.name).write_text(spec.fingerprint() + "\n")
        self._children[spec.name] = process
        return process.pid

    def wait_healthy(self, spec: ProcessSpec, deadline: float) -> None:
        while True:
            if spec.one_shot:
                code = self.exit_code(spec.name)
                if code == 0:
                    return
                if code is not None:
                    raise self.failure(spec, f"exited with code {code}")
            else:
                if spec.health is None or spec.health.ok():
                    return
                if self.running_pid(spec.name) is None:
                    raise self.failure(spec, "process exited")
            if time.monotonic() > deadline:
                raise self.failure(spec, f"not healthy within {spec.timeout:.0f}s")
            time.sleep(0.5)

    def exit_code(self, name: str) -> int | None:
        child = self._children.get(name)
        return None if child is None else child.poll()

    def failure(self, spec: ProcessSpec, what: str) -> ComponentFailed:
        check = spec.health.describe() if spec.health else "exit code"
        tail = self.tail(spec.name, LOG_TAIL_LINES)
        for secret in spec.secret_values:
            tail = tail.replace(secret, "***")
        return ComponentFailed(spec.name, f"{check}: {what}", tail)

    # ------------------------------------------------------------------------------------------ stop

    def stop(self, name: str, grace: float = 30.0) -> bool:
        """SIGTERM the process group, SIGKILL after ``grace`` seconds (longer for a JVM that writes its class cache
        as it exits). True if something was stopped."""
        pid = self.running_pid(name)
        if pid is None:
            return False
        grace = max(grace, class_cache.exit_grace(cmdline(pid)))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        if not self._gone(name, pid, grace):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            self._gone(name, pid, 5.0)  # a kill is delivered asynchronously: no "stopped" while it still runs
        self.forget(name)
        return True

    def _gone(self, name: str, pid: int, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self._alive(name, pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        return not self._alive(name, pid)

    def _alive(self, name: str, pid: int) -> bool:
        child = self._children.get(name)
        if child is not None and child.pid == pid:  # ours to reap: exiting, its /proc entry loses the command line
            return child.poll() is None            # before it turns zombie
        return self._is_ours(pid)

    # ------------------------------------------------------------------------------------------ logs

    def tail(self, name: str, lines: int) -> str:
        path = self.log_file(name)
        if not path.exists():
            return f"(no log yet at {path})"
        with path.open(errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines)).rstrip("\n")


def cmdline(pid: int) -> str:
    """The process's command line, arguments joined by spaces; "" once it is gone (or exiting)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def is_ours(pid: int, run_dir: Path) -> bool:
    """Alive, not a zombie, and its command line names our run folder (so a recycled pid is never trusted)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z" and str(run_dir) in cmdline(pid)


def postgres_accepts(host: str, port: int) -> bool:
    """What pg_isready asks (libpq PQping): a startup message gets an authentication request, or an error other than
    57P03 ("the database system is starting up" / "shutting down"). Protocol 3.0: length, 196608, key/value pairs."""
    body = b"\x00\x03\x00\x00" + b"user\x00pg_isready\x00database\x00postgres\x00\x00"
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.settimeout(2)
            sock.sendall(len(body + b"1234").to_bytes(4, "big") + body)
            answer = sock.recv(4096)
    except OSError:
        return False
    if answer[:1] == b"R":
        return True
    # An ErrorResponse: fields of a code byte and a NUL-terminated string; 'C' holds the SQLSTATE.
    fields = {part[:1]: part[1:] for part in answer[5:].split(b"\x00") if part}
    return answer[:1] == b"E" and fields.get(b"C") not in (b"57P03", None)


def _four_letter(host: str, port: int, command: str) -> str:
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(command.encode())
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


def port_owner(port: int, host: str = "127.0.0.1") -> bool:
    """True if something already listens on host:port."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def start_in_order(supervisor: Supervisor, specs: list[ProcessSpec], progress: Callable[[str], None],
                   wait: bool = True, timeout: float = 600, restart_changed: bool = False) -> dict[str, str]:
    """Start every spec once its dependencies are healthy; independent ones start in parallel.

    Components already running are left alone; one started from a different configuration is reported, since
    restarting it here could interrupt work in flight, unless ``restart_changed``: then it is stopped and started
    again with the new one once its dependencies are healthy (data is kept), and counts as "started".
    Returns name → "started" | "running" | "out of date" | "completed".
    """
    overall = time.monotonic() + timeout
    by_name = {s.name: s for s in specs}
    outcome: dict[str, str] = {}
    pending = list(specs)
    started: dict[str, float] = {}  # name → deadline
    while pending or started:
        for spec in list(pending):
            if all(dep in outcome for dep in spec.depends_on if dep in by_name):
                pending.remove(spec)
                if not spec.one_shot and supervisor.running_pid(spec.name) is not None:
                    stale = supervisor.out_of_date(spec)
                    if not (stale and restart_changed):
                        outcome[spec.name] = "out of date" if stale else "running"
                        progress(f"{spec.name}: already running" + (
                            ", with an older configuration: `sagaz-lakehouse up --restart-changed` applies it "
                            "(data is kept)" if stale else ""))
                        continue
                    supervisor.stop(spec.name)
                    progress(f"{spec.name}: stopped, to start with its new configuration")
                supervisor.start(spec)
                progress(f"{spec.name}: starting")
                started[spec.name] = min(time.monotonic() + spec.timeout, max(overall, time.monotonic() + 5))
        if not wait:
            outcome.update({name: "started" for name in started})
            started.clear()
            if pending:  # without waiting, dependents start right after their dependencies
                continue
            break
        for name, deadline in list(started.items()):
            spec = by_name[name]
            if _ready(supervisor, spec):
                del started[name]
                if spec.one_shot:
                    supervisor.forget(name)  # done: nothing left to track but the outcome
                    supervisor.exit_file(name).write_text("0\n")
                outcome[name] = "completed" if spec.one_shot else "started"
                progress(f"{name}: {'done' if spec.one_shot else 'healthy'}")
            elif time.monotonic() > deadline or _dead(supervisor, spec):
                code = supervisor.exit_code(name)
                if spec.one_shot and code is not None:
                    supervisor.exit_file(name).write_text(f"{code}\n")
                supervisor.wait_healthy(spec, deadline=0)  # raises ComponentFailed with the log tail
        if started:
            time.sleep(0.5)
    return outcome


def _ready(supervisor: Supervisor, spec: ProcessSpec) -> bool:
    if spec.one_shot:
        return supervisor.exit_code(spec.name) == 0
    return spec.health is None or spec.health.ok()


def _dead(supervisor: Supervisor, spec: ProcessSpec) -> bool:
    if spec.one_shot:
        code = supervisor.exit_code(spec.name)
        return code is not None and code != 0
    return supervisor.running_pid(spec.name) is None
