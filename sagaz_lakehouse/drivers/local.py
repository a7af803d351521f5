"""Local target: the whole stack as native processes on loopback, supervised from a run folder.

``up`` checks the machine first (Java, MinIO, free ports) and starts nothing if anything is missing; then it
installs the locked artifacts into the cache (verified, once), renders the config files, and starts each
component as soon as what it depends on is healthy. Running components are left alone, so ``up`` is idempotent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sagaz_lakehouse import artifacts, render, versions, wiring
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.config import Credentials, Settings, commented_yaml, mebibytes, resolve_credentials
from sagaz_lakehouse.errors import EnvironmentProblem, UsageError
from sagaz_lakehouse.jdk import find_java
from sagaz_lakehouse.stack import View
from sagaz_lakehouse.supervisor import HealthProbe, ProcessSpec, Supervisor, port_owner, start_in_order
from sagaz_lakehouse.targets import local as target
from sagaz_lakehouse.targets.local import Layout, read_env_file, tablet_name, taskmanager_name

LOOPBACK = "127.0.0.1"
# Flink's default config.yaml passes these to every Flink JVM (env.java.opts.all); the bin scripts we bypass
# would add them. Without them Java 17 refuses Flink's reflective access (e.g. DataStream V2 translators).
FLINK_JAVA_OPENS = [
    *(f"--add-exports={m}=ALL-UNNAMED" for m in (
        "java.base/sun.net.util", "java.rmi/sun.rmi.registry", "jdk.compiler/com.sun.tools.javac.api",
        "jdk.compiler/com.sun.tools.javac.file", "jdk.compiler/com.sun.tools.javac.parser",
        "jdk.compiler/com.sun.tools.javac.tree", "jdk.compiler/com.sun.tools.javac.util",
        "java.security.jgss/sun.security.krb5")),
    *(f"--add-opens=java.base/{p}=ALL-UNNAMED" for p in (
        "java.lang", "java.net", "java.io", "java.nio", "sun.nio.ch", "java.lang.reflect", "java.text",
        "java.time", "java.util", "java.util.concurrent", "java.util.concurrent.atomic",
        "java.util.concurrent.locks")),
]
MINIO_MODULE = "github.com/minio/minio"


def zookeeper_serving(port: int) -> HealthProbe:
    """`srvr` reports a Mode only while the server actually serves (a TCP connect succeeds earlier)."""
    return HealthProbe("fourletter", LOOPBACK, port, "srvr", expect="Mode:")

Progress = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class LocalDriver:
    def __init__(self, settings: Settings, base_dir: Path, progress: Progress = _stderr) -> None:
        self.settings = settings
        self.layout: Layout = target.default_layout(settings, base_dir)
        self.supervisor = Supervisor(self.layout.run_dir)
        self.cache = artifacts.cache_dir(settings.local.cache_dir)
        self.progress = progress

    # ------------------------------------------------------------------------------------------ verbs

    def up(self, *, dry_run: bool = False, wait: bool = True, timeout: int = 600) -> dict[str, Any]:
        credentials = resolve_credentials(self.settings, base_dir=self.layout.run_dir.parent)
        names = self.component_names()
        running = {n for n in names if self.supervisor.running_pid(n) is not None}
        self._check_ports(names, running)
        java, trino_java = find_java(self.settings, 17), find_java(self.settings, versions.JAVA_FOR["trino"])
        if dry_run:
            return {"dry_run": True, "run_dir": str(self.layout.run_dir), "would_start": [
                n for n in names if n not in running], "already_running": sorted(running)}
        minio = self._minio_binary()
        homes = self._install()
        self._write_config(credentials)
        specs = self._specs(java.executable, trino_java.executable, minio, homes, credentials)
        deadline = time.monotonic() + timeout
        specs = [self._with_deadline(spec, deadline) for spec in specs]
        outcome = start_in_order(self.supervisor, specs, self.progress, wait=wait)
        if wait:
            self.progress(f"stack is up ({len(outcome)} components); next: sagaz-lakehouse create-tables")
        return {"run_dir": str(self.layout.run_dir), "components": outcome,
                "endpoints": vars(wiring.endpoints(self.settings, View.EXTERNAL))}

    def down(self, *, purge: bool = False) -> None:
        for name in reversed(self.component_names()):
            if self.supervisor.stop(name):
                self.progress(f"{name}: stopped")
        if purge and self.layout.run_dir.exists():
            shutil.rmtree(self.layout.run_dir)
            self.progress(f"removed {self.layout.run_dir} (all data)")
        elif not purge:
            self.progress(f"data kept in {self.layout.run_dir / 'data'}; `down --purge` removes it")

    def status(self) -> list[dict[str, Any]]:
        rows = []
        for spec in self._status_specs():
            pid = self.supervisor.running_pid(spec.name)
            state = "stopped" if pid is None else "healthy" if spec.health is None or spec.health.ok() else "starting"
            rows.append({"component": spec.name, "state": state, "pid": pid,
                         "endpoint": self._endpoint_of(spec.name), "detail": f"pid {pid}" if pid else ""})
        return rows

    def logs(self, component: str, lines: int) -> str:
        names = [*self.component_names(), "create-bucket", s.SUBMIT_TIERING]
        if component not in names:
            raise UsageError(f"unknown component '{component}'", f"use one of: {', '.join(names)}")
        return self.supervisor.tail(component, lines)

    @contextmanager
    def client_endpoints(self) -> Iterator[wiring.Endpoints]:
        yield wiring.endpoints(self.settings, View.EXTERNAL)

    # ------------------------------------------------------------------------------------------ model

    def component_names(self) -> list[str]:
        n_tablets, n_tms = self.settings.replicas.tablet_servers, self.settings.replicas.flink_taskmanagers
        return [s.ZOOKEEPER, s.MINIO, s.REST_CATALOG, s.COORDINATOR,
                *(tablet_name(i) for i in range(n_tablets)), s.JOBMANAGER,
                *(taskmanager_name(i) for i in range(n_tms)), s.TRINO]

    def _ports_of(self) -> dict[str, tuple[int, ...]]:
        p = self.settings.ports
        ports: dict[str, tuple[int, ...]] = {
            s.ZOOKEEPER: (p.zookeeper,), s.MINIO: (p.minio, p.minio_console), s.REST_CATALOG: (p.rest_catalog,),
            s.COORDINATOR: (p.fluss_coordinator,), s.JOBMANAGER: (p.flink_rest, p.flink_rpc), s.TRINO: (p.trino,)}
        for i in range(self.settings.replicas.tablet_servers):
            ports[tablet_name(i)] = (p.fluss_tablet + i,)
        return ports

    def _endpoint_of(self, name: str) -> str:
        ports = self._ports_of().get(name)
        if not ports:
            return ""
        scheme = "" if name in (s.ZOOKEEPER, s.COORDINATOR) or name.startswith(s.TABLET) else "http://"
        return f"{scheme}{LOOPBACK}:{ports[0]}"

    def _check_ports(self, names: list[str], running: set[str]) -> None:
        """Before starting anything: every port a stopped component needs must be free."""
        from sagaz_lakehouse.errors import ConfigError, Problem

        problems = [Problem(f"port {port}", f"needed by {name} but another program is listening on it",
                            f"stop that program, or move {name} with --set ports.<name>=<free port>")
                    for name, ports in self._ports_of().items() if name in names and name not in running
                    for port in ports if port_owner(port)]
        if problems:
            raise ConfigError(problems, "the machine (nothing was started)")

    # ------------------------------------------------------------------------------------------ install

    def _install(self) -> dict[str, Path]:
        """Each distribution installed once into the cache, from verified downloads."""
        homes = {
            "zookeeper": self._install_tree("zookeeper", {"lib": ["zookeeper"]}),
            "fluss": self._install_tree("fluss", {"lib": ["fluss-lib"], "plugins/s3": ["fluss-plugin-s3"],
                                                  "plugins/iceberg": ["fluss-plugin-iceberg",
                                                                      "fluss-iceberg-extras"]}),
            "rest-catalog": self._install_tree("rest-catalog", {"lib": ["rest-catalog"]}),
            "flink": self._install_flink(),
            "trino": self._install_trino(),
        }
        return homes

    def _fetch(self, group: str) -> list[Path]:
        items = artifacts.group(group)
        missing = [a for a in items if not artifacts.cached_path(a, self.cache).exists()]
        if missing:
            total = sum(a.size for a in missing) / 1e6
            self.progress(f"downloading {group}: {len(missing)} file(s), {total:.0f} MB (verified, cached in "
                          f"{self.cache})")
        return artifacts.fetch(items, self.cache, self.settings.local.maven_repository, self._download_progress())

    def _download_progress(self) -> artifacts.Progress:
        last: dict[str, float] = {}

        def report(name: str, done: int, total: int) -> None:
            now = time.monotonic()
            if total and (done == total or now - last.get(name, 0) > 5):
                last[name] = now
                self.progress(f"  {name}: {done / 1e6:.0f}/{total / 1e6:.0f} MB")

        return report

    def _home_dir(self, name: str, groups: list[str]) -> Path:
        digest = render.config_checksum([a.sha256 for g in groups for a in artifacts.group(g)])
        return self.layout.homes / f"{name}-{digest}"

    @contextmanager
    def _staging(self, home: Path) -> Iterator[Path]:
        """Build a home in a temp folder and move it into place only when complete."""
        home.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=home.parent, prefix=f".{home.name}-"))
        try:
            yield staging
            os.replace(staging, home)
        finally:
            if staging.exists():
                shutil.rmtree(staging)

    def _install_tree(self, name: str, layout: dict[str, list[str]]) -> Path:
        home = self._home_dir(name, [g for groups in layout.values() for g in groups])
        if home.exists():
            return home
        paths = {folder: [p for g in groups for p in self._fetch(g)] for folder, groups in layout.items()}
        with self._staging(home) as staging:
            for folder, files in paths.items():
                artifacts.materialize(files, staging / folder)
        return home

    def _install_flink(self) -> Path:
        groups = ["flink-dist", "flink-lib-fluss", "tiering-job"]
        home = self._home_dir("flink", groups)
        if home.exists():
            return home
        (sdist,) = self._fetch("flink-dist")
        extra, tiering = self._fetch("flink-lib-fluss"), self._fetch("tiering-job")
        self.progress("installing Flink (from the apache-flink-libraries sdist)")
        with self._staging(home) as staging, tarfile.open(sdist) as archive:
            for member in archive.getmembers():
                parts = Path(member.name).parts
                if len(parts) > 2 and parts[1] == "deps" and parts[2] in ("lib", "bin", "plugins", "opt"):
                    member.name = str(Path(*parts[2:]))
                    archive.extract(member, staging, filter="data")
            artifacts.materialize(extra, staging / "lib")
            artifacts.materialize(tiering, staging / "opt")
        return home

    def _install_trino(self) -> Path:
        home = self._home_dir("trino", ["trino"])
        if home.exists():
            return home
        core, plugin = self._fetch("trino")
        self.progress("installing Trino (server core + Iceberg plugin)")
        with self._staging(home) as staging:
            with tarfile.open(core) as archive:  # has hard links between entries: extract whole, then move
                archive.extractall(staging / "raw", filter="data")
            (top,) = (staging / "raw").iterdir()
            for folder in ("lib", "plugin"):
                os.replace(top / folder, staging / folder)
            shutil.rmtree(staging / "raw")
            with zipfile.ZipFile(plugin) as archive:
                for info in archive.infolist():
                    parts = Path(info.filename).parts
                    if len(parts) > 1 and not info.is_dir():
                        target_path = staging / "plugin" / "iceberg" / Path(*parts[1:])
                        target_path.parent.mkdir(parents=True, exist_ok=True)
                        target_path.write_bytes(archive.read(info))
        return home

    def _minio_binary(self) -> Path:
        """A MinIO server: configured path, then PATH, then the cache, then built with `go install`."""
        configured = self.settings.local.minio_binary
        if configured:
            path = Path(configured).expanduser()
            if not os.access(path, os.X_OK):
                raise EnvironmentProblem(f"local.minio_binary {path} is not an executable file",
                                         "point it at a MinIO server binary, or leave it empty to build one")
            return path
        cached = self.cache / "bin" / f"minio-{versions.MINIO.version}"
        if cached.exists():
            return cached
        on_path = shutil.which("minio")
        if on_path:
            return Path(on_path)
        go = shutil.which("go")
        if not go:
            raise EnvironmentProblem(
                "no MinIO server binary found (local.minio_binary, PATH, or the cache)",
                f"install Go and run `sagaz-lakehouse up` again (it builds {MINIO_MODULE}@{versions.MINIO.version}), "
                "or put a `minio` binary on PATH, or set local.minio_binary")
        self.progress(f"building MinIO {versions.MINIO.image.rsplit(':', 1)[1]} from the Go module proxy "
                      "(one time; about 5 minutes on 2 cores)")
        with tempfile.TemporaryDirectory(dir=self.cache) as gobin:
            result = subprocess.run([go, "install", f"{MINIO_MODULE}@{versions.MINIO.version}"],
                                    env={**os.environ, "GOBIN": gobin, "GOFLAGS": "-mod=mod"},
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise EnvironmentProblem(f"building MinIO failed:\n{result.stderr[-2000:]}",
                                         "check Go and the module proxy, or set local.minio_binary")
            cached.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(Path(gobin) / "minio"), cached)
        return cached

    # ------------------------------------------------------------------------------------------ config

    def _write_config(self, credentials: Credentials) -> None:
        run_dir = self.layout.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(run_dir, 0o700)  # config files inside hold credentials
        files = target.files(self.settings, credentials, self.layout)
        files.append(render.RenderedFile("settings.yaml", commented_yaml(self.settings)))
        render.write_files(files, run_dir)
        for folder in ("zookeeper", "minio", "flink-tmp", "flink-uploads", "trino", s.REST_CATALOG):
            (self.layout.data_dir / folder).mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------------------------------ processes

    def _specs(self, java: Path, trino_java: Path, minio: Path, homes: dict[str, Path],
               credentials: Credentials) -> list[ProcessSpec]:
        settings, conf, data, run = self.settings, self.layout.config_dir, self.layout.data_dir, self.layout.run_dir
        p, mem = settings.ports, settings.memory
        marker = f"-Dsagaz.run-dir={run}"  # lets the supervisor recognise its own processes
        secrets = (credentials.secret_key,)
        creds_env = {k: wiring.substitute_secrets(v, credentials) for k, v in wiring.aws_environment(settings).items()}

        def heap(quantity: str) -> str:
            return f"-Xmx{max(128, mebibytes(quantity) * 3 // 4)}m"

        def fluss(name: str, main: str) -> ProcessSpec:
            port = p.fluss_coordinator if name == s.COORDINATOR else p.fluss_tablet + int(name.rsplit("-", 1)[1])
            memory = mem.fluss_coordinator if name == s.COORDINATOR else mem.fluss_tablet
            return ProcessSpec(
                name, [str(java), heap(memory), marker, "--add-opens=java.base/java.nio=ALL-UNNAMED",
                       f"-Dlog4j.configurationFile=file:{conf / name / 'log4j-console.properties'}",
                       "-cp", f"{homes['fluss'] / 'lib'}/*", main, "--configDir", str(conf / name)],
                env={"FLUSS_PLUGINS_DIR": str(homes["fluss"] / "plugins")}, cwd=data,
                health=HealthProbe("tcp", LOOPBACK, port), ports=(port,), secret_values=secrets, config=(conf / name,),
                depends_on=(s.ZOOKEEPER, s.REST_CATALOG) if name == s.COORDINATOR else (s.COORDINATOR,))

        tablets = [tablet_name(i) for i in range(settings.replicas.tablet_servers)]
        taskmanagers = [taskmanager_name(i) for i in range(settings.replicas.flink_taskmanagers)]
        python_task = [sys.executable, "-m", "sagaz_lakehouse.tasks"]
        specs = [
            ProcessSpec(s.ZOOKEEPER, [str(java), heap(mem.zookeeper), marker,
                                      f"-Dlogback.configurationFile={conf / 'zookeeper' / 'logback.xml'}",
                                      "-cp", f"{homes['zookeeper'] / 'lib'}/*",
                                      "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                                      str(conf / "zookeeper" / "zoo.cfg")],
                        cwd=data, health=zookeeper_serving(p.zookeeper), ports=(p.zookeeper,),
                        config=(conf / "zookeeper",)),
            ProcessSpec(s.MINIO, [str(minio), "server", str(data / "minio"), "--address", f"{LOOPBACK}:{p.minio}",
                                  "--console-address", f"{LOOPBACK}:{p.minio_console}"],
                        env=read_env_file(conf / "minio" / "minio.env"), cwd=data,
                        health=HealthProbe("http", LOOPBACK, p.minio, "/minio/health/ready"),
                        ports=(p.minio, p.minio_console), secret_values=secrets),
            ProcessSpec(s.CREATE_BUCKET, [*python_task, "create-bucket", str(run)], env=creds_env,
                        depends_on=(s.MINIO,), one_shot=True, timeout=60, secret_values=secrets),
            ProcessSpec(s.REST_CATALOG, [str(java), heap(mem.rest_catalog), marker, "-jar",
                                         str(next((homes["rest-catalog"] / "lib").glob("*.jar")))],
                        env=read_env_file(conf / s.REST_CATALOG / "catalog.env"), cwd=data,
                        health=HealthProbe("http", LOOPBACK, p.rest_catalog, "/v1/config"),
                        ports=(p.rest_catalog,), depends_on=(s.CREATE_BUCKET,), secret_values=secrets),
            fluss(s.COORDINATOR, "org.apache.fluss.server.coordinator.CoordinatorServer"),
            *(fluss(name, "org.apache.fluss.server.tablet.TabletServer") for name in tablets),
            self._flink_spec(java, homes["flink"], s.JOBMANAGER, marker, {}),
            *(self._flink_spec(java, homes["flink"], name, marker, creds_env) for name in taskmanagers),
            ProcessSpec(s.SUBMIT_TIERING, [*python_task, "submit-tiering", str(run),
                                           str(next((homes["flink"] / "opt").glob("fluss-flink-tiering-*.jar")))],
                        depends_on=(s.JOBMANAGER, *taskmanagers, *tablets), one_shot=True, timeout=180),
            self._trino_spec(trino_java, homes["trino"], marker),
        ]
        return specs

    def _flink_spec(self, java: Path, home: Path, name: str, marker: str, env: dict[str, str]) -> ProcessSpec:
        conf = self.layout.config_dir / "flink"
        is_jm = name == s.JOBMANAGER
        jvm, dynamic = self._flink_memory_args(java, home, conf, "JM" if is_jm else "TM")
        main = ("org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint" if is_jm
                else "org.apache.flink.runtime.taskexecutor.TaskManagerRunner")
        p = self.settings.ports
        health = (HealthProbe("http", LOOPBACK, p.flink_rest, "/overview") if is_jm
                  else HealthProbe("http", LOOPBACK, p.flink_rest, "/overview", expect='"taskmanagers":'))
        # The tiering job lives only as long as the JobManager (no HA): a restart resubmits it with new arguments.
        job = (" ".join(wiring.tiering_job_arguments(self.settings)),) if is_jm else ()
        return ProcessSpec(
            name, [str(java), *jvm, marker, *FLINK_JAVA_OPENS,
                   f"-Dlog4j.configurationFile=file:{conf / 'log4j-console.properties'}",
                   f"-Dlog.file={self.supervisor.log_file(name)}", "-cp", f"{home / 'lib'}/*", main,
                   "--configDir", str(conf), *dynamic],
            env=env, cwd=self.layout.data_dir, health=health,
            ports=(p.flink_rest, p.flink_rpc) if is_jm else (), depends_on=() if is_jm else (s.JOBMANAGER,),
            config=(conf, *job))

    @staticmethod
    def _flink_memory_args(java: Path, home: Path, conf: Path, role: str) -> tuple[list[str], list[str]]:
        """Flink's own memory model (what its bin scripts compute with BashJavaUtils)."""
        result = subprocess.run([str(java), "-cp", f"{home / 'bin' / 'bash-java-utils.jar'}:{home / 'lib'}/*",
                                 "org.apache.flink.runtime.util.bash.BashJavaUtils", f"GET_{role}_RESOURCE_PARAMS",
                                 "--configDir", str(conf)], capture_output=True, text=True, timeout=120)
        lines = [line.split(":", 1)[1] for line in result.stdout.splitlines()
                 if line.startswith("BASH_JAVA_UTILS_EXEC_RESULT:")]
        if result.returncode != 0 or len(lines) < 2:
            raise UsageError(f"Flink rejected its memory settings ({role}): {result.stdout[-1500:]}",
                             "check memory.flink_jobmanager / memory.flink_taskmanager (e.g. 1Gi and 2Gi)")
        return lines[0].split(), lines[1].split()

    def _trino_spec(self, java: Path, home: Path, marker: str) -> ProcessSpec:
        conf = self.layout.config_dir / "trino"
        jvm = [line.strip() for line in (conf / "jvm.config").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
        # The launcher passes node.properties as system properties; so do we.
        node = [f"-D{line.strip()}" for line in (conf / "node.properties").read_text().splitlines() if "=" in line]
        port = self.settings.ports.trino
        return ProcessSpec(
            s.TRINO, [str(java), *jvm, marker, *node, f"-Dconfig={conf / 'config.properties'}",
                      f"-Dlog.levels-file={conf / 'log.properties'}", "-cp", f"{home / 'lib'}/*",
                      "io.trino.server.TrinoServer"],
            cwd=home, health=HealthProbe("http", LOOPBACK, port, "/v1/info", expect='"starting":false'),
            ports=(port,), depends_on=(s.REST_CATALOG,), timeout=240, config=(conf,))

    def _status_specs(self) -> list[ProcessSpec]:
        """Names and health probes only (no install needed), for status."""
        out = []
        for name in self.component_names():
            ports = self._ports_of().get(name, ())
            if name == s.MINIO:
                probe = HealthProbe("http", LOOPBACK, ports[0], "/minio/health/ready")
            elif name == s.REST_CATALOG:
                probe = HealthProbe("http", LOOPBACK, ports[0], "/v1/config")
            elif name == s.TRINO:
                probe = HealthProbe("http", LOOPBACK, ports[0], "/v1/info", expect='"starting":false')
            elif name.startswith(s.TASKMANAGER) or name == s.JOBMANAGER:
                probe = HealthProbe("http", LOOPBACK, self.settings.ports.flink_rest, "/overview")
            elif name == s.ZOOKEEPER:
                probe = zookeeper_serving(ports[0])
            else:
                probe = HealthProbe("tcp", LOOPBACK, ports[0])
            out.append(ProcessSpec(name, [], health=probe))
        return out

    @staticmethod
    def _with_deadline(spec: ProcessSpec, deadline: float) -> ProcessSpec:
        from dataclasses import replace

        remaining = max(5.0, deadline - time.monotonic())
        return replace(spec, timeout=min(spec.timeout, remaining))
