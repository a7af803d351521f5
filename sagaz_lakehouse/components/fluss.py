"""Apache Fluss: the coordinator (metadata, lake tables) and the tablet servers (log and KV storage).

Both read one ``server.yaml``. The image builds it from ``FLUSS_PROPERTIES``: appended to ``conf/server.yaml``
after deleting its ``bind.listeners`` lines, then run through ``envsubst`` (apache/fluss ``docker/fluss/
docker-entrypoint.sh`` at v0.9.1-incubating), so ``${S3_SECRET_KEY}`` is filled in inside the container. A native
server gets the same properties as a file, with the credentials written into it (mode 0600).

Listeners: a process on the user's host binds one listener on loopback. Inside a container network each server
binds two: ``INTERNAL`` for servers and in-network clients, and ``CLIENT``, advertised to the host at the port
compose publishes or Kubernetes port-forwards (Fluss answers metadata requests with the addresses of the listener
a request came in on: apache/fluss ``deploying-with-docker.md``). ``CLIENT`` binds every interface: a Kubernetes
port-forward connects to the port on the pod's loopback (the kubelet dials localhost inside the pod's network
namespace), which a listener on the pod IP alone refuses; what clients are told is the advertised address anyway.
"""

from __future__ import annotations

from typing import Any

from sagaz_lakehouse import addresses, identities, security, versions
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components.common import (
    CONTAINER_HEAP,
    catalog_ready,
    fluss_login,
    iceberg_catalog_properties,
    metrics_bind,
    metrics_port,
    xmx,
    yaml_lines,
)
from sagaz_lakehouse.config import Settings
from sagaz_lakehouse.errors import Problem
from sagaz_lakehouse.render import masked_log4j

HOME = "/opt/fluss"
CONF_DIR = f"{HOME}/conf"
PLUGIN_DIR = f"{HOME}/plugins/iceberg"
ENTRYPOINT = ("/docker-entrypoint.sh",)
MAIN_CLASS = {s.COORDINATOR: "org.apache.fluss.server.coordinator.CoordinatorServer",
              s.TABLET: "org.apache.fluss.server.tablet.TabletServer"}
ROLE_ARG = {s.COORDINATOR: "coordinatorServer", s.TABLET: "tabletServer"}  # the image entrypoint's arguments
# The Iceberg catalog needs iceberg-aws and its SDK bundle besides fluss-lake-iceberg (which the image ships).
PLUGIN_JARS = (s.Jars("fluss-iceberg-extras", PLUGIN_DIR),)
# The native servers' software, folder by folder: the server, its S3 file system, metrics reporter and lake plugin.
NATIVE_TREE = {"lib": ("fluss-lib",), "plugins/s3": ("fluss-plugin-s3",),
               "plugins/prometheus": ("fluss-plugin-prometheus",),
               "plugins/iceberg": ("fluss-plugin-iceberg", "fluss-iceberg-extras")}
# MinIO ignores the role of an AssumeRole signed by a user: the credentials carry that user's own grant.
ASSUMED_ROLE_ARN = "arn:aws:iam::000000000000:role/sagaz-lakehouse"


def common_properties(settings: Settings, view: s.View) -> dict[str, str]:
    ep = addresses.endpoints(settings, view)
    fluss_s3 = identities.s3_identity(settings, "fluss")
    props = {
        "zookeeper.address": ep.zookeeper,
        "remote.data.dir": addresses.remote_data_uri(settings),
        # fluss-fs-s3 (Hadoop S3A underneath); region is mandatory even for MinIO (apache/fluss#211).
        "s3.endpoint": ep.s3,
        "s3.access-key": fluss_s3.access_key,
        "s3.secret-key": fluss_s3.secret_key,
        "s3.region": settings.s3_region,
        "s3.path-style-access": str(settings.s3_path_style).lower(),
        # s3.region reaches only the token provider (fs.s3a.region); Hadoop 3.3.4's S3A signs for
        # fs.s3a.endpoint.region, else for the region its SDK reads from the endpoint's host name (us-east-1 for a
        # host outside AWS), which a store of the user's with a region of its own refuses.
        **({"s3.endpoint.region": settings.s3_region} if settings.external_store else {}),
        **token_properties(settings, ep.s3),
        "datalake.format": "iceberg",
        # Primary-key tables tier from KV snapshots: the snapshot interval bounds tiering latency.
        "kv.snapshot.interval": settings.kv_snapshot_interval,
        # The servers' own connections to each other (replica fetchers, the coordinator's requests).
        "client.connect-timeout": addresses.FLUSS_CONNECT_TIMEOUT,
    }
    # With the external catalog's OAuth2 credential where it wants one: the coordinator creates the lake tables.
    lake_catalog = iceberg_catalog_properties(settings, view, "fluss", login=True)
    props.update({f"datalake.iceberg.{k}": v for k, v in lake_catalog.items()})
    props.update(durability_properties(settings))
    return props


