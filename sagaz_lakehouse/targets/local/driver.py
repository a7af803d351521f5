"""Local driver: runs the local target's processes under the supervisor, from a run folder.

``up`` checks everything first (Java, MinIO or Go, free ports) and starts nothing if anything is missing; then it
installs the locked distributions into the cache (verified, once), writes the configuration, and starts each
instance as soon as what it depends on is healthy. Running instances are left alone, so ``up`` is idempotent.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sagaz_lakehouse import addresses, artifacts, security, tls
from sagaz_lakehouse.config import Credentials, Settings
from sagaz_lakehouse.errors import ConfigError, Problem
from sagaz_lakehouse.stack import JOBMANAGER, SUBMIT_TIERING, Component, NativeContext, Stack, View
from sagaz_lakehouse.targets.local import layout as target
from sagaz_lakehouse.targets.local import watchdog
from sagaz_lakehouse.targets.local.distributions import Installer
from sagaz_lakehouse.targets.local.jdk import Java, find_java
from sagaz_lakehouse.targets.local.supervisor import ProcessSpec, Supervisor, port_owner, start_in_order

Progress = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class LocalDriver:
    def __init__(self, settings: Settings, base_dir: Path, progress: Progress = _stderr) -> None:
        self.settings = settings
        self.base_dir = base_dir
        self.layout = target.default_layout(settings, base_dir)
        self.supervisor = Supervisor(self.layout.run_dir)
        self.cache = artifacts.cache_dir(settings.local.cache_dir)
        self.progress = progress
        self.stack: Stack = target.local_stack(settings)
        self.restart_changed = False  # `up --restart-changed`

    # ------------------------------------------------------------------------------------------ verbs

    def up(self, *, dry_run: bool = False, wait: bool = True, timeout: int = 600) -> dict[str, Any]:
        credentials = security.resolve_credentials(self.settings, View.EXTERNAL, base_dir=self.base_dir)
        instances = self.stack.instances()
        running = {name for _, name in instances if self.supervisor.running_pid(name) is not None}
        self._check_ports(running)
        javas = self._javas()
        installer = Installer(self.cache, self.settings.local.maven_repository, self.settings.local.minio_binary,
                              self.progress, self.settings.local.prometheus_binary)
        if not self.settings.external_store:  # an external store: no MinIO to run
            installer.check_minio()
        plan = {"run_dir": str(self.layout.run_dir), "cache_dir": str(self.cache),
                "would_start": [n for _, n in instances if n not in running], "already_running": sorted(running),
                "endpoints": {k: v for k, v in vars(addresses.endpoints(self.settings, View.EXTERNAL)).items()
                              if k not in ("fluss_login", "trino_login")}}
        if dry_run:
            return {"dry_run": True, **plan}
        self.cache.mkdir(parents=True, exist_ok=True)
        homes = {(c.name, n): self._home(installer, c) for c, n in instances}
        credentials = self._write_config(credentials)

        def java_of(component: str) -> Path:
            java = javas.get(component)
            return java.executable if java else Path(sys.executable)

        peers = {c.name: (java_of(c.name), homes[(c.name, n)]) for c, n in instances}

        def context(component: Component, name: str) -> NativeContext:
            return NativeContext(java_of(component.name), homes[(component.name, name)],
                                 f"-Dsagaz.run-dir={self.layout.run_dir}", self.supervisor.log_file(name), peers)

        specs = target.process_specs(self.stack, self.layout, credentials, context)
        watchdog.stop(self.layout.run_dir)  # it would race `up` for the components `up` starts
        outcome = start_in_order(self.supervisor, specs, self.progress, wait=wait, timeout=timeout,
                                 restart_changed=self.restart_changed)
        self._watch(specs, [name for name, how in outcome.items() if how == "started"])
        if wait:
            self.progress(f"all {len(outcome)} components are healthy")
        return {"dry_run": False, **plan, "components": outcome}

    def down(self, *, purge: bool = False) -> None:
        """Stop every process with a pid file in the run folder, dependants first; instances the current settings
        no longer name (after scaling down) included."""
        if watchdog.stop(self.layout.run_dir):  # first: it would restart what `down` stops
            self.progress("watchdog: stopped")
        watchdog.forget(self.layout.run_dir)
        known = [n for _, n in self.stack.instances()]
        others = sorted(set(self.supervisor.tracked()) - set(known))
        for name in [*others, *reversed(known)]:
            if self.supervisor.stop(name):
                self.progress(f"{name}: stopped")
        if purge and self.layout.run_dir.exists():
            shutil.rmtree(self.layout.run_dir)
            self.progress(f"removed {self.layout.run_dir} (all data)")
        elif not purge:
            self.progress(f"data kept in {self.layout.run_dir / 'data'}; `down --purge` removes it")

    def status(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for component, name in self.stack.instances():
            pid = self.supervisor.running_pid(name)
            if component.one_shot and pid is None:
                code = self.supervisor.last_exit(name)
                state = "absent" if code is None else "completed" if code == 0 else "failed"
                rows.append({"component": name, "state": state, "pid": None, "endpoint": "",
                             "detail": "" if code is None else f"exit {code}"})
                continue
            probe = target.health_probe(self.stack, component, name)
            state = ("stopped" if pid is None else "running" if component.one_shot
                     else "healthy" if probe is None or probe.ok() else "starting")
            rows.append({"component": name, "state": state, "pid": pid,
                         "endpoint": addresses.instance_endpoint(component, name),
                         "detail": f"pid {pid}" if pid else ""})
        return self._with_restarts(rows)

    def _with_restarts(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The watchdog's record per row: restarts, last exit, and a crash loop with its log tail."""
        run_dir = self.layout.run_dir
        states = watchdog.read_state(run_dir)
        for row in rows:
            record = states.get(row["component"])
            if record is None:
                continue
            row.update(restarts=record.restarts, last_exit=record.last_exit)
            if record.restarts:
                row["detail"] = ", ".join(filter(None, [row["detail"], f"{record.restarts} restart(s)",
                                                        record.last_exit and f"last died: {record.last_exit}"]))
            if record.state in ("crash loop", "failed"):
                row.update(state=record.state, detail=record.detail, log_tail=record.log_tail)
        if watchdog.load_specs(run_dir) and watchdog.running_pid(run_dir) is None:
            rows.append({"component": "watchdog", "state": "stopped", "pid": None, "endpoint": "",
                         "detail": "nothing restarts a component that dies; `sagaz-lakehouse up` starts it"})
        return rows

    def logs(self, component: str, lines: int) -> str:
        found = self.stack.named(component)
        sections = [(name, self.supervisor.tail(name, lines)) for _, name in found]
        if len(sections) == 1:
            return sections[0][1]
        return "\n".join(f"==> {name} <==\n{text}" for name, text in sections)

    @contextmanager
    def client_endpoints(self) -> Iterator[addresses.Endpoints]:
        credentials = security.resolve_credentials(self.settings, View.EXTERNAL, base_dir=self.base_dir)
        endpoints = security.with_fluss_login(addresses.endpoints(self.settings, View.EXTERNAL), self.settings,
                                              credentials)
        endpoints = security.with_catalog_login(endpoints, self.settings, self.base_dir)
        yield security.with_trino_login(endpoints, self.settings, credentials, str(self.tls_dir / tls.CA))

    # ------------------------------------------------------------------------------------------ helpers

    def _watch(self, specs: list[ProcessSpec], started: list[str]) -> None:
        """Record how to start each long-lived instance again, then start the watchdog (targets.local.watchdog):
        it restarts an instance that dies, with backoff. A restarted JobManager gets the tiering job resubmitted,
        and one whose tiering job stops committing while records wait is restarted (lake_health liveness)."""
        run_dir = self.layout.run_dir
        by_name = {spec.name: spec for spec in specs}
        submit = by_name.get(SUBMIT_TIERING)
        for spec in specs:
            if spec.one_shot:
                continue
            jobmanager = spec.name == JOBMANAGER
            watchdog.write_spec(
                run_dir, spec.name, spec.argv, spec.env, cwd=spec.cwd,
                depends_on=[d for d in spec.depends_on if d in by_name and not by_name[d].one_shot],
                ports=spec.ports, health=spec.health, fingerprint=spec.fingerprint(),
                after_start=[submit.argv] if jobmanager and submit else [],
                liveness=self._tiering_liveness() if jobmanager else None)
        watchdog.forget_state(run_dir, started)  # started afresh: an old crash loop no longer holds
        watchdog.start(run_dir)

    def _tiering_liveness(self) -> watchdog.Liveness:
        endpoints = addresses.endpoints(self.settings, View.EXTERNAL)
        login = self.layout.config(JOBMANAGER) / security.LOGIN_FILE
        return watchdog.tiering_liveness(endpoints.fluss_bootstrap, self.settings.lake.database,
                                         self.settings.freshness,
                                         login_file=str(login) if security.fluss_sasl_on(self.settings)
                                         else "")

    def _check_ports(self, running: set[str]) -> None:
        """Before starting anything: every port a stopped instance binds must be free."""
        problems = [Problem(f"port {entry.number}", f"needed by {entry.instance} but another program is listening "
                            "on it", f"stop that program, or move {entry.instance} with --set ports.<name>=<free port>")
                    for entry in self.stack.host_ports() if entry.instance not in running and port_owner(entry.number)]
        if problems:
            raise ConfigError(problems, "the machine (nothing was started)")

    def _javas(self) -> dict[str, Java]:
        """The JDK for each JVM component (Trino needs a newer one than the rest); found before anything starts."""
        needed = {c.name: c.setup(target.instance(self.layout, c, c.instance_names()[0])).native.java
                  for c in self.stack.components}
        found = {minimum: find_java(self.settings, minimum) for minimum in sorted(set(needed.values()) - {0})}
        return {name: found[minimum] for name, minimum in needed.items() if minimum}

    def _home(self, installer: Installer, component: Component) -> Path:
        native = component.setup(target.instance(self.layout, component, component.instance_names()[0])).native
        return installer.install(native.distribution, tuple(j.group for j in component.jars), native.tree)

    @property
    def tls_dir(self) -> Path:
        """Trino's certificate (prod): made by the first `up`, kept until `down --purge`."""
        return self.layout.run_dir / "tls"

    def _write_config(self, credentials: Credentials) -> Credentials:
        """Every instance's files; returns the credentials with what `up` made besides (Trino's TLS keystore)."""
        from sagaz_lakehouse import render

        run_dir = self.layout.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(run_dir, 0o700)  # config files inside hold credentials
        if security.trino_auth_on(self.settings):
            if credentials.trino_keystore:  # the operator's (secrets.trino_tls)
                tls.install(self.tls_dir, credentials.trino_keystore)
            else:
                credentials = dataclasses.replace(credentials, trino_keystore=tls.ensure(self.tls_dir).keystore_pem)
        render.write_files(target.files(self.settings, credentials, self.layout), run_dir)
        for _, name in self.stack.instances():
            self.layout.data(name).mkdir(parents=True, exist_ok=True)
        return credentials

