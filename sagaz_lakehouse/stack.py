"""The stack model: every component described once, in terms every target can lay out.

A :class:`Component` says what a piece of the stack is (image, ports, health check, dependencies, volume, memory,
replicas) and how one instance of it is configured and started, both as a container (image entrypoint, arguments,
environment, files mounted into it) and as a native process (the local target). The descriptions themselves live in
``sagaz_lakehouse/components/`` (``build_stack``), one module per piece of software; the targets (each a package under
``targets/``: ``local``, ``compose``, ``kubernetes``) only translate them.

Two ideas carry the model across targets:

- **View.** Addresses depend on where a process runs, never on the target setting: inside a container network or
  cluster (:attr:`View.INTERNAL`, service names and container ports) or on the user's host (:attr:`View.EXTERNAL`,
  loopback and host ports, which is also where the local target's processes live).
- **Instance.** A replicated component (tablet servers, TaskManagers, Trino workers) is configured per instance.
  The local and compose targets give each instance concrete values (its index, its bind host, its host ports, its
  folders); Kubernetes runs one pod template for all of them, so it passes symbolic values (``${INSTANCE_INDEX}``,
  ...) that the pod resolves from its own name and IP (see targets/kubernetes/layout.py).

Instances are named ``<component>`` when a component has one instance and ``<component>-<i>`` (from 0) when it is
replicated, on every target: these are the names ``status`` lists and ``logs`` accepts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

from sagaz_lakehouse.config import Settings
from sagaz_lakehouse.errors import UsageError


class View(Enum):
    INTERNAL = "internal"  # from inside the stack: container network or cluster DNS, container ports
    EXTERNAL = "external"  # from the user's host: loopback and host ports (the local target's processes too)


class Condition(Enum):
    HEALTHY = "service_healthy"
    COMPLETED = "service_completed_successfully"


# Names inside the container network and cluster (Kubernetes Services carry the same names).
ZOOKEEPER = "zookeeper"
MINIO = "minio"
CREATE_BUCKET = "create-bucket"
REST_CATALOG = "rest-catalog"
CATALOG_DB = "catalog-db"
COORDINATOR = "fluss-coordinator"
TABLET = "fluss-tablet"
JOBMANAGER = "flink-jobmanager"
TASKMANAGER = "flink-taskmanager"
FLINK_SQL_GATEWAY = "flink-sql-gateway"
SUBMIT_TIERING = "submit-tiering"
TRINO = "trino"
TRINO_WORKER = "trino-worker"
PROMETHEUS = "prometheus"
LAKE_MAINTENANCE = "lake-maintenance"


@dataclass(frozen=True)
class Port:
    """A port a component listens on: ``container`` inside its container or pod, ``host`` on the user's host
    (the local target binds it, compose publishes it on 127.0.0.1, Kubernetes port-forwards to it).

    Instance *i* of a component whose port is ``per_instance`` is at ``host + i`` on the host: ``host_port`` is the
    one place that rule lives (``host_port_shell`` says the same to a pod that learns its index when it starts)."""

    name: str
    container: int
    host: int
    published: bool = True  # reachable from the host
    per_instance: bool = False  # each instance has its own host port: host + index (clients address each one)
    clients: bool = False  # serves clients outside the stack; other ports only the stack's own components
    setting: str = ""  # the ``ports.<setting>`` that gives ``host`` (problems name it); "": a fixed host port
    # The server tells its clients this port's host address, instance by instance (Fluss's advertised listeners):
    # a client on the host must reach exactly that instance there.
    advertised: bool = False

    def host_port(self, index: int) -> int:
        return self.host + index if self.per_instance else self.host

    def host_port_shell(self, index_variable: str) -> str:
        """``host_port`` as shell arithmetic over the variable holding the instance index."""
        return f"$(({self.host} + {index_variable}))" if self.per_instance else str(self.host)


@dataclass(frozen=True)
class Health:
    """How to tell an instance is ready.

    ``http``: GET ``path`` answers 2xx (and contains ``expect``); ``tcp``: a connect succeeds; ``zookeeper``: the
    ``srvr`` four-letter word reports a ``Mode:``; ``postgres``: PostgreSQL accepts connections (what pg_isready
    asks: a server that is still starting or shutting down does not). With ``via``, the check asks another component
    instead (a TaskManager is ready once the JobManager lists it); ``{instance}`` in ``expect`` is the instance
    name."""

    kind: str
    port: str  # a port name of this component, or of ``via``
    path: str = ""
    expect: str = ""
    via: str = ""


@dataclass(frozen=True)
class Metrics:
    """Where Prometheus scrapes an instance: ``port`` (a port name of the component), ``path``, and HTTP headers the
    endpoint needs (Trino's /metrics asks who is asking, as its REST API does)."""

    port: str
    path: str = "/metrics"
    headers: Mapping[str, str] = field(default_factory=dict)
    # An endpoint that wants HTTPS and a login (Trino in prod): the user, the password (a placeholder), and the
    # certificate to trust (PEM, or a placeholder for it), which Prometheus gets as a file of its own.
    login: tuple[str, str] | None = field(default=None, repr=False)
    ca_pem: str = ""
    tls_name: str = ""  # the name its certificate carries, where Prometheus reaches it by another (a Service name)
    bearer: str = field(default="", repr=False)  # a bearer token the endpoint wants (a placeholder; MinIO's JWT)


@dataclass(frozen=True)
class ConfigFile:
    """A file one instance reads. ``mount`` is where its image expects it ("": only the native process reads it;
    the container gets the same settings another way, e.g. through the environment)."""

    name: str
    content: str
    mount: str = ""
    shared: bool = False  # the same for every component that mounts it: the container targets render it once
    native: bool = True  # the native process reads it from its config folder (False: from elsewhere)
    # Holds secret values (a password, a key, a JAAS login): written 0600 natively; a container finds it in the
    # instance's secrets folder (``mount`` is there: Instance.secret), delivered from the target's secret store
    # (compose: the instance's secrets volume; Kubernetes: the Secret), never in a ConfigMap or a bind mount.
    secret: bool = False


@dataclass(frozen=True)
class Jars:
    """Locked jars (an artifact group) a container needs in ``directory``, besides what its image ships.
    ``directory`` "" means the task reads them from the artifacts folder itself."""

    group: str
    directory: str = ""


TMP = "/tmp"  # noqa: S108 - a container's own scratch folder (a tmpfs or an emptyDir), never the host's


@dataclass(frozen=True)
class Scratch:
    """A folder a container writes besides its volume; its root file system is read-only (compose ``read_only``,
    Kubernetes ``readOnlyRootFilesystem``). Compose mounts a tmpfs of ``size`` there (it counts toward the
    container's memory, so its limit grows by that much), Kubernetes an emptyDir with that size limit (its
    ephemeral-storage). ``used`` is what a run of the whole stack was measured to leave there (docker diff and du
    on the compose project after `up`, `create-tables`, `doctor`); ``size`` leaves room above it. ``memory``: the
    image writes secrets there (Fluss's entrypoint expands server.yaml), so Kubernetes keeps it in memory too."""

    path: str
    size: str
    used: str = "1Mi"
    memory: bool = False


@dataclass(frozen=True)
class Container:
    """How the component's image runs one instance. Values may hold credential placeholders
    (``${S3_ACCESS_KEY}``); each target decides how the container receives the real values."""

    entrypoint: tuple[str, ...] = ()  # empty: the image's own
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    user: int = 1000  # the uid the image's files belong to; every target runs it non-root
    probe_tool: str = "bash"  # what the image has for health checks: curl, wget or bash (/dev/tcp)
    scratch: tuple[Scratch, ...] = ()  # folders the process writes besides its volume (/tmp, HOME, ...)
    # Folders the image declares as VOLUME that hold nothing worth keeping. The engine would give each a fresh
    # anonymous volume per container, left behind by every `down`; compose mounts a tmpfs there instead.
    # (Kubernetes creates no volumes for an image's VOLUME lines.)
    image_volumes: tuple[str, ...] = ()


@dataclass(frozen=True)
class NativeContext:
    """What the local target knows at start time: the installed distribution and the JVM to run it with."""

    java: Path
    home: Path
    marker: str  # a -D flag naming the run folder, so the supervisor recognises its own processes
    log: Path
    # Every component's (java, home): a task that runs another component's tool (Flink's client) finds it here.
    peers: Mapping[str, tuple[Path, Path]] = field(default_factory=dict)


@dataclass(frozen=True)
class Process:
    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Native:
    """How the local target runs one instance as a process: which locked distribution it needs installed, which
    Java, and the command line (built at start time, when paths are known)."""

    distribution: str  # zookeeper | fluss | flink | trino | rest-catalog | minio | prometheus | python | postgresql
    command: Callable[[NativeContext], Process]
    java: int = 0  # minimum Java feature version (0: not a JVM)
    # A server whose start-up is mostly class loading: the local target keeps an ahead-of-time class cache for it
    # (targets/local/class_cache.py) when its JDK has them.
    class_cache: bool = False
    # Software that is only locked files: its folders and the artifact groups in each (the local target installs it
    # as it is). Empty: the local target knows how to install ``distribution`` (an archive to unpack, a Go build).
    tree: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Setup:
    """One instance's configuration: the files it reads, and how it starts as a container and as a process."""

    container: Container
    native: Native
    files: tuple[ConfigFile, ...] = ()


@dataclass(frozen=True)
class Instance:
    """What an instance's configuration may depend on (concrete on local and compose, symbolic on Kubernetes)."""

    name: str  # fluss-tablet-1
    index: str  # 1
    host: str  # the address it binds and is reached at inside the stack
    data: str  # its data folder
    conf: str  # its configuration folder
    host_ports: Mapping[str, str] = field(default_factory=dict)  # per port name, for per-instance ports
    # The name other servers reach it by, when that is not ``host``: on Kubernetes ``host`` is the pod IP, which a
    # restarted pod does not keep, while its DNS name under the headless Service stays (empty: ``host``).
    address: str = ""
    secrets: str = ""  # the folder holding its secret files ("": its configuration folder, as a native process)
    number: str = ""  # index + 1 (ZooKeeper's server id, which counts from 1)
    # The failure domain it runs in (Fluss's tablet-server.rack): "" where the target knows none (one host).
    rack: str = ""

    def secret(self, name: str) -> str:
        """The path of one of its secret files (ConfigFile.secret)."""
        return f"{self.secrets or self.conf}/{name}"


@dataclass(frozen=True)
class Component:
    name: str
    software: str  # app.kubernetes.io/name: several components can run the same software
    image: str
    version: str
    role: str  # one line for status output and docs
    setup: Callable[[Instance], Setup]
    ports: tuple[Port, ...] = ()
    health: Health | None = None  # None: one-shot tasks, judged by their exit code
    depends_on: tuple[tuple[str, Condition], ...] = ()
    data_dir: str = ""  # where it keeps its state inside the container (the local target: a folder per instance)
    volume_size: str = ""  # a persistent volume for data_dir ("": the state need not outlive the container)
    memory: str = ""
    replicas: int = 1
    one_shot: bool = False
    jars: tuple[Jars, ...] = ()
    conf_dir: str = ""  # where the image reads its configuration (the local target: a folder per instance)
    state_in: str = ""  # a task whose result lives in another component (the tiering job runs in the JobManager)
    start_seconds: int = 180  # how long it may take to become healthy (a task: to finish)
    metrics: Metrics | None = None  # its Prometheus endpoint (None: nothing to scrape)
    # Whom it connects to inside the stack: (component, port name). The Kubernetes target opens exactly these paths
    # (a port takes connections only from the components that name it, Prometheus on metrics ports, and clients on
    # client ports); a component left out of the settings (Trino workers, the SQL Gateway) is skipped.
    reaches: tuple[tuple[str, str], ...] = ()
    # How many instances a voluntary disruption (a node drain) may take down at once, where there are several: what
    # the component's redundancy tolerates (Kubernetes PodDisruptionBudget maxUnavailable).
    max_unavailable: int = 1
    # How its instances spread over the nodes of a cluster (Kubernetes; one host elsewhere): "" as the scheduler
    # likes; SPREAD_EVEN: never two on a node while a node has none; SPREAD_APART: never two on a node (the ones
    # left over wait for more nodes): instances that hold copies of the same state; SPREAD_PREFERRED: apart where
    # the nodes allow it, together where they do not (kubernetes.spread: preferred).
    spread: str = ""

    @property
    def stateful(self) -> bool:
        return bool(self.volume_size)

    @property
    def replicated(self) -> bool:
        """Instances named <name>-<i>: every component that can be scaled, even at one replica, and a component run
        as an ensemble (several ZooKeeper servers)."""
        return self.name in REPLICATED or self.replicas > 1

    def instance_name(self, index: int) -> str:
        return f"{self.name}-{index}" if self.replicated else self.name

    def instance_names(self) -> list[str]:
        return [self.instance_name(i) for i in range(self.replicas)] if self.replicated else [self.name]

    def host_ports(self, instance: str) -> dict[str, int]:
        """The host port of each of this instance's ports that has one, by port name."""
        index = instance_index(instance)
        return {p.name: p.host_port(index) for p in self.ports if p.host}

    def port(self, name: str) -> Port:
        for port in self.ports:
            if port.name == name:
                return port
        raise KeyError(f"{self.name} has no port {name!r}")


REPLICATED = (TABLET, TASKMANAGER, TRINO_WORKER)
FLUSS_SERVERS = (COORDINATOR, TABLET)  # the cluster whose membership `up` and `restart` confirm
SPREAD_EVEN = "even"
SPREAD_APART = "apart"
SPREAD_PREFERRED = "preferred"

# ZooKeeper's ensemble: its servers talk to each other on these ports (zoo.cfg server.N=host:peer:election), where
# there are several (Kubernetes: ensemble_size).
ZOOKEEPER_PEER_PORT = 2888  # followers to the leader
ZOOKEEPER_ELECTION_PORT = 3888  # leader election
HEADLESS_SUFFIX = "-headless"


def ensemble_size(settings: Settings) -> int:
    """How many ZooKeeper servers run: replicas.zookeeper, else the profile's ensemble on Kubernetes (one host holds
    every server on the other targets: config checks refuse an ensemble there)."""
    from sagaz_lakehouse.profiles import profile

    if settings.replicas.zookeeper:
        return settings.replicas.zookeeper
    return profile(settings.profile).zookeeper_ensemble if settings.target == "kubernetes" else 1


def spread(settings: Settings) -> str:
    """How the replicated servers spread over nodes and zones: "on", "preferred" or "" (kubernetes.spread, else the
    profile's choice; Kubernetes only)."""
    from sagaz_lakehouse.profiles import profile

    if settings.target != "kubernetes":
        return ""
    if settings.kubernetes.spread:
        return "" if settings.kubernetes.spread == "off" else settings.kubernetes.spread
    return "on" if profile(settings.profile).spread else ""


def spread_for(settings: Settings, strict: str) -> str:
    """A component's Component.spread: ``strict`` (SPREAD_APART or SPREAD_EVEN) where the stack spreads, the soft
    SPREAD_PREFERRED where it spreads only as far as the nodes allow, "" where it does not."""
    chosen = spread(settings)
    return strict if chosen == "on" else SPREAD_PREFERRED if chosen == "preferred" else ""


def member_address(component: str, instance: str) -> str:
    """An instance's DNS name under its component's headless Service (a StatefulSet pod; the cluster's search
    domains complete it): stable across restarts, resolvable before the pod is ready."""
    return f"{instance}.{component}{HEADLESS_SUFFIX}"


def zookeeper_members(settings: Settings) -> list[str]:
    """Every server of a ZooKeeper ensemble by its stable name (zoo.cfg's server lines, Fluss's connection string)."""
    return [member_address(ZOOKEEPER, f"{ZOOKEEPER}-{i}") for i in range(ensemble_size(settings))]


@dataclass(frozen=True)
class HostPort:
    """One port of one instance, on the user's host."""

    component: Component
    instance: str
    port: Port
    number: int

    @property
    def fan_out(self) -> int:
        """What the instance adds to its setting's port (0 unless the port is per instance)."""
        return instance_index(self.instance) if self.port.per_instance else 0

    @property
    def owner(self) -> str:
        """The setting that gives the number, with the instance where it fans out: fluss_tablet (instance 1); a port
        no setting moves: the instance and the port's name."""
        if not self.port.setting:
            return f"{self.instance} ({self.port.name} port)"
        return f"{self.port.setting} (instance {self.fan_out})" if self.fan_out else self.port.setting

    @property
    def formula(self) -> str:
        """How the number comes from the settings: ports.fluss_tablet + 1."""
        return f"ports.{self.port.setting}" + (f" + {self.fan_out}" if self.fan_out else "")


@dataclass(frozen=True)
class Stack:
    settings: Settings
    view: View
    components: tuple[Component, ...]

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
    def tasks(self) -> list[Component]:
        return [c for c in self.components if c.one_shot]

    def instances(self) -> list[tuple[Component, str]]:
        """Every (component, instance name), in dependency order."""
        return [(c, name) for c in self.components for name in c.instance_names()]

    def stop_waves(self) -> list[list[str]]:
        """Component names in the order to stop them: each wave only after every component that depends on it.
        A wave's components depend on nothing still running; the last wave holds what nothing else needs."""
        dependants: dict[str, set[str]] = {c.name: set() for c in self.components}
        for component in self.components:
            for dependency, _ in component.depends_on:
                dependants.setdefault(dependency, set()).add(component.name)
        height: dict[str, int] = {}

        def height_of(name: str, seen: frozenset[str] = frozenset()) -> int:
            if name not in height:
                above = [height_of(d, seen | {name}) for d in dependants.get(name, ()) if d not in seen]
                height[name] = 1 + max(above, default=-1)
            return height[name]

        waves: dict[int, list[str]] = {}
        for component in self.components:
            waves.setdefault(height_of(component.name), []).append(component.name)
        return [waves[level] for level in sorted(waves)]

    def resolve(self, name: str) -> list[tuple[Component, str]]:
        """A component or instance name → its instances; KeyError when there is none."""
        found = [(c, n) for c, n in self.instances() if name in (c.name, n)]
        if not found:
            raise KeyError(name)
        return found

    def named(self, name: str) -> list[tuple[Component, str]]:
        """``resolve`` for a name the user gave (`logs COMPONENT`): an unknown one is a usage error listing the
        valid names."""
        try:
            return self.resolve(name)
        except KeyError:
            raise UsageError(f"unknown component '{name}'", f"use one of: {', '.join(self.valid_names())}") from None

    def restartable(self, name: str) -> list[tuple[Component, str]]:
        """``named`` for `restart`: a one-shot task is refused (`up` runs it again when it has to)."""
        found = self.named(name)
        if found[0][0].one_shot:
            raise UsageError(f"{name} is a one-shot task, not a running component: nothing to restart",
                             "`sagaz-lakehouse up` runs a task again when its configuration changed; restart one of: "
                             + ", ".join(c.name for c in self.services))
        return found

    def host_ports(self) -> list[HostPort]:
        """Every port the stack has on the user's host, instance by instance, in dependency order."""
        return [HostPort(c, name, p, p.host_port(instance_index(name)))
                for c, name in self.instances() for p in c.ports if p.host]

    def host_entries(self) -> list[HostPort]:
        """Where a client on the host reaches each instance that it can reach: its component's first port, the one
        :class:`~sagaz_lakehouse.addresses.Endpoints` names (ports after it are metrics, consoles, RPC), and any
        further port that serves clients (Trino's HTTPS port in prod)."""
        return [HostPort(c, name, p, p.host_port(instance_index(name)))
                for c, name in self.instances() for i, p in enumerate(c.ports)
                if p.host and (i == 0 or p.clients)]

    def valid_names(self) -> list[str]:
        out: list[str] = []
        for component in self.components:
            out += [component.name] if not component.replicated else [component.name, *component.instance_names()]
        return out


def instance_index(name: str) -> int:
    match = re.search(r"-(\d+)$", name)
    return int(match.group(1)) if match else 0


def concrete_instance(component: Component, name: str, *, host: str, data: str, conf: str,
                      address: str = "", secrets: str = "", rack: str = "") -> Instance:
    """An instance with real values: its index from its name, the host port of each of its ports."""
    index = instance_index(name)
    return Instance(name, str(index), host, data, conf,
                    {port: str(number) for port, number in component.host_ports(name).items()}, address, secrets,
                    number=str(index + 1), rack=rack)