def token_properties(settings: Settings, s3_endpoint: str) -> dict[str, str]:
    """How the servers get the temporary credentials they hand clients (the tiering job reading KV snapshots and
    remote log segments): fluss-fs-s3's S3DelegationTokenProvider (v0.9.1-incubating). Without a role ARN it calls
    STS GetSessionToken with the static keys, which MinIO lacks (apache/fluss#211) and AWS grants an IAM user; with
    one it calls AssumeRole, at ``s3.assumed.role.sts.endpoint`` or else the regional AWS STS endpoint of
    ``s3.region``. MinIO implements AssumeRole signed by a user and ignores the ARN. README, "What Fluss needs from
    the object store"."""
    arn = settings.object_store.sts_role_arn if settings.external_store else ""
    if addresses.on_aws(settings):
        return {"s3.assumed.role.arn": arn} if arn else {}
    return {"s3.assumed.role.arn": arn or ASSUMED_ROLE_ARN, "s3.assumed.role.sts.endpoint": s3_endpoint}


def durability_properties(settings: Settings) -> dict[str, str]:
    """Replication and high-watermark persistence (``ConfigOptions.java`` at v0.9.1-incubating). The coordinator
    needs the replication factor (it assigns replicas when a table is created), the tablet servers the rest; every
    server gets all three so they cannot disagree. Why: docs/fluss-hw-truncation.md."""
    return {
        "default.replication.factor": str(settings.replication_factor),
        "log.replica.min-in-sync-replicas-number": str(settings.min_in_sync_replicas),
        "log.replica.high-watermark.checkpoint-interval": settings.hw_checkpoint_interval,
        # A follower's fetch waits this long when the leader has nothing new, and a leader's append does not end the
        # wait (ReplicaManager and Replica at v0.9.1-incubating: only a follower's fetch advances the high
        # watermark): an acks=all write is acknowledged, and readable, only after the next fetch.
        "log.replica.fetch.wait-max-time": settings.durability.replica_fetch_wait,
    }


def listeners(settings: Settings, view: s.View, at: s.Instance) -> dict[str, str]:
    """Every port here differs from the others (``listener_problems``): Fluss refuses a server whose listeners,
    bound or advertised, share one."""
    client = at.host_ports["client"]
    if view is s.View.EXTERNAL:
        return {"bind.listeners": f"FLUSS://{addresses.LOOPBACK}:{client}"}
    internal = settings.ports.fluss_internal
    return {
        "bind.listeners": f"INTERNAL://{at.host}:{internal}, "
                          f"CLIENT://{addresses.ANY_ADDRESS}:{addresses.FLUSS_CLIENT_PORT}",
        # INTERNAL is advertised by a stable name where the bind address is not one (a Kubernetes pod IP): clients
        # such as the tiering job keep a server's advertised address and reconnect to it after a restart.
        "advertised.listeners": f"CLIENT://{addresses.LOOPBACK}:{client}"
                                + (f", INTERNAL://{at.address}:{internal}" if at.address else ""),
        "internal.listener.name": "INTERNAL",
    }


# What else listens inside a Fluss container, by port name, for the problem that names a clash.
CONTAINER_LISTENERS = {"client": "the CLIENT listener inside the container", "metrics": "the metrics reporter"}


def listener_problems(stack: s.Stack) -> list[Problem]:
    """In a container each Fluss server binds INTERNAL and CLIENT and advertises INTERNAL beside the client port of
    the host: all of them must differ, or the coordinator refuses the server (and a table needing its replicas
    cannot be created). A server without an INTERNAL listener (a native process) has nothing to collide."""
    servers = [c for c in stack.components if c.name in MAIN_CLASS and any(p.name == "internal" for p in c.ports)]
    if not servers:
        return []
    internal = servers[0].port("internal").container
    inside = {p.container: CONTAINER_LISTENERS[p.name] for c in servers for p in c.ports
              if p.name in CONTAINER_LISTENERS}
    names = {c.name for c in servers}
    advertised = [(entry.instance, entry.formula, entry.number) for entry in stack.host_ports()
                  if entry.component.name in names and entry.port.advertised]
    clashes = [f"{what}, {internal}" for port, what in inside.items() if port == internal]
    clashes += [f"the client port {name} advertises ({owner})" for name, owner, port in advertised if port == internal]
    if not clashes:
        return []
    used = sorted({port for *_, port in advertised} | set(inside))
    return [Problem("ports.fluss_internal", f"port {internal} is also {'; '.join(clashes)}: Fluss refuses a server "
                    "whose listeners share a port",
                    f"give ports.fluss_internal a port none of them uses (taken: {port_ranges(used)})")]


