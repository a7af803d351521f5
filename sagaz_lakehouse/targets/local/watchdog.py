"""Automatic restarts on the local target: ``python -m sagaz_lakehouse.targets.local.watchdog RUN_DIR``.

A small long-lived process, one per run folder, started by ``up`` and stopped first by ``down``. It watches the
components' pid files and restarts a dead component from the start specification recorded when it was started,
with exponential backoff; N restarts within M minutes is a crash loop: it stops restarting that component and
records why, with the log tail.

It depends on no driver internals; its interface is files in the run folder (which ``up`` makes 0700):

``watchdog/specs/NAME.json`` (0600, written by the driver through :func:`write_spec`)
    ``{"version": 1, "name", "argv", "cwd", "env_names", "env_files", "depends_on", "ports", "health",
    "after_start", "fingerprint"}``. ``env_names`` lists the variables the process gets on top of the
    watchdog's own environment; their *values* are never in the spec: they come, at every restart, from the
    ``env_files`` (``KEY=VALUE`` lines, each file 0600, refused otherwise) and otherwise from the watchdog's own
    environment. ``health`` is the supervisor's ``HealthProbe`` as a dict (``kind`` tcp, http or fourletter)
    or null;
    ``after_start`` is a list of one-shot commands (argv lists, same environment) run once the restarted
    component is healthy (e.g. resubmitting the tiering job after a JobManager restart). ``fingerprint`` is
    copied to ``pids/NAME.config`` so ``up`` does not report a restarted component as out of date.
    ``liveness`` (optional) is ``{"argv", "interval", "failures", "grace", "timeout"}``: a command run in the
    background every ``interval`` seconds once the component has run ``grace`` seconds; exit 1 means unhealthy
    (any other non-zero: could not tell), and ``failures`` unhealthy verdicts in a row get the component killed
    and restarted. Its output goes to ``watchdog/liveness/NAME.log``.
``watchdog/env/NAME.env`` (0600)
    the values :func:`write_spec` was given, so the driver needs no file of its own.
``pids/NAME.pid``, ``logs/NAME.log``
    the supervisor's conventions, unchanged: the restarted process leads its own process group (pid = pgid) and
    appends to its log; a pid counts as alive only if its command line mentions the run folder.
``watchdog/state.json`` (0600, written by the watchdog; read with :func:`read_state`)
    per component: ``state`` (running, restarting, waiting, crash loop, failed), ``restarts``,
    ``last_restart`` (ISO time), ``last_exit`` ("exit code 1", "signal 9 (SIGKILL)", or "unknown" when the
    dead process was not the watchdog's own child), ``detail`` and, for a crash loop, ``log_tail``.
``watchdog/watchdog.pid``, ``watchdog/watchdog.log``, ``watchdog/lock``
    the watchdog's own pid (its process group), log, and the lock held around every "is it dead? start it"
    step; ``up`` should hold the same lock (:func:`exclusive`) while it starts components, so the two never
    start the same component twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sagaz_lakehouse.targets.local.supervisor import HealthProbe, cmdline, is_ours

SPEC_VERSION = 1
WATCHDOG_DIR = "watchdog"
MODULE = "sagaz_lakehouse.targets.local.watchdog"
# A watchdog that an older release started runs under the module's former name: `up` and `down` still find it.
FORMER_MODULE = "sagaz_lakehouse.watchdog"
LOG_TAIL_LINES = 30


# ---------------------------------------------------------------------------------------------- paths


def folder(run_dir: Path) -> Path:
    return run_dir / WATCHDOG_DIR


def spec_path(run_dir: Path, name: str) -> Path:
    return folder(run_dir) / "specs" / f"{name}.json"


def pending_path(run_dir: Path, name: str) -> Path:
    """A start specification of an instance whose software is still being built (``background.py``)."""
    return folder(run_dir) / "pending" / f"{name}.json"


def env_path(run_dir: Path, name: str) -> Path:
    return folder(run_dir) / "env" / f"{name}.env"


def state_path(run_dir: Path) -> Path:
    return folder(run_dir) / "state.json"


def pid_path(run_dir: Path) -> Path:
    return folder(run_dir) / "watchdog.pid"


def component_pid_file(run_dir: Path, name: str) -> Path:
    return run_dir / "pids" / f"{name}.pid"


def component_log_file(run_dir: Path, name: str) -> Path:
    return run_dir / "logs" / f"{name}.log"


# ---------------------------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class Liveness:
    """A command that judges a running component from the outside (exit 0 fine, 1 unhealthy, anything else: could
    not tell). ``failures`` unhealthy verdicts in a row make the watchdog kill the component, which is then
    restarted like any dead one (backoff, crash-loop accounting, ``after_start``). Example: the JobManager, whose
    tiering job can hang while staying RUNNING, judged by ``python -m sagaz_lakehouse.lake_health``."""

    argv: tuple[str, ...]
    interval: float = 60.0  # seconds between the starts of two checks
    failures: int = 2
    grace: float = 120.0  # no check this soon after the component (re)started
    timeout: float = 600.0


@dataclass(frozen=True)
class StartSpec:
    """How to start one component again. Holds variable names, never their values."""

    name: str
    argv: tuple[str, ...]
    cwd: str | None = None
    env_names: tuple[str, ...] = ()
    env_files: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    health: HealthProbe | None = None
    after_start: tuple[tuple[str, ...], ...] = ()
    fingerprint: str = ""
    liveness: Liveness | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data["version"] = SPEC_VERSION
        return json.dumps(data, indent=2) + "\n"

    @staticmethod
    def from_json(text: str) -> StartSpec:
        data = json.loads(text)
        if data.pop("version", None) != SPEC_VERSION:
            raise ValueError(f"unsupported start specification version (expected {SPEC_VERSION})")
        health = data.pop("health", None)
        liveness = data.get("liveness")
        return StartSpec(
            name=data["name"], argv=tuple(data["argv"]), cwd=data.get("cwd"),
            env_names=tuple(data.get("env_names", ())), env_files=tuple(data.get("env_files", ())),
            depends_on=tuple(data.get("depends_on", ())), ports=tuple(data.get("ports", ())),
            health=HealthProbe(**health) if health else None,
            after_start=tuple(tuple(cmd) for cmd in data.get("after_start", ())),
            fingerprint=data.get("fingerprint", ""),
            liveness=Liveness(**{**liveness, "argv": tuple(liveness["argv"])}) if liveness else None)


def _private_dirs(run_dir: Path) -> None:
    """The watchdog's folders, 0700 (the run folder itself is 0700 too, but this must not depend on it)."""
    for sub in (folder(run_dir), *(folder(run_dir) / sub for sub in ("specs", "env", "pending"))):
        sub.mkdir(parents=True, exist_ok=True)
        os.chmod(sub, 0o700)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte, atomically (readers never see half)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


