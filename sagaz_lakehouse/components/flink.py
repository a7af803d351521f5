"""Apache Flink: a session cluster (JobManager + TaskManagers) that runs the Fluss lake tiering job, and the SQL
Gateway through which the real-time query pack (``queries/flink``) runs on that cluster.

One property map configures it everywhere: ``config.yaml``, which a native process reads from its folder and a
container from the image's ``conf/`` (mounted read-only over the image's own). Containers start the image's bin
scripts (``jobmanager.sh``/``taskmanager.sh``/``sql-gateway.sh start-foreground``) directly instead of its entrypoint:
that entrypoint rewrites ``conf/config.yaml`` in place (``FLINK_PROPERTIES``, through ``config-parser-utils.sh``,
apache/flink-docker ``1.20/scala_2.12-java17-ubuntu/docker-entrypoint.sh``), which a read-only root file system
refuses, and it strips every space out of each value, so a value holding several JVM options (the JAAS flag beside
the module opens) cannot pass through it. What the entrypoint would add is in the rendered file instead (bind
addresses, the blob port, ``env.java.opts.all``); jemalloc is not preloaded.
The Fluss connector, the Iceberg runtime and S3 support come from the artifact lock (``flink-lib-fluss``) into
``lib/``; the tiering job itself is a separate jar the ``submit-tiering`` task uploads.

Each TaskManager registers under its instance name (``taskmanager.resource-id``), so it is healthy only once the
JobManager lists it, not merely when its process is up.

The SQL Gateway (``org.apache.flink.table.gateway.SqlGateway``, REST endpoint) plans statements and submits them to
the session cluster through the JobManager's REST API (``rest.address``/``rest.port``: Flink's default CLI picks
``execution.target: remote``). Its image recipe is upstream's ``bin/sql-gateway.sh start-foreground``; natively the
same class runs with ``lib/*`` plus the gateway jar from ``opt/``, reading ``FLINK_CONF_DIR``. The gateway also
carries the Fluss bootstrap address as its sessions see it (``FLUSS_BOOTSTRAP_PROPERTY``): a client reads it from
its session and creates the ``fluss`` catalog with it, so no client needs to know in which network Flink runs.
Where Fluss authenticates clients, the gateway's sessions also carry the catalog's ``client.security.*`` options
(``FLUSS_CLIENT_PREFIX``); the credentials stay in the JAAS file of each Flink JVM.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from sagaz_lakehouse import addresses, artifacts, identities, security, versions
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components.common import CONTAINER_HEAP, fluss_login, metrics_bind, metrics_port, xmx, yaml_lines
from sagaz_lakehouse.config import Settings, mebibytes
from sagaz_lakehouse.errors import UsageError
from sagaz_lakehouse.render import masked_log4j

HOME = "/opt/flink"
LIB_DIR = f"{HOME}/lib"
CONF_DIR = f"{HOME}/conf"  # FLINK_CONF_DIR of the image's bin scripts
BIN_DIR = f"{HOME}/bin"
LIB_JARS = (s.Jars("flink-lib-fluss", LIB_DIR),)
MAIN_CLASS = {s.JOBMANAGER: "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint",
              s.TASKMANAGER: "org.apache.flink.runtime.taskexecutor.TaskManagerRunner",
              s.FLINK_SQL_GATEWAY: "org.apache.flink.table.gateway.SqlGateway"}
SQL_GATEWAY_SCRIPT = f"{HOME}/bin/sql-gateway.sh"
GATEWAY_JAR_GROUP = "flink-sql-gateway"  # opt/flink-sql-gateway-<version>.jar, as Flink's binary distribution
# A session property of every gateway session (the gateway's configuration is each session's default): the Fluss
# bootstrap address as seen from the Flink cluster. Flink ignores keys it does not know.
FLUSS_BOOTSTRAP_PROPERTY = "sagaz-lakehouse.fluss.bootstrap.servers"
FLUSS_CLIENT_PREFIX = "sagaz-lakehouse.fluss."  # + a Fluss client option the catalog takes (client.security.*)
# A session nobody has touched for this long is closed, and with it the jobs of its queries: a client that died
# while following a streaming query frees its task slot within this time (clients touch a session on every fetch).
GATEWAY_SESSION_IDLE_TIMEOUT = "2min"
# Flink's default config.yaml passes these to every Flink JVM (env.java.opts.all); the bin scripts the local target
# bypasses would add them. Without them Java 17 refuses Flink's reflective access (e.g. DataStream V2 translators).
JAVA_OPENS = (
    *(f"--add-exports={m}=ALL-UNNAMED" for m in (
        "java.base/sun.net.util", "java.rmi/sun.rmi.registry", "jdk.compiler/com.sun.tools.javac.api",
        "jdk.compiler/com.sun.tools.javac.file", "jdk.compiler/com.sun.tools.javac.parser",
        "jdk.compiler/com.sun.tools.javac.tree", "jdk.compiler/com.sun.tools.javac.util",
        "java.security.jgss/sun.security.krb5")),
    *(f"--add-opens=java.base/{p}=ALL-UNNAMED" for p in (
        "java.lang", "java.net", "java.io", "java.nio", "sun.nio.ch", "java.lang.reflect", "java.text",
        "java.time", "java.util", "java.util.concurrent", "java.util.concurrent.atomic",
        "java.util.concurrent.locks")),
)


# flink-metrics-prometheus, which Flink's distribution and image carry in plugins/metrics-prometheus (Flink docs
# deployment/metric_reporters.md: metrics.reporter.<name>.factory.class, the reporter's `port` option).
PROMETHEUS_REPORTER = "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
# What the tiering job reaches from the JobManager (its enumerator, the committer) and the TaskManagers (its readers
# and writers): the Fluss servers' INTERNAL listener, the lake's catalog and the object store.
TIERING_PATHS = ((s.COORDINATOR, "internal"), (s.TABLET, "internal"), (s.REST_CATALOG, "http"), (s.MINIO, "s3"))


def reporter_port(settings: Settings, name: str) -> s.Port:
    if name == s.JOBMANAGER:
        return metrics_port(addresses.FLINK_METRICS_PORT, settings.ports.flink_jobmanager_metrics,
                            "flink_jobmanager_metrics")
    return metrics_port(addresses.FLINK_METRICS_PORT, settings.ports.flink_taskmanager_metrics,
                        "flink_taskmanager_metrics", replicated=True)


def properties(settings: Settings, view: s.View, at: s.Instance) -> dict[str, str]:
    p = settings.ports
    props = {
        "jobmanager.rpc.address": addresses.LOOPBACK if view is s.View.EXTERNAL else s.JOBMANAGER,
        "jobmanager.rpc.port": str(p.flink_rpc),
        "rest.port": str(p.flink_rest),
        "jobmanager.memory.process.size": f"{mebibytes(settings.memory.flink_jobmanager)}m",
        "taskmanager.memory.process.size": f"{mebibytes(settings.memory.flink_taskmanager)}m",
        "taskmanager.numberOfTaskSlots": str(settings.replicas.flink_task_slots),
        "parallelism.default": "1",
        # Without checkpointing a job gets no restarts by default; the tiering job must survive transient errors.
        "restart-strategy.type": "exponential-delay",
        # The reporter's HTTP server listens on every interface (it has no host option).
        "metrics.reporter.prom.factory.class": PROMETHEUS_REPORTER,
    }
    if view is s.View.EXTERNAL:
        # Its own port on the host, quoted: Flink 1.20 reads config.yaml as YAML, and a bare number would become an
        # integer, which the reporter's string lookup of `port` misses (it falls back to 9249). In a container the
        # reporter keeps that default, FLINK_METRICS_PORT.
        props["metrics.reporter.prom.port"] = f'"{metrics_bind(view, at, addresses.FLINK_METRICS_PORT)}"'
        # A process on the user's host: loopback only, scratch space in its data folder.
        props.update({"jobmanager.bind-host": addresses.LOOPBACK, "rest.address": addresses.LOOPBACK,
                      "rest.bind-address": addresses.LOOPBACK, "taskmanager.bind-host": addresses.LOOPBACK,
                      "taskmanager.host": addresses.LOOPBACK, "io.tmp.dirs": f"{at.data}/tmp",  # noqa: S108
                      "web.upload.dir": f"{at.data}/uploads"})
    else:
        props.update(container_properties())
        # fixed ports, so the TaskManager's RPC service and its data exchange (the shuffle between TaskManagers) are
        # reachable at a known place in the network, where a network policy can open them
        props["taskmanager.rpc.port"] = str(addresses.TASKMANAGER_RPC_PORT)
        props["taskmanager.data.port"] = str(addresses.TASKMANAGER_DATA_PORT)
    if not security.flink_jar_upload_on(settings):
        # Flink docs (config, web.submit.enable): no /jars handlers at all, so no jar upload or run through the
        # REST API; jobs still arrive through POST /jobs (Flink's client, the SQL Gateway).
        props["web.submit.enable"] = "false"
    return props


def container_properties() -> dict[str, str]:
    """What the image's entrypoint and default config.yaml give a container, which ours replaces: every listener on
    every interface (the image's edits of rest.address, rest.bind-address, jobmanager.bind-host and
    taskmanager.bind-host), the REST API where the JobManager's Service is, the blob server on its fixed port."""
    return {"rest.address": s.JOBMANAGER, "rest.bind-address": addresses.ANY_ADDRESS,
            "jobmanager.bind-host": addresses.ANY_ADDRESS, "taskmanager.bind-host": addresses.ANY_ADDRESS,
            "blob.server.port": str(addresses.FLINK_BLOB_PORT)}