def port_ranges(ports: list[int]) -> str:
    """9123, 9124, 9125, 9249 → "9123-9125, 9249"."""
    runs: list[list[int]] = []
    for port in ports:
        if runs and port == runs[-1][1] + 1:
            runs[-1][1] = port
        else:
            runs.append([port, port])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in runs)


def sasl_properties(view: s.View) -> dict[str, str]:
    """Every listener takes SASL/PLAIN only: the native server's one (FLUSS), and in a container both CLIENT and
    INTERNAL. INTERNAL is authenticated too rather than left to a network policy: the tiering job and in-cluster
    clients bootstrap through it, and a network policy is only as good as the cluster's network plugin. The servers'
    own connections to each other log in with the FlussClient context of the same JAAS file (ConfigOptions
    SERVER_SECURITY_PROTOCOL_MAP, format `listener:protocol,...`, SERVER_SASL_ENABLED_MECHANISMS_CONFIG and
    CLIENT_SECURITY_PROTOCOL, v0.9.1-incubating). The mechanisms option has no default in code although the docs say
    PLAIN: without it the server refuses to start."""
    listeners = ("FLUSS",) if view is s.View.EXTERNAL else ("CLIENT", "INTERNAL")
    return {"security.protocol.map": ",".join(f"{name}:SASL" for name in listeners),
            "security.sasl.enabled.mechanisms": "PLAIN", **security.fluss_client_options()}


COORDINATOR_S3_BLOCK = "8M"  # S3A's block (and multipart part) size in the coordinator; its minimum is 5M


def server_properties(settings: Settings, view: s.View, name: str, at: s.Instance) -> dict[str, str]:
    props = common_properties(settings, view)
    if name == s.TABLET:
        props["tablet-server.id"] = at.index
        props["data.dir"] = f"{at.data}/data"
        # S3A buffers each upload (remote log segments, KV snapshots) in blocks on disk, by default under /tmp
        # (fs.s3a.buffer.dir; Fluss passes s3.* on as fs.s3a.*, S3FileSystemPlugin): on the tablet's own volume
        # instead of its small scratch folder.
        props["s3.buffer.dir"] = f"{at.data}/s3a-buffer"
        if at.rack:
            # Rack-aware replica assignment (ConfigOptions TABLET_SERVER_RACK, v0.9.1-incubating): the coordinator
            # puts a bucket's replicas on distinct racks where it can. Every tablet server has one or none
            # (TableAssignmentUtils refuses a mix), which one template for all of them guarantees.
            props["tablet-server.rack"] = at.rack
    else:
        # The coordinator has no volume: S3A's blocks go to its /tmp scratch (64 MiB), and S3A asks the folder for a
        # whole block's free space before each upload (LocalDirAllocator), 64 MiB by default (fs.s3a.multipart.size),
        # which a 64 MiB tmpfs never has: every lake-offsets and KV-snapshot metadata write failed ("Could not find any
        # valid local directory for s3ablock"), so tiering never committed on the compose prod stack. Its files are
        # small; 8 MiB blocks fit.
        props["s3.multipart.size"] = COORDINATOR_S3_BLOCK
    props.update(listeners(settings, view, at))
    if security.fluss_sasl_on(settings):
        props.update(sasl_properties(view))
    # The Prometheus reporter (plugins/prometheus; ConfigOptions METRICS_REPORTERS, METRICS_REPORTER_PROMETHEUS_PORT).
    # Its HTTP server listens on every interface: the reporter has no host option.
    props["metrics.reporters"] = "prometheus"
    props["metrics.reporter.prometheus.port"] = metrics_bind(view, at, addresses.FLUSS_METRICS_PORT)
    return props


def _metrics_port(settings: Settings, name: str) -> s.Port:
    tablet = name == s.TABLET
    p = settings.ports
    return metrics_port(addresses.FLUSS_METRICS_PORT, p.fluss_tablet_metrics if tablet else p.fluss_coordinator_metrics,
                        "fluss_tablet_metrics" if tablet else "fluss_coordinator_metrics",
                        replicated=tablet)