# Fluss's coordinator gives a table whose tiering job stopped heartbeating to another job only after 2 minutes
# (LakeTableTieringManager.TIERING_SERVICE_TIMEOUT_MS, checked every 15 s; v0.9.1-incubating). A JobManager restarted
# in the middle of a round therefore holds the table back that long: the restart itself stalls the lake.
FLUSS_TIERING_RELEASE_S = 135.0
# So the liveness check kills the JobManager only for a stall longer than twice that release, and judges again only
# once a restarted JobManager's job could have had the table back (resubmission, release, claim). With 3x freshness
# and a 60 s grace (before), a round slowed by a loaded machine got the JobManager killed, each restart made the next
# verdict a stall, and nothing was tiered again (a CI run with a load average of 30).
LIVENESS_STALL_S = 2 * FLUSS_TIERING_RELEASE_S
LIVENESS_GRACE_S = FLUSS_TIERING_RELEASE_S + 60.0


def tiering_liveness(bootstrap: str, database: str, freshness: str, python: str = sys.executable,
                     login_file: str = "") -> Liveness:
    """The JobManager's liveness check: its tiering job can hang while RUNNING (apache/fluss#3261); a bucket whose
    lake offset stood still for the longer of LIVENESS_STALL_S and 3x freshness while records waited gets it
    restarted. The windows run back to back, so a hang is acted on within two such windows."""
    from sagaz_lakehouse.config import duration_seconds  # the driver's side only: the watchdog process needs none

    login = ("--login-file", login_file) if login_file else ()
    stall_after = max(LIVENESS_STALL_S, 3 * duration_seconds(freshness))
    return Liveness((python, "-m", "sagaz_lakehouse.lake_health", "--bootstrap", bootstrap, "--database", database,
                     "--freshness", freshness, "--stall-after", f"{stall_after:g}", *login),
                    interval=0, failures=1, grace=LIVENESS_GRACE_S)


