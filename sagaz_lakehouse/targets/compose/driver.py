"""Compose driver: writes the rendered project and drives ``<engine> compose`` (Docker, Podman or nerdctl).

Credentials never reach an argument list: compose reads them from the project's 0600 ``.env``. Every call into the
engine is bounded by a timeout, and every failure names the service, its health and the tail of its log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sagaz_lakehouse import addresses, identities, security, tls
from sagaz_lakehouse.config import PLACEHOLDER_CREDENTIALS, Credentials, Settings
from sagaz_lakehouse.errors import ComponentFailed, EnvironmentProblem, LakehouseError
from sagaz_lakehouse.stack import Stack, View
from sagaz_lakehouse.targets import RESTART_TIMEOUT_S
from sagaz_lakehouse.targets.compose import layout

ENGINES = ("docker", "podman", "nerdctl")
MIN_COMPOSE = (2, 1, 1)  # first Docker Compose release with `up --wait`
PROBE_TIMEOUT = 30  # seconds for `info`, `compose version`, `ps`, `logs`
LOG_TAIL = 40
PULL_ALLOWANCE = 1800  # seconds added to the first `up` for image pulls
# Compose gives the calling shell's variables precedence over .env: keep stray values out of the child.
SHADOWING_VARS = (*identities.secret_variable_names(), "SAGAZ_LAKEHOUSE_S3_ACCESS_KEY", "SAGAZ_LAKEHOUSE_S3_SECRET_KEY")
START_HINT = ("start Docker (Docker Desktop, or `sudo systemctl start docker`; for Podman `podman machine start`), "
              "or run the stack natively with `--target local`")

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class ComposeDriver:
    def __init__(self, settings: Settings, base_dir: Path, *, log: Log | None = None,
                 credentials: Credentials | None = None) -> None:
        self.settings = settings
        self.base_dir = base_dir
        self.log = log or _stderr
        self._credentials = credentials
        self._compose_cmd: list[str] | None = None
        self.stack: Stack = layout.compose_stack(settings)

    # ------------------------------------------------------------------------------------------ places

    @property
    def project_dir(self) -> Path:
        path = Path(os.path.expanduser(self.settings.compose.project_dir))
        return path if path.is_absolute() else self.base_dir / path

    @property
    def project(self) -> str:
        return self.settings.project

    @property
    def tls_dir(self) -> Path:
        """Trino's certificate (prod): made by the first `up` beside .env, kept until the project folder goes."""
        return self.project_dir / "tls"

    def credentials(self) -> Credentials:
        if self._credentials is None:
            # the processes run in containers: an operator's Trino certificate must name the trino service too
            self._credentials = security.resolve_credentials(self.settings, View.INTERNAL, base_dir=self.base_dir)
        return self._credentials

    def credentials_with_tls(self, *, make: bool) -> Credentials:
        """The credentials with Trino's keystore where Trino serves HTTPS: the operator's (secrets.trino_tls,
        installed beside .env) or one made and kept there; a dry run (``make`` False) writes nothing."""
        credentials = self.credentials()
        if not security.trino_auth_on(self.settings):
            return credentials
        if not make:
            keystore = credentials.trino_keystore or PLACEHOLDER_CREDENTIALS.trino_keystore
        elif credentials.trino_keystore:
            keystore = tls.install(self.tls_dir, credentials.trino_keystore).keystore_pem
        else:
            hosts = security.trino_certificate_hosts(self.settings, View.INTERNAL)
            keystore = tls.ensure(self.tls_dir, hosts).keystore_pem
        with_tls = dataclasses.replace(credentials, trino_keystore=keystore)
        if make:
            self._credentials = with_tls
        return with_tls

    # ------------------------------------------------------------------------------------------ engine

    def engine(self) -> str:
        """The engine CLI on PATH (settings.compose.engine, or the first of docker, podman, nerdctl)."""
        wanted = self.settings.compose.engine
        candidates = ENGINES if wanted == "auto" else (wanted,)
        for name in candidates:
            if shutil.which(name):
                return name
        looked = ", ".join(candidates)
        raise EnvironmentProblem(f"no container engine found (looked for {looked} on PATH)",
                                 "install Docker (https://docs.docker.com/get-docker/) and " + START_HINT)

    def compose_command(self) -> list[str]:
        """``<engine> compose``, checked once: daemon reachable, compose new enough for ``up --wait``."""
        if self._compose_cmd is not None:
            return self._compose_cmd
        engine = self.engine()
        info = self._exec([engine, "info"], timeout=PROBE_TIMEOUT)
        if info.returncode != 0:
            detail = _last_line(info.stderr or info.stdout) or f"exit {info.returncode}"
            raise EnvironmentProblem(f"the {engine} daemon is not reachable (`{engine} info` failed: {detail})",
                                     START_HINT)
        command = [engine, "compose"]
        version = self._exec([*command, "version"], timeout=PROBE_TIMEOUT)
        if version.returncode != 0 and engine == "docker" and shutil.which("docker-compose"):
            command = ["docker-compose"]  # the standalone binary, when the CLI plugin is missing
            version = self._exec([*command, "version"], timeout=PROBE_TIMEOUT)
        if version.returncode != 0:
            raise EnvironmentProblem(f"`{engine} compose` is not available ({_last_line(version.stderr) or 'failed'})",
                                     "install the Docker Compose plugin v2.1.1 or newer "
                                     "(https://docs.docker.com/compose/install/), or use `--target local`")
        found = parse_version(version.stdout + version.stderr)
        if found is None or found < MIN_COMPOSE:
            shown = ".".join(map(str, found)) if found else "an unknown version"
            raise EnvironmentProblem(f"{' '.join(command)} is {shown}; `up --wait` needs Docker Compose 2.1.1 or newer",
                                     "upgrade Docker Compose (https://docs.docker.com/compose/install/)")
        self._compose_cmd = command
        return command

    def _compose(self, *args: str) -> list[str]:
        base = [*self.compose_command(), "-p", self.project]
        compose_file = self.project_dir / "compose.yaml"
        if compose_file.exists():
            base += ["--project-directory", str(self.project_dir), "-f", str(compose_file)]
        return [*base, *self._plain(base[0]), *args]

    @staticmethod
    def _plain(program: str) -> list[str]:
        """Compose's output goes through our log, never a terminal: no colours or cursor movement in it
        (`--ansi never`; nerdctl compose has no such flag and prints none)."""
        return [] if os.path.basename(program) == "nerdctl" else ["--ansi", "never"]

    # ------------------------------------------------------------------------------------------ verbs

    def up(self, *, dry_run: bool, wait: bool, timeout: int) -> dict[str, Any]:
        from sagaz_lakehouse import render

        # Rendered once without making anything (credentials checked), again with Trino's certificate once the engine
        # and the ports are known to be fine: a refused `up` leaves no project folder behind.
        files = layout.files(self.settings, self.credentials_with_tls(make=False))
        services = list(layout.project(self.stack)["services"])
        steps = self._plan(services, wait, timeout)
        result = {"target": "compose", "project": self.project, "project_dir": str(self.project_dir),
                  "services": services, "commands": [" ".join(step) for step in steps],
                  "endpoints": self.endpoint_map(), "dry_run": dry_run}
        if dry_run:
            self.log(f"dry run: would write {len(files)} files to {self.project_dir} "
                     f"({', '.join(f.path for f in files)}), place the locked jars under {self.project_dir}/jars, "
                     "then run:")
            for step in steps:
                self.log("  " + " ".join(step))
            return result
        command = self.compose_command()
        self.check_ports(services)
        files = layout.files(self.settings, self.credentials_with_tls(make=True))
        self.log(f"writing the compose project to {self.project_dir}")
        render.write_files(files, self.project_dir)
        self.materialize_jars()
        self.log(f"starting {len(services)} services with {' '.join(command)} (timeout {timeout}s)")
        deadline_steps = self._plan(services, wait, timeout)
        for index, step in enumerate(deadline_steps):
            # --wait-timeout covers the wait only; the first run may also pull several GB of images.
            budget = timeout + PULL_ALLOWANCE if index == 0 else max(60, timeout)
            code = self._stream(step, budget)
            if code != 0:
                raise self.diagnose(f"`{' '.join(step[len(command):])}` exited with {code}")
        self.log("every service is healthy")
        return result

    def _plan(self, services: list[str], wait: bool, timeout: int) -> list[list[str]]:
        command = self._planned_command()
        base = [*command, "-p", self.project, "--project-directory", str(self.project_dir),
                "-f", str(self.project_dir / "compose.yaml"), *self._plain(command[0])]
        if not wait:
            return [[*base, "up", "-d", "--remove-orphans"]]
        # `up --wait` treats a one-shot container that nothing waits on as a failure once it exits, so such a task
        # (the tiering submission) runs as a later, attached step whose exit code is its own
        # (compose pkg/compose/start.go).
        last = self._final_tasks()
        steps = [[*base, "up", "-d", "--wait", "--wait-timeout", str(timeout), "--remove-orphans",
                  *(name for name in services if name not in last)]]
        return steps + [[*base, "up", "--no-deps", "--exit-code-from", name, name] for name in last]

    def _final_tasks(self) -> list[str]:
        """One-shot tasks no other service waits for."""
        needed = {dep for c in self.stack.components for dep, _ in c.depends_on}
        return [n for c in self.stack.tasks if c.name not in needed for n in c.instance_names()]

    def _planned_command(self) -> list[str]:
        if self._compose_cmd is not None:
            return self._compose_cmd
        with contextlib.suppress(LakehouseError):
            return [self.engine(), "compose"]  # dry runs do not require a running daemon
        return ["docker" if self.settings.compose.engine == "auto" else self.settings.compose.engine, "compose"]

    def down(self, *, purge: bool) -> None:
        args = ["down", "--remove-orphans"] + (["--volumes"] if purge else [])
        self.log(f"stopping compose project {self.project}" + (" and deleting its volumes" if purge else
                                                                 " (volumes kept; --purge deletes them)"))
        code = self._stream(self._compose(*args), 300)
        if code != 0:
            raise LakehouseError(f"`compose down` exited with {code}", f"see `{' '.join(self._compose('ps', '-a'))}`")

    def restart(self, component: str, timeout: int = RESTART_TIMEOUT_S) -> None:
        """`compose restart` of the component's services, then `up --wait` of just them: back once healthy."""
        names = [name for _, name in self.stack.restartable(component)]
        self.log(f"restarting {', '.join(names)}")
        for args in (["restart", *names], ["up", "-d", "--no-deps", "--wait", "--wait-timeout", str(timeout), *names]):
            code = self._stream(self._compose(*args), timeout + 60)
            if code != 0:
                raise self.diagnose(f"`compose {' '.join(args)}` exited with {code}")

    def status(self) -> list[dict[str, Any]]:
        containers = {c.get("Service"): c for c in self.containers()}
        endpoints = self.endpoint_map()
        return [{"component": name, "state": container_state(containers.get(name)),
                 "endpoint": endpoints.get(name, ""), "detail": (containers.get(name) or {}).get("Status",
                                                                                                "not created")}
                for _component, name in self.stack.instances()]

    def logs(self, component: str, lines: int) -> str:
        names = [name for _, name in self.stack.named(component)]
        result = self._exec(self._compose("logs", "--no-color", "--tail", str(lines), *names), timeout=PROBE_TIMEOUT)
        return self.redact(result.stdout + result.stderr).rstrip("\n")

    @contextlib.contextmanager
    def client_endpoints(self) -> Iterator[addresses.Endpoints]:
        """Published on 127.0.0.1 by the compose file: nothing to open or close. In prod with the logins: Fluss's,
        and Trino's over HTTPS, trusting the certificate kept beside .env; the external catalog's where it wants one."""
        credentials = self.credentials()
        endpoints = security.with_fluss_login(addresses.endpoints(self.settings, View.EXTERNAL), self.settings,
                                              credentials)
        endpoints = security.with_catalog_login(endpoints, self.settings, self.base_dir)
        yield security.with_trino_login(endpoints, self.settings, credentials, str(self.tls_dir / tls.CA))

    # ------------------------------------------------------------------------------------------ helpers

    def endpoint_map(self) -> dict[str, str]:
        """Where each instance is reached from this host (only those with published ports)."""
        found = {name: addresses.instance_endpoint(c, name) for c, name in self.stack.instances()}
        return {name: url for name, url in found.items() if url}

    def containers(self) -> list[dict[str, Any]]:
        result = self._exec(self._compose("ps", "-a", "--format", "json"), timeout=PROBE_TIMEOUT)
        if result.returncode != 0:
            raise LakehouseError(f"`compose ps` failed: {_last_line(result.stderr) or result.returncode}",
                                 "is the engine running? try `docker info`")
        return parse_ps(result.stdout)

    def check_ports(self, services: list[str]) -> None:
        """Every published port must be free on 127.0.0.1, unless this project's own container holds it."""
        running = {c.get("Service") for c in self.containers() if c.get("State") == "running"}
        for entry in self.stack.host_ports():  # each instance is the service of its name
            if entry.port.published and entry.instance not in running and not port_free(entry.number):
                raise EnvironmentProblem(
                    f"port {entry.number} on 127.0.0.1 (published by service '{entry.instance}') is already in use",
                    f"stop whatever listens there (`lsof -i :{entry.number}`)"
                    + (f", or pick another port: --set ports.{entry.port.setting}=<free port>" if entry.port.setting
                       else ""))

    def materialize_jars(self) -> None:
        from sagaz_lakehouse import artifacts
        cache = artifacts.cache_dir(self.settings.local.cache_dir)
        for group in layout.jar_groups(self.stack):
            paths = artifacts.fetch(artifacts.group(group), cache, self.settings.local.maven_repository,
                                    progress=_download_progress(self.log))
            directory = self.project_dir / layout.JARS_DIR / group
            artifacts.materialize(paths, directory)
            for path in directory.iterdir():
                # Containers run as their own users (flink is uid 9999): the bind-mounted jars must be world-readable.
                path.chmod(0o644)

    def diagnose(self, what: str) -> LakehouseError:
        """The service that failed: a one-shot that exited non-zero, or a service whose health check failed, before
        one that is still starting, before one that was never started (it waited on the first); with its state,
        its last health check output and its log tail. The others that are not healthy are listed in the hint."""
        try:
            containers = self.containers()
        except LakehouseError:
            containers = []
        order = {name: i for i, (_, name) in enumerate(self.stack.instances())}
        bad = sorted((c for c in containers if container_state(c) not in ("healthy", "completed", "running")),
                     key=lambda c: (failure_rank(container_state(c)), order.get(c.get("Service", ""), len(order))))
        if not bad:
            return LakehouseError(f"compose up failed: {what}", f"see `sagaz-lakehouse status` and "
                                                                 f"`{' '.join(self._compose('logs'))}`")
        first = bad[0]
        service = first.get("Service", "?")
        tail = self._exec(self._compose("logs", "--no-color", "--tail", str(LOG_TAIL), service), timeout=PROBE_TIMEOUT)
        check = f"state {first.get('State', '?')}, health {first.get('Health') or 'none'}, {first.get('Status', '')}"
        probe = self.last_health_check(first.get("ID", ""))
        if probe:
            check += f"; last health check: {probe}"
        others = ", ".join(f"{c.get('Service', '?')} ({container_state(c)})" for c in bad[1:])
        hint = f"see `sagaz-lakehouse logs {service}`" + (f"; also not healthy: {others}" if others else "")
        return ComponentFailed(service, check.strip(", "), self.redact(tail.stdout + tail.stderr).rstrip(), hint)

    def last_health_check(self, container_id: str) -> str:
        """The exit code and last output line of a container's most recent health check ("" if there is none)."""
        if not container_id:
            return ""
        try:
            result = self._exec([self.engine(), "inspect", "--format", "{{json .State.Health}}", container_id],
                                timeout=PROBE_TIMEOUT)
            log = (json.loads(result.stdout or "null") or {}).get("Log") or []
        except (LakehouseError, ValueError, AttributeError):
            return ""
        if not log:
            return ""
        last = log[-1]
        output = _last_line(str(last.get("Output", ""))) or "no output"
        return self.redact(f"exit {last.get('ExitCode', '?')}, {output[:300]}")

    def redact(self, text: str) -> str:
        """Never echo a credential value, whatever a container chose to log."""
        with contextlib.suppress(LakehouseError):
            return self.credentials().redact(text)
        return text

    def child_environment(self) -> dict[str, str]:
        """The environment engine commands run with: the caller's, without variables compose would prefer over the
        project's .env (SHADOWING_VARS)."""
        return {k: v for k, v in os.environ.items() if k not in SHADOWING_VARS}

    def _exec(self, args: list[str], timeout: int) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=self.child_environment(),
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise LakehouseError(f"`{' '.join(args[:4])} ...` did not answer within {timeout}s",
                                 "is the container engine responsive? try `docker info`") from exc

    def _stream(self, args: list[str], timeout: int) -> int:
        """Run a long compose command, copying its progress to the log line by line; killed after ``timeout``."""
        self.log("$ " + " ".join(args))
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env=self.child_environment(),
                                   cwd=self.project_dir if self.project_dir.is_dir() else None)
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                self.log(self.redact(plain(line.rstrip("\n"))))
            code = process.wait()
        finally:
            timer.cancel()
        if code < 0:
            self.log(f"stopped after {timeout}s")
        return code