def java_options(login_flags: list[str]) -> str:
    """``env.java.opts.all`` of a container's config.yaml: the module opens Flink's default configuration carries,
    and the JAAS flag where Flink logs in to Fluss (a path only)."""
    return " ".join([*JAVA_OPENS, *login_flags])


def config_files(header: str, props: dict[str, str], view: s.View, login_flags: list[str]) -> tuple[s.ConfigFile, ...]:
    """config.yaml and the masked console log layout; a container gets both over the image's conf/."""
    if view is not s.View.EXTERNAL:
        props = {**props, "env.java.opts.all": java_options(login_flags)}
    return (s.ConfigFile("config.yaml", f"# {header}, rendered by sagaz-lakehouse.\n" + yaml_lines(props),
                         mount=f"{CONF_DIR}/config.yaml"),
            s.ConfigFile("log4j-console.properties", masked_log4j(), mount=f"{CONF_DIR}/log4j-console.properties"))


def memory_arguments(java: Path, home: Path, conf: str, role: str) -> tuple[list[str], list[str]]:
    """Flink's own memory model for a native process: what its bin scripts compute with BashJavaUtils."""
    result = subprocess.run([str(java), "-cp", f"{home / 'bin' / 'bash-java-utils.jar'}:{home / 'lib'}/*",
                             "org.apache.flink.runtime.util.bash.BashJavaUtils", f"GET_{role}_RESOURCE_PARAMS",
                             "--configDir", conf], capture_output=True, text=True, timeout=120)
    lines = [line.split(":", 1)[1] for line in result.stdout.splitlines()
             if line.startswith("BASH_JAVA_UTILS_EXEC_RESULT:")]
    if result.returncode != 0 or len(lines) < 2:
        raise UsageError(f"Flink rejected its memory settings ({role}): {result.stdout[-1500:]}",
                         "check memory.flink_jobmanager / memory.flink_taskmanager (e.g. 1Gi and 2Gi)")
    return lines[0].split(), lines[1].split()