def write_spec(run_dir: Path, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, *,
               cwd: Path | str | None = None, env_files: Sequence[Path | str] = (),
               depends_on: Sequence[str] = (), ports: Sequence[int] = (), health: HealthProbe | None = None,
               after_start: Sequence[Sequence[str]] = (), fingerprint: str = "",
               liveness: Liveness | None = None, pending: bool = False) -> StartSpec:
    """Record how ``name`` was started. ``env`` values (which may be secrets) go to a 0600 env file of their
    own; the spec keeps their names. Call it right after starting the component (and again on every start).
    ``pending``: not started yet, its software is being built (``background.py`` starts it and moves the spec)."""
    _private_dirs(run_dir)
    env = dict(env or {})
    files = [str(f) for f in env_files]
    if env:
        _write_private(env_path(run_dir, name), "".join(f"{k}={v}\n" for k, v in env.items()))
        files.append(str(env_path(run_dir, name)))
    else:
        env_path(run_dir, name).unlink(missing_ok=True)
    spec = StartSpec(name, tuple(argv), str(cwd) if cwd is not None else None, tuple(env), tuple(files),
                     tuple(depends_on), tuple(ports), health, tuple(tuple(c) for c in after_start), fingerprint,
                     liveness)
    _write_private((pending_path if pending else spec_path)(run_dir, name), spec.to_json())
    if pending:  # not the watchdog's until started: it would start it from a program still being built
        spec_path(run_dir, name).unlink(missing_ok=True)
    return spec


def remove_spec(run_dir: Path, name: str) -> None:
    """Stop watching ``name`` (e.g. a component no longer part of the stack)."""
    spec_path(run_dir, name).unlink(missing_ok=True)
    env_path(run_dir, name).unlink(missing_ok=True)


