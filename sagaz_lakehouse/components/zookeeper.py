"""ZooKeeper: Fluss's coordination store (metadata, server registration, leader election).

One file configures it everywhere: ``zoo.cfg``. The official image writes its own zoo.cfg from ``ZOO_*`` variables
only when ``/conf/zoo.cfg`` is missing (docker-library zookeeper ``docker-entrypoint.sh``), so mounting ours there
gives containers exactly what the native process reads. ``zkEnv.sh`` takes the heap from ``ZK_SERVER_HEAP`` (its
1000 MB default exceeds a small container limit).

An ensemble (several servers: ``stack.ensemble_size``, Kubernetes prod) lists every server in zoo.cfg
(``server.<id>=<host>:<peer port>:<election port>``, ids from 1) and each server finds its own id in
``<dataDir>/myid``, which the image's entrypoint writes from ``ZOO_MY_ID`` when it is missing, whatever zoo.cfg is
(same script). The servers' quorum ports listen on every interface (``quorumListenOnAllIPs``): a pod's own stable
name may not resolve to its address before its DNS record exists.

The image declares ``VOLUME /data /datalog /logs``. State lives on the data volume (``dataLogDir`` inside it);
``/datalog`` and ``/logs`` stay empty (the server logs to the console), so they are marked ``image_volumes``.
"""

from __future__ import annotations

from sagaz_lakehouse import stack as s
from sagaz_lakehouse import versions
from sagaz_lakehouse.components.common import heap_mb, metrics_port
from sagaz_lakehouse.config import Settings

CONF_DIR = "/conf"  # ZOO_CONF_DIR in the official image
# The official image's ENTRYPOINT and CMD (docker-library zookeeper Dockerfile): named where a prelude runs first.
ENTRYPOINT = ("/docker-entrypoint.sh",)
COMMAND = ("zkServer.sh", "start-foreground")
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
    servers = s.ensemble_size(settings)
    lines = [
        f"# ZooKeeper, {'an ensemble of ' + str(servers) if servers > 1 else 'standalone'}, for Fluss's metadata. "
        "Rendered by sagaz-lakehouse.",
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
    if servers > 1:
        lines.append("quorumListenOnAllIPs=true")
        lines += [f"server.{i + 1}={member}:{s.ZOOKEEPER_PEER_PORT}:{s.ZOOKEEPER_ELECTION_PORT}"
                  for i, member in enumerate(s.zookeeper_members(settings))]
    if view is s.View.EXTERNAL:
        lines.insert(4, "clientPortAddress=127.0.0.1")  # a process on the user's host listens on loopback only
        lines.append("metricsProvider.httpHost=127.0.0.1")  # (its default is every interface)
    return "\n".join(lines) + "\n"


def zookeeper(settings: Settings, view: s.View) -> s.Component:
    heap = heap_mb(settings.memory.zookeeper)
    servers = s.ensemble_size(settings)

    def setup(at: s.Instance) -> s.Setup:
        def command(ctx: s.NativeContext) -> s.Process:
            return s.Process([str(ctx.java), f"-Xmx{heap}m", ctx.marker,
                            f"-Dlogback.configurationFile={at.conf}/logback.xml", "-cp", f"{ctx.home}/lib/*",
                            MAIN_CLASS, f"{at.conf}/zoo.cfg"])

        # In an ensemble, the server's id (the entrypoint writes it to myid): its instance's number.
        ensemble = {"ZOO_MY_ID": at.number} if servers > 1 else {}
        return s.Setup(
            container=s.Container(entrypoint=ENTRYPOINT if ensemble else (), args=COMMAND if ensemble else (),
                                  env={"ZK_SERVER_HEAP": str(heap), **ensemble}, user=1000, probe_tool="bash",
                                  image_volumes=UNUSED_IMAGE_VOLUMES,
                                  scratch=(s.Scratch(s.TMP, "16Mi", used="1Mi"),)),  # the JVM's perf data
            native=s.Native("zookeeper", command, java=17, tree={"lib": ("zookeeper",)}),
            files=(s.ConfigFile("zoo.cfg", zoo_cfg(settings, view, at), mount=f"{CONF_DIR}/zoo.cfg"),
                   s.ConfigFile("logback.xml", LOGBACK)),
        )

    # The servers of an ensemble reach each other on the peer and election ports.
    quorum = ((s.Port("peer", s.ZOOKEEPER_PEER_PORT, 0, published=False),
               s.Port("election", s.ZOOKEEPER_ELECTION_PORT, 0, published=False)) if servers > 1 else ())
    return s.Component(
        s.ZOOKEEPER, "zookeeper", settings.images.zookeeper, versions.ZOOKEEPER.version,
        "coordination store for Fluss", setup,
        # an ensemble's servers each have their port on the host (port-forwards), as replicas do
        ports=(s.Port("client", settings.ports.zookeeper, settings.ports.zookeeper, published=False,
                      per_instance=servers > 1, setting="zookeeper"),
               metrics_port(settings.ports.zookeeper_metrics, settings.ports.zookeeper_metrics, "zookeeper_metrics",
                            replicated=servers > 1),
               *quorum),
        health=s.Health("zookeeper", "client"), metrics=s.Metrics("metrics"),
        data_dir="/data", volume_size=settings.volumes.zookeeper, memory=settings.memory.zookeeper, conf_dir=CONF_DIR,
        replicas=servers, reaches=((s.ZOOKEEPER, "peer"), (s.ZOOKEEPER, "election")) if servers > 1 else (),
        # a majority must stay up: 1 of 3, 2 of 5; every server holds the whole state, so none may share a node
        max_unavailable=max(1, (servers - 1) // 2), spread=s.spread_for(settings, s.SPREAD_APART),
        start_seconds=60)  # a standalone server is up in seconds, an ensemble once a majority has elected a leader