def _process(name: str, settings: Settings, view: s.View) -> s.Component:
    jobmanager = name == s.JOBMANAGER
    p = settings.ports

    def setup(at: s.Instance) -> s.Setup:
        props = properties(settings, view, at)
        resource_id = () if jobmanager else (f"-Dtaskmanager.resource-id={at.name}",)
        # The tiering job runs in both: its enumerator on the JobManager, its readers on the TaskManagers.
        login_flags, login_files = fluss_login(settings, view, at)

        def command(ctx: s.NativeContext) -> s.Process:
            jvm, dynamic = memory_arguments(ctx.java, ctx.home, at.conf, "JM" if jobmanager else "TM")
            return s.Process([str(ctx.java), *jvm, ctx.marker, *JAVA_OPENS, *login_flags,
                            f"-Dlog4j.configurationFile=file:{at.conf}/log4j-console.properties",
                            f"-Dlog.file={ctx.log}", "-cp", f"{ctx.home}/lib/*", MAIN_CLASS[name],
                            "--configDir", at.conf, *dynamic, *resource_id],
                           # The bin scripts export FLINK_PLUGINS_DIR; without it Flink looks in ./plugins.
                           env={"FLINK_PLUGINS_DIR": str(ctx.home / "plugins"),
                                **({} if jobmanager else identities.aws_environment(settings, "lake"))})

        script = f"{BIN_DIR}/{'jobmanager' if jobmanager else 'taskmanager'}.sh"
        return s.Setup(
            container=s.Container(
                entrypoint=(script,), args=("start-foreground", *resource_id),
                # The tiering job's Iceberg catalog finds S3 credentials through the AWS SDK's default chain.
                env=identities.aws_environment(settings, "lake"), user=9999, probe_tool="wget",
                # io.tmp.dirs, the blob store (the job's jars), web uploads, RocksDB's native library: 21 MiB on the
                # JobManager, 32 MiB on a TaskManager after a tiering round (docker diff of a compose run)
                scratch=(s.Scratch(s.TMP, "128Mi", used="24Mi" if jobmanager else "36Mi"),)),
            native=s.Native("flink", command, java=17),
            files=(*config_files("Flink", props, view, login_flags), *login_files),
        )

    if jobmanager:
        return s.Component(
            name, "flink", settings.images.flink, versions.FLINK.version, "Flink JobManager (REST API and UI)",
            setup, ports=(s.Port("rest", p.flink_rest, p.flink_rest, setting="flink_rest"),
                          s.Port("rpc", p.flink_rpc, p.flink_rpc, False, setting="flink_rpc"),
                          s.Port("blob", addresses.FLINK_BLOB_PORT, 0, published=False), reporter_port(settings, name)),
            health=s.Health("http", "rest", "/overview"), memory=settings.memory.flink_jobmanager, jars=LIB_JARS,
            metrics=s.Metrics("metrics"), reaches=((s.TASKMANAGER, "rpc"), *TIERING_PATHS))
    return s.Component(
        name, "flink", settings.images.flink, versions.FLINK.version,
        "Flink TaskManager (runs the tiering job)", setup,
        ports=(s.Port("rpc", addresses.TASKMANAGER_RPC_PORT, 0, published=False),
               s.Port("data", addresses.TASKMANAGER_DATA_PORT, 0, published=False), reporter_port(settings, name)),
        metrics=s.Metrics("metrics"),
        # and the JobManager's REST API: its readiness check runs in its pod and asks the JobManager for it
        reaches=((s.JOBMANAGER, "rpc"), (s.JOBMANAGER, "blob"), (s.JOBMANAGER, "rest"), (s.TASKMANAGER, "data"),
                 *TIERING_PATHS),
        health=s.Health("http", "rest", "/taskmanagers", expect='"id":"{instance}"', via=s.JOBMANAGER),
        depends_on=((s.JOBMANAGER, s.Condition.HEALTHY),), memory=settings.memory.flink_taskmanager,
        replicas=settings.replicas.flink_taskmanagers, jars=LIB_JARS,
        # No durable state (a lost TaskManager's tasks restart from the last checkpoint): spread evenly for capacity,
        # doubling up where there are more TaskManagers than nodes.
        spread=s.spread_for(settings, s.SPREAD_EVEN))