def load_specs(run_dir: Path) -> dict[str, StartSpec]:
    out: dict[str, StartSpec] = {}
    for path in sorted((folder(run_dir) / "specs").glob("*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            out[path.stem] = StartSpec.from_json(path.read_text())
    return out


class UnsafeEnvFile(Exception):
    """An env file others can read, or that is missing: never start from it."""


def read_env_file(path: Path) -> dict[str, str]:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text()
    except OSError as exc:
        raise UnsafeEnvFile(f"cannot read env file {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise UnsafeEnvFile(f"env file {path} is readable by others (mode {mode:o}); chmod 600 it")
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value for key, value in pairs}


def environment_for(spec: StartSpec, base: Mapping[str, str]) -> dict[str, str]:
    """The environment a restart gets: ``base`` plus the env files; every listed name must have a value."""
    env = dict(base)
    for name in spec.env_files:
        env.update(read_env_file(Path(name)))
    missing = [n for n in spec.env_names if n not in env]
    if missing:
        raise UnsafeEnvFile(f"no value for {', '.join(missing)} (env files and the watchdog's environment)")
    return env


# ---------------------------------------------------------------------------------------------- state


@dataclass
class ComponentState:
    state: str = "running"  # running | restarting | waiting | crash loop | failed
    restarts: int = 0
    last_restart: str = ""
    last_exit: str = ""
    detail: str = ""
    log_tail: str = ""
    restart_times: list[float] = field(default_factory=list)  # wall clock, for the crash-loop window


def read_state(run_dir: Path) -> dict[str, ComponentState]:
    """What ``status`` shows: restarts, last exit, crash loops. Empty if the watchdog never ran."""
    try:
        data = json.loads(state_path(run_dir).read_text())
    except (OSError, ValueError):
        return {}
    return {name: ComponentState(**values) for name, values in data.get("components", {}).items()}


def forget_state(run_dir: Path, names: Sequence[str]) -> None:
    """Drop the record of ``names`` (``up`` started them afresh); call it while the watchdog is stopped."""
    states = read_state(run_dir)
    if any(name in states for name in names):
        write_state(run_dir, {n: s for n, s in states.items() if n not in names})


def forget(run_dir: Path) -> None:
    """After ``down``: no start specs (nothing to restart) and no record; the watchdog's log stays."""
    for sub in ("specs", "env"):
        for path in (folder(run_dir) / sub).glob("*"):
            path.unlink(missing_ok=True)
    state_path(run_dir).unlink(missing_ok=True)


def write_state(run_dir: Path, states: Mapping[str, ComponentState]) -> None:
    _private_dirs(run_dir)
    _write_private(state_path(run_dir), json.dumps(
        {"updated": _now_iso(), "components": {n: asdict(s) for n, s in sorted(states.items())}}, indent=2) + "\n")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "unknown (not started by the watchdog)"
    if returncode < 0:
        try:
            return f"signal {-returncode} ({signal.Signals(-returncode).name})"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


# ---------------------------------------------------------------------------------------------- processes


def component_pid(run_dir: Path, name: str) -> int | None:
    try:
        pid = int(component_pid_file(run_dir, name).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if is_ours(pid, run_dir) else None


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open(errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines)).rstrip("\n")
    except OSError:
        return f"(no log at {path})"


@contextlib.contextmanager
def exclusive(run_dir: Path) -> Iterator[None]:
    """The run folder's start lock: held by the watchdog around each restart, and by ``up`` while it starts."""
    path = folder(run_dir) / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class Policy:
    initial_backoff: float = 1.0  # seconds before the first restart
    max_backoff: float = 60.0
    crash_loop_restarts: int = 5  # this many restarts ...
    crash_loop_window: float = 600.0  # ... within this many seconds is a crash loop
    stable_after: float = 60.0  # healthy this long after a restart: the backoff starts over
    health_timeout: float = 240.0  # a restarted component must be healthy within this, or it counts as crashed


@dataclass
class _Tracked:
    """What the loop remembers about a component between ticks (not persisted)."""

    child: subprocess.Popen | None = None  # our own restart: lets us read the exit status
    dead_since: float | None = None
    backoff: float = 0.0
    started_at: float | None = None
    healthy: bool = False
    alive_since: float | None = None  # first seen alive (for the liveness grace)
    probe: subprocess.Popen | None = None
    probe_started: float | None = None
    probe_failures: int = 0


class Watchdog:
    def __init__(self, run_dir: Path, policy: Policy | None = None, environ: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 log: Callable[[str], None] | None = None) -> None:
        self.run_dir = run_dir
        self.policy = policy or Policy()
        self.environ = dict(os.environ if environ is None else environ)
        self.clock, self.wall = clock, wall
        self.log = log or (lambda message: print(f"{_now_iso()} {message}", flush=True))
        self.states: dict[str, ComponentState] = read_state(run_dir)
        self.tracked: dict[str, _Tracked] = {}

    def tick(self) -> None:
        """One pass over every component: notice deaths, restart the ones whose backoff is over."""
        specs = load_specs(self.run_dir)
        changed = False
        for name in dependency_order(specs):
            changed |= self._check(specs[name], specs)
        if changed:
            write_state(self.run_dir, self.states)

    def _check(self, spec: StartSpec, specs: Mapping[str, StartSpec]) -> bool:
        state = self.states.setdefault(spec.name, ComponentState())
        track = self.tracked.setdefault(spec.name, _Tracked())
        now = self.clock()
        if state.state in ("crash loop", "failed"):
            return False  # needs a person (or `down` then `up`)
        if self._running(spec.name):
            return self._alive(spec, state, track, now)
        if track.dead_since is None:  # just noticed
            track.alive_since, track.probe_failures = None, 0
            if track.probe is not None:
                track.probe.kill()
                track.probe = None
            code = _exit_status(track.child)
            track.dead_since, track.child = now, None
            state.last_exit = describe_exit(code)
            if track.started_at is not None and now - track.started_at >= self.policy.stable_after:
                track.backoff = 0.0  # it ran fine for a while: this is a new failure, not a loop
            track.backoff = (self.policy.initial_backoff if track.backoff == 0
                             else min(track.backoff * 2, self.policy.max_backoff))
            state.state, state.detail = "restarting", f"died ({state.last_exit}); restart in {track.backoff:.0f}s"
            self.log(f"{spec.name}: {state.detail}")
            return True
        if now - track.dead_since < track.backoff:
            return False
        return self._restart(spec, specs, state, track, now)

    def _alive(self, spec: StartSpec, state: ComponentState, track: _Tracked, now: float) -> bool:
        if track.alive_since is None:
            track.alive_since = now
        if track.started_at is None or track.healthy:
            changed = self._liveness(spec, state, track, now)
            if state.state != "running":
                state.state, state.detail = "running", ""
                return True
            return changed

        if spec.health is None or spec.health.ok():
            track.healthy = True
            self.log(f"{spec.name}: healthy after restart")
            state.state = "running"
            self._after_start(spec, state)  # leaves a detail if a follow-up command failed
            return True
        if now - track.started_at > self.policy.health_timeout:  # started but never became healthy: kill it
            self.log(f"{spec.name}: not healthy {self.policy.health_timeout:.0f}s after restart; stopping it")
            _kill_group(component_pid(self.run_dir, spec.name))
        return False

    def _liveness(self, spec: StartSpec, state: ComponentState, track: _Tracked, now: float) -> bool:
        """Run the component's liveness check in the background; kill the component after enough failures."""
        check = spec.liveness
        if check is None:
            return False
        if track.probe is not None:
            code = track.probe.poll()
            if code is None:
                if now - (track.probe_started or now) > check.timeout:
                    track.probe.kill()
                return False
            track.probe = None
            if code == 0:
                track.probe_failures = 0
                return False
            if code != 1:
                return False  # could not tell (e.g. Fluss unreachable): not the component's fault
            track.probe_failures += 1
            verdict = _last_line(folder(self.run_dir) / "liveness" / f"{spec.name}.log")
            self.log(f"{spec.name}: liveness check failed ({track.probe_failures}/{check.failures}): {verdict}")
            if track.probe_failures >= check.failures:
                track.probe_failures = 0
                state.detail = f"liveness check failed {check.failures}x: {verdict}"
                self.log(f"{spec.name}: killing it for a restart")
                _kill_group(component_pid(self.run_dir, spec.name))
                return True
            return False
        since = max(track.alive_since or now, track.started_at or 0)
        if now - since < check.grace or (track.probe_started and now - track.probe_started < check.interval):
            return False
        try:
            env = environment_for(spec, self.environ)
        except UnsafeEnvFile:
            return False
        log_path = folder(self.run_dir) / "liveness" / f"{spec.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            track.probe = subprocess.Popen(list(check.argv), env=env, cwd=spec.cwd, stdout=log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        track.probe_started = now
        return False

    def _after_start(self, spec: StartSpec, state: ComponentState) -> None:
        for command in spec.after_start:
            try:
                env = environment_for(spec, self.environ)
                result = subprocess.run(list(command), env=env, cwd=spec.cwd, capture_output=True, text=True,
                                        timeout=300)
            except (OSError, UnsafeEnvFile, subprocess.TimeoutExpired) as exc:
                state.detail = f"after-start command failed: {exc}"
                self.log(f"{spec.name}: {state.detail}")
                return
            if result.returncode != 0:
                state.detail = f"after-start command exited {result.returncode}: {result.stdout[-300:]}" \
                               f"{result.stderr[-500:]}"
                self.log(f"{spec.name}: {state.detail}")
                return
        state.detail = ""

    def _restart(self, spec: StartSpec, specs: Mapping[str, StartSpec], state: ComponentState, track: _Tracked,
                 now: float) -> bool:
        # Dependencies must answer, not just exist: a coordinator started before its catalog answers exits at once.
        waiting = [d for d in spec.depends_on if d in specs and not self._answers(specs[d])]
        if waiting:
            return self._set(state, "waiting", f"waiting for {', '.join(waiting)}")
        window_start = self.wall() - self.policy.crash_loop_window
        state.restart_times = [t for t in state.restart_times if t >= window_start]
        if len(state.restart_times) >= self.policy.crash_loop_restarts:
            state.state = "crash loop"
            state.detail = (f"{len(state.restart_times)} restarts within "
                            f"{self.policy.crash_loop_window / 60:.0f} min; not restarting "
                            "(fix the cause, then `sagaz-lakehouse down` and `up`)")
            state.log_tail = self._redacted_tail(spec)
            self.log(f"{spec.name}: crash loop\n{state.log_tail}")
            return True
        busy = [p for p in spec.ports if _port_taken(p)]
        if busy:
            return self._set(state, "waiting", f"port(s) {busy} still taken")
        try:
            env = environment_for(spec, self.environ)
        except UnsafeEnvFile as exc:
            state.state, state.detail = "failed", str(exc)
            self.log(f"{spec.name}: not restarted: {exc}")
            return True
        with exclusive(self.run_dir):
            if component_pid(self.run_dir, spec.name) is not None:  # `up` was faster
                track.dead_since = None
                return self._set(state, "running", "")
            try:
                track.child = spawn(self.run_dir, spec, env)
            except OSError as exc:
                state.state, state.detail = "failed", f"cannot start: {exc}"
                return True
        state.restarts += 1
        state.restart_times.append(self.wall())
        state.last_restart = _now_iso()
        state.state, state.detail = "restarting", f"restarted (pid {track.child.pid}), waiting for health"
        track.dead_since, track.started_at, track.healthy = None, now, False
        self.log(f"{spec.name}: {state.detail} [restart {state.restarts}]")
        return True

    def _answers(self, spec: StartSpec) -> bool:
        health = spec.health
        return self._running(spec.name) and (health is None or health.ok())

    def _running(self, name: str) -> bool:
        """By the pid file alone: ``spawn`` returns only after the exec, so a fresh child is recognisable, and a
        dying one (its /proc command line already empty) counts as dead even before it can be reaped."""
        return component_pid(self.run_dir, name) is not None

    @staticmethod
    def _set(state: ComponentState, value: str, detail: str) -> bool:
        changed = (state.state, state.detail) != (value, detail)
        state.state, state.detail = value, detail
        return changed

    def _redacted_tail(self, spec: StartSpec) -> str:
        """The log tail, with every value from the env files masked (the processes' own logs may echo them)."""
        text = tail(component_log_file(self.run_dir, spec.name))
        for name in spec.env_files:
            with contextlib.suppress(UnsafeEnvFile):
                for value in read_env_file(Path(name)).values():
                    if len(value) >= 6:
                        text = text.replace(value, "***")
        return text

    def run(self, interval: float = 1.0, should_stop: Callable[[], bool] = lambda: False) -> None:
        while not should_stop():
            if not self.run_dir.is_dir():  # `down --purge` removed everything
                return
            self.tick()
            time.sleep(interval)


def dependency_order(specs: Mapping[str, StartSpec]) -> list[str]:
    """Dependencies first (so a ZooKeeper restart is tried before the Fluss servers that need it)."""
    order: list[str] = []

    def visit(name: str, seen: frozenset[str]) -> None:
        if name in order or name in seen or name not in specs:
            return
        for dep in specs[name].depends_on:
            visit(dep, seen | {name})
        order.append(name)

    for name in sorted(specs):
        visit(name, frozenset())
    return order


def spawn(run_dir: Path, spec: StartSpec, env: dict[str, str], why: str = "restarting (watchdog)") -> subprocess.Popen:
    """Start like the supervisor does: own process group, output appended to the log, pid file written."""
    log_file = component_log_file(run_dir, spec.name)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {spec.name}: {why} =====\n".encode())
        log.flush()
        child = subprocess.Popen(list(spec.argv), cwd=spec.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    # Until the exec, /proc shows our own command line: anyone checking the pid file then (``up``, ``status``)
    # would take it for a stale file. Hand it over only once the process is recognisable.
    deadline = time.monotonic() + 5
    while not is_ours(child.pid, run_dir) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    component_pid_file(run_dir, spec.name).parent.mkdir(parents=True, exist_ok=True)
    component_pid_file(run_dir, spec.name).write_text(f"{child.pid}\n")
    if spec.fingerprint:
        (run_dir / "pids" / f"{spec.name}.config").write_text(spec.fingerprint + "\n")
    return child


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _exit_status(child: subprocess.Popen | None) -> int | None:
    """The exit status of our own child (it may still be finishing its exit: wait a little)."""
    if child is None:
        return None
    try:
        return child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return None


def _kill_group(pid: int | None, sig: int = signal.SIGKILL) -> None:
    if pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)


# ---------------------------------------------------------------------------------------------- control


def running_pid(run_dir: Path) -> int | None:
    """The live watchdog of ``run_dir``, if any."""
    return module_pid(pid_path(run_dir), run_dir, (MODULE, f"-m {FORMER_MODULE} "))


def module_pid(pid_file: Path, run_dir: Path, marks: Sequence[str]) -> int | None:
    """The pid in ``pid_file`` if that process is ours (:func:`is_ours`) and its command line holds one of
    ``marks`` (the module it runs): a helper process of the run folder (the watchdog, a background build)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if any(mark in cmdline(pid) for mark in marks) and is_ours(pid, run_dir) else None


def start_detached(argv: Sequence[str], log_file: Path, pid_file: Path, recognised: Callable[[], bool],
                   banner: str = "") -> subprocess.Popen:
    """Start a helper process in its own process group, output appended to ``log_file``, pid in ``pid_file``.
    Right after the fork /proc still shows the parent's command line: wait (up to 5 s) until ``recognised()``,
    so that an immediate second start finds this one instead of starting another."""
    with log_file.open("ab") as log:
        if banner:
            log.write(banner.encode())
            log.flush()
        child = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
    pid_file.write_text(f"{child.pid}\n")
    deadline = time.monotonic() + 5
    while not recognised() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return child


def terminate(pid: int, run_dir: Path, grace: float) -> None:
    """SIGTERM the process group of ``pid``; SIGKILL after ``grace`` seconds if it is still ours."""
    _kill_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while is_ours(pid, run_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    if is_ours(pid, run_dir):
        _kill_group(pid)


def start(run_dir: Path, python: str = sys.executable, extra_args: Sequence[str] = ()) -> int:
    """Start the watchdog of ``run_dir`` unless one runs; returns its pid (idempotent, called by ``up``)."""
    pid = running_pid(run_dir)
    if pid is not None:
        return pid
    _private_dirs(run_dir)
    child = start_detached([python, "-m", MODULE, str(run_dir), *extra_args], folder(run_dir) / "watchdog.log",
                           pid_path(run_dir), lambda: running_pid(run_dir) is not None)
    return child.pid


def stop(run_dir: Path, grace: float = 10.0) -> bool:
    """Stop the watchdog (``down`` calls this before stopping anything else). True if one was running."""
    pid = running_pid(run_dir)
    if pid is not None:
        terminate(pid, run_dir, grace)
    pid_path(run_dir).unlink(missing_ok=True)
    return pid is not None


def status_rows(run_dir: Path) -> dict[str, str]:
    """One short text per component for ``status`` (e.g. "2 restarts, last 12:01:03, signal 9 (SIGKILL)")."""
    out = {}
    for name, state in read_state(run_dir).items():
        if state.restarts == 0 and state.state == "running":
            continue
        text = f"{state.restarts} restart(s)"
        if state.last_restart:
            text += f", last {state.last_restart}"
        if state.last_exit:
            text += f", died: {state.last_exit}"
        if state.state != "running":
            text += f"; {state.state}: {state.detail}"
        out[name] = text
    return out


def main(argv: Sequence[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between checks")
    parser.add_argument("--max-backoff", type=float, default=Policy.max_backoff)
    parser.add_argument("--crash-loop-restarts", type=int, default=Policy.crash_loop_restarts)
    parser.add_argument("--crash-loop-window", type=float, default=Policy.crash_loop_window)
    args = parser.parse_args(argv)
    stopping = {"flag": False}

    def on_term(_signum: int, _frame: Any) -> None:
        stopping["flag"] = True  # finish the current step (a started process gets its pid file), then exit

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    policy = Policy(max_backoff=args.max_backoff, crash_loop_restarts=args.crash_loop_restarts,
                    crash_loop_window=args.crash_loop_window)
    watchdog = Watchdog(args.run_dir.resolve(), policy)
    watchdog.log(f"watching {args.run_dir} (pid {os.getpid()})")
    watchdog.run(args.interval, should_stop=lambda: stopping["flag"])
    watchdog.log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
