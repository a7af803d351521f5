"""Local driver: runs the local target's processes under the supervisor, from a run folder.

``up`` checks everything first (Java, MinIO or Go, free ports) and starts nothing if anything is missing; then it
installs the locked distributions into the cache (verified, once; all at the same time, so downloads overlap the
MinIO build), writes the configuration, and starts each instance as soon as what it depends on is healthy. Running
instances are left alone, so ``up`` is idempotent. Software nothing in the data path waits for and that must be
built first (Prometheus, on a cold cache) is built in the background (``background``): ``up`` returns without it.
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
from sagaz_lakehouse.stack import JOBMANAGER, SUBMIT_TIERING, Component, Native, NativeContext, Stack, View
from sagaz_lakehouse.targets import RESTART_TIMEOUT_S
from sagaz_lakehouse.targets.local import background, class_cache, watchdog
from sagaz_lakehouse.targets.local import layout as target
from sagaz_lakehouse.targets.local.distributions import Installer
from sagaz_lakehouse.targets.local.jdk import Java, find_java
from sagaz_lakehouse.targets.local.supervisor import ProcessSpec, Supervisor, port_owner, start_in_order

Progress = Callable[[str], None]
InstallKey = tuple[str, tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...]]  # distribution, jar groups, tree


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
        later = self._built_later(installer, running)
        homes = self._install(installer, later)
        credentials = self._write_config(credentials)

        def java_of(component: str) -> Path:
            java = javas.get(component)
            return java.executable if java else Path(sys.executable)

        peers = {c.name: (java_of(c.name), homes[c.name]) for c, _ in instances}

        def context(component: Component, name: str) -> NativeContext:
            return NativeContext(java_of(component.name), homes[component.name],
                                 f"-Dsagaz.run-dir={self.layout.run_dir}", self.supervisor.log_file(name), peers)

        def class_cache_flags(component: Component, name: str, argv: list[str]) -> tuple[str, ...]:
            java = javas[component.name]
            heap = next((arg for arg in argv if arg.startswith("-Xmx")), "")
            return class_cache.launch_flags(self.cache, java.home, java.version, homes[component.name], heap,
                                            self.layout.run_dir, name)

        specs = target.process_specs(self.stack, self.layout, credentials, context, class_cache_flags)
        waiting = {n for c in later for n in c.instance_names()}
        watchdog.stop(self.layout.run_dir)  # it would race `up` for the components `up` starts
        building = {name: how for c in later for name, how in self._build_in_background(installer, c, specs).items()}
        startable = [s for s in specs if s.name not in waiting]
        outcome = start_in_order(self.supervisor, startable, self.progress, wait=wait, timeout=timeout,
                                 restart_changed=self.restart_changed)
        self._watch(startable, [n for n, how in outcome.items() if how == "started"])
        outcome.update(building)
        if wait:
            self.progress(f"all {len(outcome) - len(waiting)} components are healthy"
                          + (f"; {', '.join(sorted(waiting))} start(s) once built" if waiting else ""))
        return {"dry_run": False, **plan, "components": outcome}

    def restart(self, component: str, timeout: int = RESTART_TIMEOUT_S) -> None:
        """Stop every instance of ``component`` and start them again with ``up`` (which starts what is not running,
        waits until it is healthy and starts the watchdog again)."""
        watchdog.stop(self.layout.run_dir)  # it would start the instances itself, racing `up`
        self._stop_together([name for _, name in self.stack.restartable(component)])
        self.up(wait=True, timeout=timeout)

    def _built_later(self, installer: Installer, running: set[str]) -> list[Component]:
        """Components left to a background build: their software must be built, none of their instances runs, and
        nothing depends on them (so ``up``, ``create-tables`` and ``doctor``'s data path never wait for them)."""
        needed_by = {dependency for c in self.stack.components for dependency, _ in c.depends_on}
        return [c for c in self.stack.components
                if c.name not in needed_by and not running & set(c.instance_names())
                and installer.built_later(self._native(c).distribution)]

    def _install(self, installer: Installer, later: list[Component]) -> dict[str, Path]:
        """Each component's software (its home), installed concurrently: downloads and unpacking overlap the MinIO
        build (issue 29). Components sharing a distribution share one install."""
        from concurrent.futures import ThreadPoolExecutor

        wanted = {c.name: self._install_key(c) for c in self.stack.components if c not in later}
        homes = {c.name: installer.later_home(self._native(c).distribution)[0] for c in later}
        with ThreadPoolExecutor(max_workers=max(1, len(set(wanted.values())))) as pool:
            jobs = {key: pool.submit(installer.install, key[0], key[1], dict(key[2])) for key in set(wanted.values())}
        return homes | {name: jobs[key].result() for name, key in wanted.items()}

    def _install_key(self, component: Component) -> InstallKey:
        native = self._native(component)
        return native.distribution, tuple(j.group for j in component.jars), tuple(sorted(native.tree.items()))

    def _build_in_background(self, installer: Installer, component: Component,
                             specs: list[ProcessSpec]) -> dict[str, str]:
        """Leave each instance's start specification for the builder, then start the builder (before the rest of
        the stack: a build that finishes first must find them)."""
        _, build = installer.later_home(self._native(component).distribution)
        names = component.instance_names()
        for spec in specs:
            if spec.name in names:
                self._record(spec, None, pending=True)
        background.launch(self.layout.run_dir, component.name, names, build)
        log = background.build_log(self.layout.run_dir, component.name)
        self.progress(f"{component.name}: being built in the background (a few minutes on a cold cache; nothing "
                      f"waits for it); it starts once built. Log: {log}; `sagaz-lakehouse status` shows it")
        return {name: "building" for name in names}

    def down(self, *, purge: bool = False) -> None:
        """Stop every process with a pid file in the run folder, dependants first; instances the current settings
        no longer name (after scaling down) included."""
        for name in background.stop_all(self.layout.run_dir):  # before it starts what `down` stops
            self.progress(f"{name}: background build stopped")
        if watchdog.stop(self.layout.run_dir):  # first: it would restart what `down` stops
            self.progress("watchdog: stopped")
        watchdog.forget(self.layout.run_dir)
        known = {n for _, n in self.stack.instances()}
        others = sorted(set(self.supervisor.tracked()) - known)
        waves = [others, *([n for c in wave for n in self.stack.get(c).instance_names()]
                           for wave in self.stack.stop_waves())]
        for wave in waves:
            self._stop_together(wave)
        if purge and self.layout.run_dir.exists():
            shutil.rmtree(self.layout.run_dir)
            self.progress(f"removed {self.layout.run_dir} (all data)")
        elif not purge:
            self.progress(f"data kept in {self.layout.run_dir / 'data'}; `down --purge` removes it")

    def _stop_together(self, names: list[str]) -> None:
        """Stop one wave's instances in parallel (each waits up to its grace period for a clean exit; one after
        another, a default stack took 18 to 21 s to stop), as Compose stops the services of one level."""
        from concurrent.futures import ThreadPoolExecutor

        if not names:
            return
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            stopped = list(pool.map(self.supervisor.stop, names))
        for name, was_running in zip(names, stopped, strict=True):
            if was_running:
                self.progress(f"{name}: stopped")

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
            build = background.state(self.layout.run_dir, component.name) if pid is None else None
            if build is not None:
                rows.append({"component": name, "state": build.state, "pid": None, "endpoint": "",
                             "detail": build.detail, **({"log_tail": build.log_tail} if build.log_tail else {})})
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
            if not spec.one_shot:
                self._record(spec, submit if spec.name == JOBMANAGER else None,
                             depends_on=[d for d in spec.depends_on if d in by_name and not by_name[d].one_shot])
        watchdog.forget_state(run_dir, started)  # started afresh: an old crash loop no longer holds
        watchdog.start(run_dir)

    def _record(self, spec: ProcessSpec, submit: ProcessSpec | None, depends_on: list[str] | None = None,
                pending: bool = False) -> None:
        """The watchdog's start specification of one instance; ``submit``: the tiering job, for the JobManager."""
        watchdog.write_spec(
            self.layout.run_dir, spec.name, spec.argv, spec.env, cwd=spec.cwd, depends_on=depends_on or [],
            ports=spec.ports, health=spec.health, fingerprint=spec.fingerprint(),
            after_start=[submit.argv] if submit else [],
            liveness=self._tiering_liveness() if spec.name == JOBMANAGER else None, pending=pending)

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
        needed = {c.name: self._native(c).java for c in self.stack.components}
        found = {minimum: find_java(self.settings, minimum) for minimum in sorted(set(needed.values()) - {0})}
        return {name: found[minimum] for name, minimum in needed.items() if minimum}

    def _native(self, component: Component) -> Native:
        return component.setup(target.instance(self.layout, component, component.instance_names()[0])).native

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