def gateway_properties(settings: Settings, view: s.View, at: s.Instance) -> dict[str, str]:
    """The SQL Gateway: where its REST endpoint listens, where the cluster is, and the Fluss address for sessions."""
    p = settings.ports
    external = view is s.View.EXTERNAL
    cluster = addresses.LOOPBACK if external else s.JOBMANAGER
    props = {
        "jobmanager.rpc.address": cluster,
        "jobmanager.rpc.port": str(p.flink_rpc),
        "rest.address": cluster,  # where statements are submitted (the JobManager's REST API)
        "rest.port": str(p.flink_rest),
        "parallelism.default": "1",
        "sql-gateway.endpoint.type": "rest",
        "sql-gateway.endpoint.rest.address": addresses.LOOPBACK if external else s.FLINK_SQL_GATEWAY,
        "sql-gateway.endpoint.rest.bind-address": addresses.LOOPBACK if external else addresses.ANY_ADDRESS,
        "sql-gateway.endpoint.rest.port": str(p.flink_sql_gateway),
        "sql-gateway.session.idle-timeout": GATEWAY_SESSION_IDLE_TIMEOUT,
        "sql-gateway.session.check-interval": "30s",
        # bin/sql-gateway.sh adds env.java.opts.sql-gateway; the image's scripts set no heap of their own.
        "env.java.opts.sql-gateway": CONTAINER_HEAP,
        FLUSS_BOOTSTRAP_PROPERTY: addresses.endpoints(settings, view).fluss_bootstrap,
    }
    if security.fluss_sasl_on(settings):
        props.update({FLUSS_CLIENT_PREFIX + k: v for k, v in security.fluss_client_options().items()})
    if external:
        props["io.tmp.dirs"] = f"{at.data}/tmp"  # noqa: S108 - its data folder
    return props


