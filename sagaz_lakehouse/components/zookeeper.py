"""ZooKeeper: Fluss's coordination store (metadata, server registration, leader election).

One file configures it everywhere: ``zoo.cfg``. The official image writes its own zoo.cfg from ``ZOO_*`` variables
only when ``/conf/zoo.cfg`` is missing (docker-library zookeeper ``docker-entrypoint.sh``), so mounting ours there
gives containers exactly what the native process reads. ``zkEnv.sh`` takes the heap from ``ZK_SERVER_HEAP`` (its
1000 MB default exceeds a small container limit).

The image declares ``VOLUME /data /datalog /logs``. State lives on the data volume (``dataLogDir`` inside it);
``/datalog`` and ``/logs`` stay empty (the server logs to the console), so they are marked ``image_volumes``.
"""

from __future__ import annotations

from sagaz_lakehouse import stack as s
from sagaz_lakehouse import versions
from sagaz_lakehouse.components.common import heap_mb, metrics_port
from sagaz_lakehouse.config import Settings

CONF_DIR = "/conf"  # ZOO_CONF_DIR in the official image
UNUSED_IMAGE_VOLUMES = ("/datalog", "/logs")  # ZOO_DATA_LOG_DIR, ZOO_LOG_DIR
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
# zookeeper-prometheus-metrics (conf/zoo_sample.cfg and zookeeperMonitor.md of apache/zookeeper): serves /metrics.
METRICS_PROVIDER = "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider"

LOGBACK = """\
<!-- ZooKeeper logs to stdout, which the supervisor writes to logs/zookeeper.log. -->
<configuration>
  <appender name="CONSOLE" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d{yyyy-MM-dd HH:mm:ss,SSS} %-5level %logger{36} - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="CONSOLE"/></root>
</configuration>
"""


def zoo_cfg(settings: Settings, view: s.View, at: s.Instance) -> str:
    lines = [
        "# ZooKeeper, standalone, for Fluss's metadata. Rendered by sagaz-lakehouse.",
        f"dataDir={at.data}",
        f"dataLogDir={at.data}/log",  # one volume for snapshots and the transaction log
        f"clientPort={settings.ports.zookeeper}",
        "tickTime=2000",
        "initLimit=10",
        "syncLimit=5",
        "admin.enableServer=false",
        "4lw.commands.whitelist=ruok,srvr",  # srvr is the readiness check
        f"metricsProvider.className={METRICS_PROVIDER}",
        f"metricsProvider.httpPort={settings.ports.zookeeper_metrics}",
        "metricsProvider.exportJvmInfo=true",
    ]
    if view is s.View.EXTERNAL:
        lines.insert(4, "clientPortAddress=127.0.0.1")  # a process on the user's host listens on loopback only
        lines.append("metricsProvider.httpHost=127.0.0.1")  # (its default is every interface)
    return "\n".join(lines) + "\n"


def zookeeper(settings: Settings, view: s.View) -> s.Component:
    heap = heap_mb(settings.memory.zookeeper)

    def setup(at: s.Instance) -> s.Setup:
        def command(ctx: s.NativeContext) -> s.Process:
            return s.Process([str(ctx.java), f"-Xmx{heap}m", ctx.marker,
                            f"-Dlogback.configurationFile={at.conf}/logback.xml", "-cp", f"{ctx.home}/lib/*",
                            MAIN_CLASS, f"{at.conf}/zoo.cfg"])

        return s.Setup(
            container=s.Container(env={"ZK_SERVER_HEAP": str(heap)}, user=1000, probe_tool="bash",
                                  image_volumes=UNUSED_IMAGE_VOLUMES,
                                  scratch=(s.Scratch(s.TMP, "16Mi", used="1Mi"),)),  # the JVM's perf data
            native=s.Native("zookeeper", command, java=17, tree={"lib": ("zookeeper",)}),
            files=(s.ConfigFile("zoo.cfg", zoo_cfg(settings, view, at), mount=f"{CONF_DIR}/zoo.cfg"),
                   s.ConfigFile("logback.xml", LOGBACK)),
        )

    return s.Component(
        s.ZOOKEEPER, "zookeeper", settings.images.zookeeper, versions.ZOOKEEPER.version,
        "coordination store for Fluss", setup,
        ports=(s.Port("client", settings.ports.zookeeper, settings.ports.zookeeper, published=False,
                      setting="zookeeper"),
               metrics_port(settings.ports.zookeeper_metrics, settings.ports.zookeeper_metrics, "zookeeper_metrics")),
        health=s.Health("zookeeper", "client"), metrics=s.Metrics("metrics"),
        data_dir="/data", volume_size=settings.volumes.zookeeper, memory=settings.memory.zookeeper, conf_dir=CONF_DIR,
        start_seconds=60)  # a standalone server is up in seconds
