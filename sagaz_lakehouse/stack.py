"""The stack model: which components exist, how they are reached, what they depend on.

One model serves every target. Each component has an *internal* address (its name inside the container network
or cluster) and an *external* one (reachable from the user's host). ``View`` picks one of them, so the same wiring
code renders configs for processes inside the stack and for clients outside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from sagaz_lakehouse import versions
from sagaz_lakehouse.config import Settings


class View(Enum):
    INTERNAL = "internal"  # from inside the stack (container network, cluster DNS)
    EXTERNAL = "external"  # from the user's host


class Condition(Enum):
    HEALTHY = "service_healthy"
    COMPLETED = "service_completed_successfully"


@dataclass(frozen=True)
class Port:
    name: str
    number: int
    published: bool  # reachable from the host (compose publishes it; local binds it on loopback)


@dataclass(frozen=True)
class Health:
    """How to tell a component is ready: an HTTP GET, a TCP connect, or a command inside the container."""

    kind: str  # "http" | "tcp" | "command"
    port: int
    path: str = ""
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class Component:
    name: str
    image: str
    version: str
    role: str  # one line for status output and docs
    ports: tuple[Port, ...] = ()
    health: Health | None = None  # None: one-shot jobs, judged by their exit code
    depends_on: tuple[tuple[str, Condition], ...] = ()
    data_path: str = ""  # where its persistent state lives inside the container ("" = stateless)
    volume_size: str = ""
    memory: str = ""
    replicas: int = 1
    one_shot: bool = False

    @property
    def stateful(self) -> bool:
        return bool(self.data_path)


@dataclass(frozen=True)
class Stack:
    settings: Settings
    components: tuple[Component, ...] = field(default=())

    def get(self, name: str) -> Component:
        for component in self.components:
            if component.name == name:
                return component
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.components]

    @property
    def services(self) -> list[Component]:
        return [c for c in self.components if not c.one_shot]

    @property
    def jobs(self) -> list[Component]:
        return [c for c in self.components if c.one_shot]


# Hostnames inside the container network / cluster (Kubernetes Service names are the same).
ZOOKEEPER = "zookeeper"
COORDINATOR = "fluss-coordinator"
TABLET = "fluss-tablet"
MINIO = "minio"
CREATE_BUCKET = "create-bucket"
REST_CATALOG = "rest-catalog"
JOBMANAGER = "flink-jobmanager"
TASKMANAGER = "flink-taskmanager"
SUBMIT_TIERING = "submit-tiering"
TRINO = "trino"
TRINO_WORKER = "trino-worker"

# Ports inside containers: fixed, so in-network wiring never depends on the host's port choices.
INTERNAL_FLUSS_PORT = 9123  # CLIENT listener inside the network
INTERNAL_FLUSS_PEER_PORT = 9125  # INTERNAL listener (server-to-server)


def build_stack(settings: Settings) -> Stack:
    """Every component, in dependency order."""
    p, images, mem, vol, rep = settings.ports, settings.images, settings.memory, settings.volumes, settings.replicas
    healthy, done = Condition.HEALTHY, Condition.COMPLETED
    components = (
        Component(ZOOKEEPER, images.zookeeper, versions.ZOOKEEPER.version, "coordination store for Fluss",
                  ports=(Port("client", p.zookeeper, False),),
                  health=Health("command", p.zookeeper, command=("zkServer.sh", "status")),
                  data_path="/data", volume_size=vol.zookeeper, memory=mem.zookeeper),
        Component(MINIO, images.minio, versions.MINIO.version, "S3-compatible object store",
                  ports=(Port("s3", p.minio, True), Port("console", p.minio_console, True)),
                  health=Health("http", p.minio, "/minio/health/ready"),
                  data_path="/data", volume_size=vol.minio, memory=mem.minio),
        Component(CREATE_BUCKET, images.minio_client, versions.MINIO_CLIENT.version,
                  "creates the lake bucket once", depends_on=((MINIO, healthy),), one_shot=True),
        Component(REST_CATALOG, images.rest_catalog, versions.ICEBERG.version, "Iceberg REST catalog",
                  ports=(Port("http", p.rest_catalog, True),),
                  health=Health("http", p.rest_catalog, "/v1/config"),
                  depends_on=((CREATE_BUCKET, done),),
                  data_path="/var/lib/iceberg-catalog", volume_size=vol.rest_catalog, memory=mem.rest_catalog),
        Component(COORDINATOR, images.fluss, versions.FLUSS.version, "Fluss coordinator (metadata, lake tables)",
                  ports=(Port("client", p.fluss_coordinator, True),),
                  health=Health("tcp", p.fluss_coordinator),
                  depends_on=((ZOOKEEPER, healthy), (REST_CATALOG, healthy)),
                  memory=mem.fluss_coordinator),
        Component(TABLET, images.fluss, versions.FLUSS.version, "Fluss tablet server (log and KV storage)",
                  ports=(Port("client", p.fluss_tablet, True),),
                  health=Health("tcp", p.fluss_tablet),
                  depends_on=((COORDINATOR, healthy),),
                  data_path="/var/lib/fluss", volume_size=vol.fluss, memory=mem.fluss_tablet,
                  replicas=rep.tablet_servers),
        Component(JOBMANAGER, images.flink, versions.FLINK.version, "Flink JobManager (REST API and UI)",
                  ports=(Port("rest", p.flink_rest, True), Port("rpc", p.flink_rpc, False)),
                  health=Health("http", p.flink_rest, "/overview"), memory=mem.flink_jobmanager),
        Component(TASKMANAGER, images.flink, versions.FLINK.version, "Flink TaskManager (runs the tiering job)",
                  depends_on=((JOBMANAGER, healthy),), memory=mem.flink_taskmanager,
                  replicas=rep.flink_taskmanagers),
        Component(SUBMIT_TIERING, images.flink, versions.FLINK.version,
                  "submits the Fluss lake tiering job (once; skipped when it already runs)",
                  depends_on=((JOBMANAGER, healthy), (TABLET, healthy)), one_shot=True),
        Component(TRINO, images.trino, versions.TRINO.version, "Trino coordinator (SQL over Iceberg)",
                  ports=(Port("http", p.trino, True),),
                  health=Health("http", p.trino, "/v1/info"),
                  depends_on=((REST_CATALOG, healthy),), memory=mem.trino),
    )
    if rep.trino_workers:
        components += (Component(TRINO_WORKER, images.trino, versions.TRINO.version, "Trino worker",
                                 depends_on=((TRINO, healthy),), memory=mem.trino, replicas=rep.trino_workers),)
    return Stack(settings, components)