def gateway_jar() -> str:
    return f"opt/{artifacts.group(GATEWAY_JAR_GROUP)[0].name}"


def sql_gateway(settings: Settings, view: s.View) -> s.Component | None:
    """The gateway, where the settings run it (``analytics.sql_gateway``; off in prod unless asked for: it has no
    authentication and holds the Fluss login)."""
    if not settings.sql_gateway:
        return None
    memory = settings.memory.flink_sql_gateway

    def setup(at: s.Instance) -> s.Setup:
        props = gateway_properties(settings, view, at)
        login_flags, login_files = fluss_login(settings, view, at)  # its sessions' Fluss catalog logs in

        def command(ctx: s.NativeContext) -> s.Process:
            return s.Process([str(ctx.java), xmx(memory), ctx.marker, *JAVA_OPENS, *login_flags,
                            f"-Dlog4j.configurationFile=file:{at.conf}/log4j-console.properties",
                            f"-Dlog.file={ctx.log}", "-cp", f"{ctx.home}/lib/*:{ctx.home}/{gateway_jar()}",
                            MAIN_CLASS[s.FLINK_SQL_GATEWAY]], env={"FLINK_CONF_DIR": at.conf})

        return s.Setup(
            container=s.Container(entrypoint=(SQL_GATEWAY_SCRIPT,), args=("start-foreground",), user=9999,
                                  probe_tool="wget", scratch=(s.Scratch(s.TMP, "128Mi", used="8Mi"),)),
            native=s.Native("flink", command, java=17),
            files=(*config_files("Flink SQL Gateway", props, view, login_flags), *login_files),
        )

    port = settings.ports.flink_sql_gateway
    return s.Component(
        s.FLINK_SQL_GATEWAY, "flink", settings.images.flink, versions.FLINK.version,
        "Flink SQL Gateway (real-time queries over Fluss)", setup,
        ports=(s.Port("rest", port, port, setting="flink_sql_gateway"),),
        health=s.Health("http", "rest", "/v1/info"), depends_on=((s.JOBMANAGER, s.Condition.HEALTHY),), memory=memory,
        jars=LIB_JARS,
        # submits statements and reads their results through the JobManager's REST API; its `fluss` catalog asks
        # the Fluss servers for metadata
        reaches=((s.JOBMANAGER, "rest"), (s.COORDINATOR, "internal"), (s.TABLET, "internal")))


def jobmanager(settings: Settings, view: s.View) -> s.Component:
    return _process(s.JOBMANAGER, settings, view)


def taskmanager(settings: Settings, view: s.View) -> s.Component:
    return _process(s.TASKMANAGER, settings, view)