# ---------------------------------------------------------------------------------------------- parsing


def parse_version(text: str) -> tuple[int, int, int] | None:
    """The compose version from `compose version` output ("Docker Compose version v2.40.3", "2.24.6-desktop.1")."""
    match = re.search(r"Docker Compose version v?(\d+)\.(\d+)\.(\d+)", text) or \
        re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(g) for g in match.groups()) if match else None  # type: ignore[return-value]


def parse_ps(text: str) -> list[dict[str, Any]]:
    """`compose ps --format json`: a JSON array before Compose 2.21, one object per line since."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def container_state(container: dict[str, Any] | None) -> str:
    if container is None:
        return "absent"
    state, health = container.get("State", ""), container.get("Health", "")
    if state == "running":
        return health or "running"  # healthy | unhealthy | starting, or running without a health check
    if state == "exited":
        return "completed" if int(container.get("ExitCode", 1)) == 0 else "failed"
    return state or "unknown"


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def plain(text: str) -> str:
    """Without terminal escape codes: compose 2.40 colours and clears lines of its attached output (`Aborting on
    container exit...`) even with `--ansi never`."""
    return ANSI_ESCAPE.sub("", text)


def failure_rank(state: str) -> int:
    """How directly a state explains a failed `up`: 0 failed by itself, 1 still starting, 2 never started."""
    if state in ("failed", "unhealthy", "restarting", "exited", "dead", "unknown"):
        return 0
    return 1 if state in ("starting", "running", "paused") else 2


def port_free(port: int) -> bool:
    """Whether the engine can publish on the port. SO_REUSEADDR, as the engine's own listener sets it: connections
    of a container just stopped linger in TIME_WAIT on the port, which refuses a plain bind but not the engine (an
    `up` right after `down` failed here); a socket listening there still refuses it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((addresses.LOOPBACK, port))
        except OSError:
            return False
    return True


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _download_progress(log: Log) -> Callable[[str, int, int], None]:
    announced: set[str] = set()

    def progress(name: str, done: int, total: int) -> None:
        if name not in announced:
            announced.add(name)
            log(f"downloading {name}" + (f" ({total // 2**20} MiB)" if total else ""))

    return progress