def _server(settings: Settings, view: s.View, name: str) -> s.Component:
    tablet = name == s.TABLET
    memory = settings.memory.fluss_tablet if tablet else settings.memory.fluss_coordinator
    host_port = settings.ports.fluss_tablet if tablet else settings.ports.fluss_coordinator

    # What the image writes (docker diff of a compose run): the entrypoint's server.yaml in conf/, with the S3 keys
    # expanded into it, and the JVM's scratch: RocksDB's native library (10 MiB, tablets) and S3A's folder.
    scratch = (s.Scratch(s.TMP, "64Mi", used="11Mi" if tablet else "1Mi"),
               s.Scratch(CONF_DIR, "4Mi", used="1Mi", memory=True))

    def setup(at: s.Instance) -> s.Setup:
        properties = yaml_lines(server_properties(settings, view, name, at))
        login_flags, login_files = fluss_login(settings, view, at, server=True)

        def command(ctx: s.NativeContext) -> s.Process:
            return s.Process([str(ctx.java), xmx(memory), ctx.marker, "--add-opens=java.base/java.nio=ALL-UNNAMED",
                            *login_flags,
                            f"-Dlog4j.configurationFile=file:{at.conf}/log4j-console.properties",
                            "-cp", f"{ctx.home}/lib/*", MAIN_CLASS[name], "--configDir", at.conf],
                           env={"FLUSS_PLUGINS_DIR": str(ctx.home / "plugins")})

        return s.Setup(
            container=s.Container(entrypoint=ENTRYPOINT, args=(ROLE_ARG[name],), user=9999, probe_tool="bash",
                                  scratch=scratch, env={
                "FLUSS_PROPERTIES": properties,
                # envsubst fills ${S3_...} in server.yaml from these
                **identities.credential_environment(settings, "fluss"),
                **identities.catalog_credential_environment(settings),
                # bin/config.sh takes the JVM options from here (env.java.opts.all otherwise): the heap, and the
                # path of the JAAS file in the secrets folder (never its content)
                "FLUSS_ENV_JAVA_OPTS": " ".join([CONTAINER_HEAP, *login_flags])}),
            native=s.Native("fluss", command, java=17, tree=NATIVE_TREE),
            files=(s.ConfigFile("server.yaml", properties),
                   s.ConfigFile("log4j-console.properties", masked_log4j(),
                              mount=f"{CONF_DIR}/log4j-console.properties"),
                   *login_files),
        )

    ports = (s.Port("client", addresses.FLUSS_CLIENT_PORT, host_port, per_instance=tablet, clients=True,
                    setting="fluss_tablet" if tablet else "fluss_coordinator", advertised=True),
             # Only a server inside a container network binds INTERNAL (listeners()).
             *((s.Port("internal", settings.ports.fluss_internal, 0, published=False),) if view is s.View.INTERNAL
               else ()),
             _metrics_port(settings, name))
    depends = ((s.COORDINATOR, s.Condition.HEALTHY),) if tablet else \
        ((s.ZOOKEEPER, s.Condition.HEALTHY), *catalog_ready(settings))
    # Both register in ZooKeeper, keep data in the object store and reach the lake's catalog (an external one: the
    # Kubernetes target opens its URI's port); the coordinator sends its requests to the tablet servers, which fetch
    # replicas from each other and report to the coordinator.
    reaches = ((s.ZOOKEEPER, "client"), (s.MINIO, "s3"), (s.REST_CATALOG, "http"), (s.TABLET, "internal"),
               *(((s.COORDINATOR, "internal"),) if tablet else ()))
    return s.Component(
        name, "fluss", settings.images.fluss, versions.FLUSS.version,
        "Fluss tablet server (log and KV storage)" if tablet else "Fluss coordinator (metadata, lake tables)", setup,
        ports=ports, health=s.Health("tcp", "client"), depends_on=depends, metrics=s.Metrics("metrics"),
        # The coordinator keeps no local state: metadata is in ZooKeeper, data in the object store.
        data_dir="/var/lib/fluss" if tablet else "", volume_size=settings.volumes.fluss if tablet else "",
        memory=memory, replicas=settings.replicas.tablet_servers if tablet else 1, jars=PLUGIN_JARS,
        conf_dir=CONF_DIR, reaches=reaches, **(_tablet_topology(settings) if tablet else {}))


def _tablet_topology(settings: Settings) -> dict[str, Any]:
    """A drain may take down as many tablet servers as leaves every bucket its minimum in-sync replicas (writes with
    acks=all keep being acknowledged), and at least one (a budget of 0 blocks every drain). Replicas of a bucket on one
    node would make that node's crash the "every in-sync replica crashes at once" case: no two tablet servers share a
    node."""
    return {"max_unavailable": max(1, settings.replication_factor - settings.min_in_sync_replicas),
            "spread": s.spread_for(settings, s.SPREAD_APART)}


def coordinator(settings: Settings, view: s.View) -> s.Component:
    return _server(settings, view, s.COORDINATOR)


def tablet(settings: Settings, view: s.View) -> s.Component:
    return _server(settings, view, s.TABLET)
