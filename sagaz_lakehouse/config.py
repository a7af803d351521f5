"""Settings: one typed, validated description of what the user wants.

The dataclasses below *are* the schema: each field's metadata carries its documentation, allowed values and
bounds. Validation, the commented file written by ``init``, and the ``SAGAZ_LAKEHOUSE_*`` environment mapping are
all derived from them, so they cannot drift apart.

Precedence: command-line flags > environment (``SAGAZ_LAKEHOUSE_<SECTION>__<KEY>``) > file > profile defaults >
defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast, get_type_hints

from sagaz_lakehouse import versions
from sagaz_lakehouse.errors import ConfigError, Problem
from sagaz_lakehouse.profiles import PROFILES, profile

CONFIG_FILENAME = "sagaz-lakehouse.yaml"
ENV_PREFIX = "SAGAZ_LAKEHOUSE_"
DURATION = re.compile(r"^\d+\s*(ms|s|min|h)$")
LONG_DURATION = re.compile(r"^\d+\s*(s|min|h|d)$")  # retention periods: days allowed
DATA_SIZE = re.compile(r"^\d+(kB|MB|GB)$")  # Trino's data size (io.airlift.units.DataSize)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
QUANTITY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti)?$")
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def setting(default: Any, doc: str, *, choices: tuple[str, ...] = (), minimum: int | None = None,
            maximum: int | None = None, pattern: re.Pattern[str] | None = None, expect: str = "") -> Any:
    """A documented field; ``expect`` describes valid values in words for error messages."""
    meta = {"doc": doc, "choices": choices, "minimum": minimum, "maximum": maximum, "pattern": pattern,
            "expect": expect}
    return field(default=default, metadata=meta)


def memory_setting(default: str, doc: str, *, minimum: str) -> Any:
    """A memory quantity with a floor below which the component cannot start."""
    return field(default=default, metadata={"doc": f"{doc} (at least {minimum})", "choices": (), "minimum": None,
                                            "maximum": None, "pattern": QUANTITY,
                                            "expect": f"a quantity like {default}", "min_quantity": minimum})


def section(cls: type, doc: str) -> Any:
    return field(default_factory=cls, metadata={"doc": doc})


@dataclass(frozen=True)
class Images:
    zookeeper: str = setting(versions.ZOOKEEPER.image, "ZooKeeper image (Fluss's coordination store)")
    fluss: str = setting(versions.FLUSS.image, "Apache Fluss image (coordinator and tablet servers)")
    minio: str = setting(versions.MINIO.image, "MinIO image (S3-compatible object store)")
    rest_catalog: str = setting(versions.ICEBERG.image, "Iceberg REST catalog image")
    flink: str = setting(versions.FLINK.image, "Apache Flink image (runs the Fluss tiering service)")
    trino: str = setting(versions.TRINO.image, "Trino image (SQL over the Iceberg tables)")
    prometheus: str = setting(versions.PROMETHEUS.image, "Prometheus image (scrapes every component, evaluates "
                              "the alert rules)")
    python: str = setting(versions.PYTHON.image, "Python image (runs the one-shot tasks: bucket, tiering job)")
    catalog_db: str = setting(versions.POSTGRES.image, "PostgreSQL image (the bundled catalog's database, "
                              "catalog.database: postgresql)")


@dataclass(frozen=True)
class Ports:
    zookeeper: int = setting(2181, "ZooKeeper client port", minimum=1, maximum=65535)
    fluss_coordinator: int = setting(9123, "Fluss coordinator client port (the bootstrap server)",
                                     minimum=1, maximum=65535)
    fluss_tablet: int = setting(9124, "first Fluss tablet server client port; server i uses this + i",
                                minimum=1, maximum=65535)
    # Never published: it only has to differ from every port a Fluss server advertises or binds (Fluss refuses a
    # server whose listeners share a port: apache/fluss Endpoint.fromListenersString, v0.9.1-incubating).
    fluss_internal: int = setting(9122, "Fluss INTERNAL listener port inside containers and pods (compose and "
                                  "kubernetes: server to server, and clients inside the stack); not published, and "
                                  "it must differ from every Fluss client port", minimum=1, maximum=65535)
    minio: int = setting(9000, "MinIO S3 API port", minimum=1, maximum=65535)
    minio_console: int = setting(9001, "MinIO web console port", minimum=1, maximum=65535)
    rest_catalog: int = setting(8181, "Iceberg REST catalog port", minimum=1, maximum=65535)
    flink_rest: int = setting(8081, "Flink REST API and web UI port", minimum=1, maximum=65535)
    flink_rpc: int = setting(6123, "Flink JobManager RPC port", minimum=1, maximum=65535)
    flink_sql_gateway: int = setting(8083, "Flink SQL Gateway REST port (the real-time query pack)",
                                     minimum=1, maximum=65535)
    trino: int = setting(8080, "Trino HTTP port (UI, REST, JDBC)", minimum=1, maximum=65535)
    prometheus: int = setting(9090, "Prometheus HTTP port (UI and API)", minimum=1, maximum=65535)
    # Metrics endpoints that Prometheus scrapes (MinIO and Trino serve theirs on their own ports).
    zookeeper_metrics: int = setting(7000, "ZooKeeper Prometheus metrics port (metricsProvider.httpPort)",
                                     minimum=1, maximum=65535)
    fluss_coordinator_metrics: int = setting(9249, "Fluss coordinator Prometheus reporter port",
                                             minimum=1, maximum=65535)
    fluss_tablet_metrics: int = setting(9250, "first Fluss tablet server Prometheus reporter port; server i uses "
                                        "this + i", minimum=1, maximum=65535)
    flink_jobmanager_metrics: int = setting(9280, "Flink JobManager Prometheus reporter port",
                                            minimum=1, maximum=65535)
    flink_taskmanager_metrics: int = setting(9281, "first Flink TaskManager Prometheus reporter port; TaskManager i "
                                             "uses this + i", minimum=1, maximum=65535)
    lake_maintenance: int = setting(9270, "lake maintenance service: its Prometheus metrics and health endpoint",
                                    minimum=1, maximum=65535)
    trino_https: int = setting(8443, "Trino HTTPS port, where clients log in (prod profile)",
                               minimum=1, maximum=65535)
    catalog_db: int = setting(5432, "PostgreSQL port of the bundled catalog's database (catalog.database: "
                              "postgresql; only the catalog connects to it, never published)",
                              minimum=1, maximum=65535)


@dataclass(frozen=True)
class Replicas:
    tablet_servers: int = setting(2, "number of Fluss tablet servers (2 so that every bucket has a second replica; "
                                  "3 recommended in prod, see durability)", minimum=1, maximum=64)
    flink_taskmanagers: int = setting(1, "number of Flink TaskManagers", minimum=1, maximum=64)
    flink_task_slots: int = setting(2, "task slots per Flink TaskManager", minimum=1, maximum=64)
    trino_workers: int = setting(0, "Trino workers besides the coordinator (0: coordinator also works)",
                                 minimum=0, maximum=64)
    zookeeper: int = setting(0, "ZooKeeper servers, an odd number (0: the profile's, on kubernetes 3 in prod, else "
                             "1); more than 1 only on kubernetes", minimum=0, maximum=7)


@dataclass(frozen=True)
class Memory:
    """JVM process memory per component; the local target also derives heap sizes from these."""

    zookeeper: str = memory_setting("512Mi", "ZooKeeper memory", minimum="128Mi")
    fluss_coordinator: str = memory_setting("1Gi", "Fluss coordinator memory", minimum="256Mi")
    fluss_tablet: str = memory_setting("2Gi", "Fluss tablet server memory", minimum="512Mi")
    minio: str = memory_setting("512Mi", "MinIO memory", minimum="128Mi")
    rest_catalog: str = memory_setting("512Mi", "Iceberg REST catalog memory", minimum="256Mi")
    # Flink's memory model needs room for its fixed framework, network and metaspace shares.
    flink_jobmanager: str = memory_setting("1Gi", "Flink JobManager process memory", minimum="768Mi")
    flink_taskmanager: str = memory_setting("2Gi", "Flink TaskManager process memory", minimum="1Gi")
    flink_sql_gateway: str = memory_setting("1Gi", "Flink SQL Gateway memory (plans the real-time queries)",
                                            minimum="512Mi")
    trino: str = memory_setting("2Gi", "Trino JVM heap", minimum="1Gi")
    prometheus: str = memory_setting("512Mi", "Prometheus memory", minimum="128Mi")
    catalog_db: str = memory_setting("256Mi", "PostgreSQL memory (the bundled catalog's database)", minimum="128Mi")


@dataclass(frozen=True)
class Volumes:
    """Persistent volume sizes (compose ignores sizes; Kubernetes requests them)."""

    zookeeper: str = setting("1Gi", "ZooKeeper data", pattern=QUANTITY, expect="a quantity like 1Gi")
    fluss: str = setting("10Gi", "each Fluss tablet server's local log and KV data", pattern=QUANTITY,
                         expect="a quantity like 10Gi")
    minio: str = setting("20Gi", "object store data (Fluss remote data and the Iceberg warehouse)",
                         pattern=QUANTITY, expect="a quantity like 20Gi")
    rest_catalog: str = setting("1Gi", "Iceberg catalog database (sqlite)", pattern=QUANTITY,
                                expect="a quantity like 1Gi")
    catalog_db: str = setting("2Gi", "Iceberg catalog database (PostgreSQL)", pattern=QUANTITY,
                              expect="a quantity like 2Gi")
    prometheus: str = setting("2Gi", "Prometheus time series", pattern=QUANTITY, expect="a quantity like 2Gi")
    storage_class: str = setting("", "Kubernetes StorageClass for all claims (empty: the cluster default)")


@dataclass(frozen=True)
class Lake:
    bucket: str = setting("sagaz-lakehouse", "object store bucket for Fluss remote data and the Iceberg warehouse",
                          pattern=BUCKET_NAME, expect="an S3 bucket name (3-63 lowercase letters, digits, '.', '-')")
    warehouse: str = setting("warehouse", "name of the Iceberg warehouse (a prefix inside the bucket)",
                             pattern=IDENTIFIER, expect="a lowercase identifier")
    region: str = setting("us-east-1", "S3 region (mandatory even for MinIO); object_store.region, when set, "
                          "takes precedence")
    database: str = setting("sagaz", "Fluss database (and Iceberg namespace) holding saga_events",
                            pattern=IDENTIFIER, expect="a lowercase identifier")
    freshness: str = setting("", "how stale the Iceberg copy may get (table.datalake.freshness); "
                             "empty: 10s in dev, 3min in prod", pattern=re.compile(r"^$|" + DURATION.pattern),
                             expect="a duration like 10s or 3min")
    buckets: int = setting(8, "Fluss buckets of saga_events (bucket.num)", minimum=1, maximum=1024)
    tiering_poll: str = setting("", "how often the tiering service asks Fluss for a table due for tiering "
                                "(tiering.poll.table.interval); empty: 2s in dev, 30s (the upstream default) in prod",
                                pattern=re.compile(r"^$|" + DURATION.pattern), expect="a duration like 2s or 30s")
    snapshot_retention: str = setting("", "how long Iceberg keeps old snapshots, i.e. how far back time travel "
                                      "reaches (maintenance expires older ones); empty: 1h in dev, 7d in prod",
                                      pattern=re.compile(r"^$|" + LONG_DURATION.pattern),
                                      expect="a duration like 1h or 7d")
    kv_snapshot_interval: str = setting("", "how often tablet servers snapshot saga_events' primary-key state, "
                                        "which is what tiering copies (kv.snapshot.interval): keep it below the "
                                        "freshness; empty: 5s in dev, 1min in prod",
                                        pattern=re.compile(r"^$|" + DURATION.pattern), expect="a duration like 5s")


@dataclass(frozen=True)
class ObjectStore:
    """Where the lake bucket lives: the bundled MinIO, or an S3 service the user runs (README, "Bring your own
    object store")."""

    kind: str = setting("bundled", "bundled: the stack runs MinIO and creates the bucket; external: an S3 service "
                        "you run, with the bucket and one identity per role made beforehand (no object store is "
                        "started, `up` probes the bucket first)", choices=("bundled", "external"))
    endpoint: str = setting("", "external: the S3 endpoint every component and client uses, e.g. "
                            "https://minio.example.com:9000 (it must be reachable from every component); empty: AWS "
                            "S3 in object_store.region", pattern=re.compile(r"^$|^https?://[^/\s]+/?$"),
                            expect="empty or http(s)://host[:port]")
    region: str = setting("", "S3 region of the store (signing region; AWS: the bucket's region); empty: "
                          "lake.region", pattern=re.compile(r"^$|^[a-z0-9-]+$"), expect="a region like eu-west-1")
    path_style: str = setting("auto", "address the bucket in the path (http://host/bucket/key) instead of the host "
                              "name (http://bucket.host/key); auto: path-style except on AWS S3 (empty endpoint)",
                              choices=("auto", "true", "false"))
    sts_role_arn: str = setting("", "external: the role Fluss servers assume (STS AssumeRole) for the temporary "
                                "credentials they hand the tiering job; empty: a fixed ARN on an endpoint of your "
                                "own (MinIO ignores it), and on AWS S3 STS GetSessionToken with the fluss keys "
                                "(README, \"What Fluss needs from the object store\")",
                                pattern=re.compile(r"^$|^arn:[a-z-]+:iam::[0-9]*:role/.+$"),
                                expect="an IAM role ARN like arn:aws:iam::123456789012:role/fluss-tokens")


@dataclass(frozen=True)
class Maintenance:
    """What keeps the Iceberg table fast (README, Operations: lake maintenance)."""

    schedule: str = setting("", "how often the lake maintenance service compacts small files, expires snapshots and "
                            "removes orphan files; off: no service (run `sagaz-lakehouse maintain` yourself); "
                            "empty: 10min in dev, 1h in prod", pattern=re.compile(r"^$|^off$|" + LONG_DURATION.pattern),
                            expect="a duration like 10min or 1h, or off")
    orphan_retention: str = setting("", "files no snapshot references are removed once older than this (a tiering "
                                    "round writes its files minutes before it commits them); empty: as "
                                    "lake.snapshot_retention, at least 1h",
                                    pattern=re.compile(r"^$|" + LONG_DURATION.pattern),
                                    expect="a duration like 1h or 7d")
    file_size_threshold: str = setting("128MB", "compaction rewrites data files smaller than this (Trino optimize's "
                                       "file_size_threshold)", pattern=DATA_SIZE, expect="a size like 128MB")
    metadata_versions: int = setting(20, "how many earlier metadata files the table keeps "
                                     "(write.metadata.previous-versions-max; older ones are deleted)",
                                     minimum=1, maximum=1000)
    max_files_per_bucket: int = setting(50, "status and doctor warn, and the alert fires, above this many data files "
                                        "per bucket (small files slow every query)", minimum=2, maximum=100000)


CATALOG_KINDS = ("bundled", "external")
CATALOG_DATABASES = ("sqlite", "postgresql")
HTTP_URI = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")


@dataclass(frozen=True)
class Catalog:
    """The Iceberg REST catalog every client of the lake uses (README, "An existing catalog")."""

    kind: str = setting("bundled", "bundled: the stack runs Iceberg's REST catalog server itself; external: an "
                        "Iceberg REST catalog you already run (catalog.uri), none is started", choices=CATALOG_KINDS)
    database: str = setting("", "bundled: where the catalog keeps its tables: sqlite (a file on its volume) or "
                            "postgresql (the catalog-db component); empty: sqlite in dev, postgresql in prod (prod "
                            "refuses sqlite)", pattern=re.compile(r"^(|sqlite|postgresql)$"),
                            expect="sqlite, postgresql or empty")
    uri: str = setting("", "external: the catalog's REST endpoint (the clients' `uri`, e.g. "
                       "https://polaris.example.com/api/catalog), reached from this host and from every process of "
                       "the stack", pattern=re.compile(r"^$|" + HTTP_URI.pattern), expect="an http(s) URL")
    warehouse: str = setting("", "external: the warehouse the clients ask for (Apache Polaris: the catalog's name); "
                             "empty: none (the catalog's default)")
    oauth2_server_uri: str = setting("", "external: the OAuth2 token endpoint; set, every client logs in with the "
                                     "client credentials (`client_id:client_secret`) of "
                                     "SAGAZ_LAKEHOUSE_CATALOG_CREDENTIAL or catalog_credential in secrets.file; "
                                     "empty: no login", pattern=re.compile(r"^$|" + HTTP_URI.pattern),
                                     expect="an http(s) URL")
    scope: str = setting("", "external: the OAuth2 scope to ask for (e.g. PRINCIPAL_ROLE:ALL for Apache Polaris); "
                         "empty: the clients' default, catalog")


@dataclass(frozen=True)
class Monitoring:
    app_targets: str = setting("", "host:port of applications' Prometheus endpoints, comma-separated (Sagaz's "
                               "PrometheusMetrics and the listener's prometheus_stats_hook; `simulate --metrics-port` "
                               "serves one): Prometheus scrapes them as job sagaz-apps")


DECIMAL = re.compile(r"^\d{1,9}(\.\d{1,9})?$")  # a non-negative decimal number (prices, thresholds)


@dataclass(frozen=True)
class Anomaly:
    """The live anomaly rules Prometheus evaluates (templates/prometheus/alerts.yml, group sagaz-lakehouse-anomalies):
    each saga's failure ratio and p95 duration against a trailing baseline of the same series."""

    window: str = setting("5min", "the rate window of the current failure ratio and p95 duration of each saga",
                          pattern=DURATION, expect="a duration like 30s or 5min")
    baseline: str = setting("6h", "how far back the baseline (trailing mean and standard deviation) reaches; it ends "
                            "window + for before now, so an anomaly does not raise its own baseline",
                            pattern=DURATION, expect="a duration like 90s or 6h")
    sustained: str = setting("10min", "how long the current value must stay outside the band before the alert "
                             "fires (the rules' `for`)", pattern=DURATION, expect="a duration like 15s or 10min")
    threshold: str = setting("3", "the band: the baseline mean plus or minus this many standard deviations",
                             pattern=DECIMAL, expect="a number like 3 or 2.5")


@dataclass(frozen=True)
class Cost:
    """Prices for `query cost_attribution` and the report's cost section (your own; the defaults are indicative list
    prices in USD, not a quote)."""

    storage_gb_month: str = setting("0.023", "price of one GB (10^9 bytes) of lake storage for a month",
                                    pattern=DECIMAL, expect="a number like 0.023")
    million_events: str = setting("0.25", "price of ingesting and keeping one million saga events (the streaming "
                                  "tier: Fluss, tiering)", pattern=DECIMAL, expect="a number like 0.25")
    vcpu_hour: str = setting("0.04", "price of one vCPU-hour of compute; a step's compute is the sum of its "
                             "durations", pattern=DECIMAL, expect="a number like 0.04")


@dataclass(frozen=True)
class Analytics:
    sql_gateway: str = setting("", "run the Flink SQL Gateway (the real-time query pack): on or off; empty: on in dev, "
                               "off in prod. It has no authentication of its own and holds the Fluss login: in prod "
                               "turn it on only where a port-forward (Kubernetes) or the host's own users guard it",
                               choices=("", "on", "off"))


@dataclass(frozen=True)
class Durability:
    """How Fluss keeps acknowledged writes (server options; see docs/fluss-hw-truncation.md for why)."""

    replication_factor: int = setting(0, "replicas of each bucket of new tables (Fluss default.replication.factor); "
                                      "0: as many as tablet servers, at most 3. With 1, an unclean tablet-server "
                                      "stop loses acknowledged writes", minimum=0, maximum=64)
    min_in_sync_replicas: int = setting(0, "replicas that must have a write before acks=all succeeds (Fluss "
                                        "log.replica.min-in-sync-replicas-number); 0: 2 with 3 or more replicas, "
                                        "else 1", minimum=0, maximum=64)
    hw_checkpoint_interval: str = setting("", "how often tablet servers save the high watermark (Fluss "
                                          "log.replica.high-watermark.checkpoint-interval); bounds what an unclean "
                                          "stop can lose while a bucket has a single in-sync replica; empty: 1s "
                                          "(upstream: 5s)", pattern=re.compile(r"^$|" + DURATION.pattern),
                                          expect="a duration like 100ms or 5s")
    replica_fetch_wait: str = setting("50ms", "how long a follower's fetch waits at most for new data (Fluss "
                                      "log.replica.fetch.wait-max-time; upstream 500ms). Fluss 0.9.1 does not wake "
                                      "a waiting follower fetch when the leader appends, so every acks=all write "
                                      "and every read of what it wrote waits for it (bench/results/visibility.md)",
                                      pattern=DURATION, expect="a duration like 50ms or 500ms")


@dataclass(frozen=True)
class Secrets:
    file: str = setting("", "YAML file (mode 0600) with s3_access_key and s3_secret_key; alternatively set "
                        "SAGAZ_LAKEHOUSE_S3_ACCESS_KEY and SAGAZ_LAKEHOUSE_S3_SECRET_KEY. Required in prod; "
                        "dev uses fixed development credentials. An external object store takes each role's "
                        "keys: s3_fluss_access_key, s3_fluss_secret_key, s3_lake_..., s3_reader_... (or "
                        "SAGAZ_LAKEHOUSE_S3_FLUSS_ACCESS_KEY, ...)")
    trino_tls: str = setting("", "PEM file (mode 0600) with the private key and certificate chain Trino serves HTTPS "
                             "with (prod); its certificates are what clients trust, and the first must name "
                             "127.0.0.1 or localhost (the CLI's address) and, on compose and kubernetes, the trino "
                             "Service (trino, trino.<namespace>.svc...). Empty: a self-signed certificate is made "
                             "and kept")


@dataclass(frozen=True)
class Local:
    run_dir: str = setting(".sagaz-lakehouse", "where the local target keeps pids, logs, config and data "
                           "(relative paths are relative to the config file's folder)")
    cache_dir: str = setting("~/.cache/sagaz-lakehouse", "download cache for verified artifacts")
    maven_repository: str = setting("https://repo1.maven.org/maven2", "Maven repository (or mirror) to download "
                                    "the locked jars from")
    java_home: str = setting("", "JDK 17+ for Fluss, Flink, ZooKeeper and the catalog (empty: detect)")
    minio_binary: str = setting("", "path to a MinIO server binary (empty: PATH, then the cache, then build it "
                                "with `go install`)")
    prometheus_binary: str = setting("", "path to a Prometheus server binary (empty: the cache, then PATH, then "
                                     "build it with `go install`)")


@dataclass(frozen=True)
class Compose:
    engine: str = setting("auto", "container engine CLI: auto, docker, podman or nerdctl",
                          choices=("auto", "docker", "podman", "nerdctl"))
    project_dir: str = setting(".sagaz-lakehouse/compose", "where the rendered compose project is written")


@dataclass(frozen=True)
class Kubernetes:
    kubeconfig: str = setting("", "kubeconfig file (empty: the first file in $KUBECONFIG, else ~/.kube/config)")
    context: str = setting("", "kubeconfig context (empty: the current context)")
    namespace: str = setting("", "namespace (empty: the project name)", pattern=re.compile(r"^$|" + DNS_LABEL.pattern),
                             expect="empty or a DNS label (lowercase letters, digits, '-')")
    cpu_request: str = setting("", "CPU each container requests (empty: the profile's, dev 100m, prod 500m); no CPU "
                               "limit anywhere", pattern=re.compile(r"^$|^[1-9]\d*m$|^\d+(\.\d+)?$"),
                               expect="empty, millicores like 250m, or cores like 0.5")
    spread: str = setting("", "spread tablet servers, ZooKeeper and TaskManagers over nodes and zones, with Fluss "
                          "racks from the nodes' zones: on (never two servers on a node: the ones left over wait for "
                          "more nodes), preferred (apart where the nodes allow, together where they do not, for a "
                          "cluster with fewer nodes than servers) or off; empty: on in prod, off in dev. A node's "
                          "crash takes every copy it holds", choices=("", "on", "preferred", "off"))
    jars: str = setting("fetched", "how pods get the locked jars (Flink's Fluss connector, Fluss's Iceberg extras, "
                        "the tiering job, the catalog's JDBC driver): fetched (an init container downloads them from "
                        "local.maven_repository at every pod start: egress to it needed) or baked (images that carry "
                        "them, FROM images.*, which `sagaz-lakehouse build-images` builds and pushes to "
                        "kubernetes.registry: no download, for a cluster without egress)", choices=("fetched", "baked"))
    registry: str = setting("", "where the images carrying the jars live (kubernetes.jars: baked), e.g. "
                            "registry.example.com/lakehouse: images <registry>/sagaz-lakehouse-<image>:<upstream tag>-"
                            "<digest of base and jars>; empty: no registry (images loaded onto the nodes by hand)",
                            pattern=re.compile(r"^$|^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$"),
                            expect="empty or a registry host with an optional port and path, lowercase, no scheme, "
                            "e.g. registry.example.com:5000/lakehouse")
    api_server_port: int = setting(6443, "the port the API server itself listens on (the `kubernetes` Service's "
                                   "target port): prod tablet servers read their node's zone there (Fluss rack "
                                   "awareness), and a NetworkPolicy sees that port, after the Service's 443",
                                   minimum=1, maximum=65535)


@dataclass(frozen=True)
class Settings:
    # The targets themselves are registered in targets/__init__.py (above this module); loader checks the name.
    target: str = setting("local", "where the stack runs: local (native processes), compose or kubernetes")
    profile: str = setting("dev", "dev: small, fixed dev credentials, short freshness; prod: secrets required",
                           choices=tuple(PROFILES))
    project: str = setting("sagaz-lakehouse", "compose project name and default Kubernetes namespace",
                           pattern=DNS_LABEL, expect="a DNS label (lowercase letters, digits, '-')")
    images: Images = section(Images, "container images (compose and kubernetes); local runs the locked jars")
    ports: Ports = section(Ports, "ports on the host (local and compose) and container ports (kubernetes)")
    replicas: Replicas = section(Replicas, "how many of each scalable component")
    memory: Memory = section(Memory, "memory per component")
    volumes: Volumes = section(Volumes, "persistent storage")
    lake: Lake = section(Lake, "object store, warehouse and table settings")
    object_store: ObjectStore = section(ObjectStore, "the object store: bundled MinIO, or one you run")
    catalog: Catalog = section(Catalog, "the Iceberg REST catalog: bundled (on sqlite or PostgreSQL) or external")
    maintenance: Maintenance = section(Maintenance, "lake maintenance: compaction, snapshot expiry, orphan files")
    monitoring: Monitoring = section(Monitoring, "what Prometheus scrapes besides the stack")
    anomaly: Anomaly = section(Anomaly, "live anomaly detection: baselines and alert rules in Prometheus")
    cost: Cost = section(Cost, "prices for cost attribution (query cost_attribution, the report)")
    analytics: Analytics = section(Analytics, "the real-time query pack's Flink SQL Gateway")
    durability: Durability = section(Durability, "Fluss replication and high-watermark persistence")
    secrets: Secrets = section(Secrets, "where credentials come from (never from this file)")
    local: Local = section(Local, "local target (native processes)")
    compose: Compose = section(Compose, "compose target")
    kubernetes: Kubernetes = section(Kubernetes, "kubernetes target")

    @property
    def external_store(self) -> bool:
        """The lake bucket lives in an object store the user runs: no MinIO, no bucket task."""
        return self.object_store.kind == "external"

    @property
    def s3_region(self) -> str:
        return self.object_store.region or self.lake.region

    @property
    def s3_path_style(self) -> bool:
        if self.object_store.path_style != "auto":
            return self.object_store.path_style == "true"
        return not (self.external_store and not self.object_store.endpoint)

    @property
    def namespace(self) -> str:
        return self.kubernetes.namespace or self.project

    @property
    def freshness(self) -> str:
        return self.lake.freshness or profile(self.profile).freshness

    @property
    def replication_factor(self) -> int:
        # One replica loses acknowledged writes on an unclean restart (docs/fluss-hw-truncation.md).
        return self.durability.replication_factor or min(self.replicas.tablet_servers, 3)

    @property
    def min_in_sync_replicas(self) -> int:
        # With 3 replicas, 2 in sync keep writes going while one server is down and every ack on two logs.
        return self.durability.min_in_sync_replicas or (2 if self.replication_factor >= 3 else 1)

    @property
    def hw_checkpoint_interval(self) -> str:
        return self.durability.hw_checkpoint_interval or profile(self.profile).hw_checkpoint_interval

    @property
    def cpu_request(self) -> str:
        """What each Kubernetes container requests of a CPU (the nodes' size decides what fits)."""
        return self.kubernetes.cpu_request or profile(self.profile).cpu_request

    @property
    def kv_snapshot_interval(self) -> str:
        return self.lake.kv_snapshot_interval or profile(self.profile).kv_snapshot_interval

    @property
    def snapshot_retention(self) -> str:
        return self.lake.snapshot_retention or profile(self.profile).snapshot_retention

    @property
    def maintenance_schedule(self) -> str:
        """How often maintenance runs ("off": never on its own)."""
        return self.maintenance.schedule or profile(self.profile).maintenance_schedule

    @property
    def orphan_retention(self) -> str:
        # A tiering round's files exist minutes before its commit references them: never less than an hour.
        if self.maintenance.orphan_retention:
            return self.maintenance.orphan_retention
        return self.snapshot_retention if duration_seconds(self.snapshot_retention) >= 3600 else "1h"

    @property
    def sql_gateway(self) -> bool:
        """Whether the Flink SQL Gateway runs: the setting, else the profile's choice (off in prod)."""
        if self.analytics.sql_gateway:
            return self.analytics.sql_gateway == "on"
        return profile(self.profile).sql_gateway

    @property
    def catalog_database(self) -> str:
        """Where the bundled catalog keeps its tables (sqlite or postgresql); "" for an external catalog."""
        if self.catalog.kind == "external":
            return ""
        return self.catalog.database or profile(self.profile).catalog_database

    @property
    def catalog_oauth2(self) -> bool:
        """Whether the catalog's clients log in with OAuth2 client credentials (an external catalog that wants it)."""
        return self.catalog.kind == "external" and bool(self.catalog.oauth2_server_uri)

    @property
    def tiering_poll(self) -> str:
        # A due table waits up to one poll before it is tiered: at the upstream 30 s a 10 s freshness means ~30 s.
        return self.lake.tiering_poll or profile(self.profile).tiering_poll


ROOT_ROLE = "root"  # MinIO's root user: the server itself and the bucket task
S3_ROLES = ("fluss", "lake", "reader")  # prod's object-store identities (identities.s3_grants: what each reaches)


@dataclass(frozen=True)
class Credentials:
    """S3 credentials, and the Fluss and Trino passwords where they authenticate clients; ``repr`` shows no secret."""

    access_key: str
    secret_key: str = field(repr=False)
    fluss_password: str = field(default="", repr=False)  # empty: Fluss takes unauthenticated clients (dev)
    trino_password: str = field(default="", repr=False)  # empty: Trino takes any user name over HTTP (dev)
    trino_keystore: str = field(default="", repr=False)  # Trino's TLS key and certificate (PEM), made by tls.ensure
    # An external catalog's OAuth2 client credentials (client_id:client_secret); empty: the catalog takes no login.
    catalog_credential: str = field(default="", repr=False)
    placeholder: bool = False  # placeholders for files that may be committed (manifests/), not credentials
    # object_store.kind external: each role's (role, access key, secret key), as the user made them in their store
    role_keys: tuple[tuple[str, str, str], ...] = field(default=(), repr=False)

    def __repr__(self) -> str:
        return f"Credentials(access_key={self.access_key!r}, secret_key='***')"

    def redact(self, text: str) -> str:
        """``text`` with every credential value replaced by ***, whatever a component chose to log."""
        for value in (*self.secret_values(), self.access_key):
            if value:
                text = text.replace(value, "***")
        return text

    def secret_values(self) -> tuple[str, ...]:
        """The values no log may show."""
        roles = tuple(self.s3_keys(role)[1] for role in S3_ROLES)
        return tuple(v for v in (self.secret_key, *roles, self.fluss_password, self.trino_password,
                                 self.trino_shared_secret(), self.catalog_credential, self.catalog_db_password())
                     if v)

    def catalog_db_password(self) -> str:
        """The password of the bundled catalog's PostgreSQL user: an HMAC of the root secret (as the object-store
        identities' secrets are, tasks.identity_secret), so it is stable and needs no storage of its own. An
        external object store may come without a root secret: then of the roles' secret keys, never of nothing
        (an HMAC of an empty key would be a password anyone can compute)."""
        if self.placeholder:
            return "REPLACE_WITH_CATALOG_DB_PASSWORD"
        import hashlib
        import hmac

        key = self.secret_key or "\n".join(secret for _, _, secret in self.role_keys)
        if not key:
            return ""  # no credentials at all: nothing to derive from (and nothing that runs PostgreSQL)
        return hmac.new(key.encode(), b"sagaz-lakehouse catalog database", hashlib.sha256).hexdigest()[:40]

    def s3_keys(self, role: str) -> tuple[str, str]:
        """The access and secret key of ``role``'s object-store identity (``ROOT_ROLE``: MinIO's root user). The
        bucket task derives the same secret from the root secret (tasks.identity_secret)."""
        if role == ROOT_ROLE:
            return self.access_key, self.secret_key
        for name, access_key, secret_key in self.role_keys:
            if name == role:
                return access_key, secret_key
        from sagaz_lakehouse import tasks

        if self.placeholder:
            return tasks.IDENTITY_PREFIX + role, f"REPLACE_WITH_S3_{role.upper()}_SECRET_KEY"
        return tasks.IDENTITY_PREFIX + role, tasks.identity_secret(self.secret_key, role)

    def trino_shared_secret(self) -> str:
        """Trino's internal-communication.shared-secret (required once clients authenticate), derived from the Trino
        password so that no second secret has to be supplied and kept; empty where Trino does not authenticate."""
        if not self.trino_password:
            return ""
        import hashlib
        import hmac

        return hmac.new(self.trino_password.encode(), b"sagaz-lakehouse trino internal communication",
                        hashlib.sha256).hexdigest()


# Development-only credentials: used in the dev profile, refused in prod.
DEV_CREDENTIALS = Credentials("sagaz-dev", "sagaz-dev-secret")
# What `render` writes instead of credential values into files that may be committed (manifests/).
PLACEHOLDER_CREDENTIALS = Credentials("REPLACE_WITH_S3_ACCESS_KEY", "REPLACE_WITH_S3_SECRET_KEY",
                                      "REPLACE_WITH_FLUSS_PASSWORD", "REPLACE_WITH_TRINO_PASSWORD",
                                      "REPLACE_WITH_TRINO_KEYSTORE_PEM", "REPLACE_WITH_CATALOG_CREDENTIAL",
                                      placeholder=True)


# ---------------------------------------------------------------------------------------------- loading


Check = Callable[["Settings"], list[Problem]]


def load(path: Path | None = None, overrides: dict[str, Any] | None = None,
         environ: dict[str, str] | None = None, *, checks: Sequence[Check] = ()) -> Settings:
    """Read, merge and validate settings; raises ConfigError listing every problem at once, each naming where its
    value came from. ``checks`` validate settings the schema accepted, with knowledge above this module (the stack
    model lays out the ports: ``loader.load_settings`` passes its checks); their problems come with the rest."""
    environ = dict(os.environ if environ is None else environ)
    file_values, source = _read_file(path)
    problems: list[Problem] = []
    from_env = _from_environment(environ, problems)
    layers = ((file_values, source), (from_env, "environment"), (_nest(overrides or {}), "flags"))
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}  # dotted setting -> where its value came from, for the error messages
    for values, label in layers:
        _deep_merge(merged, values)
        origin.update({k: label for k in _flatten(values)})
    settings = _build(Settings, merged, "", problems)
    if settings is not None:
        problems += [problem for check in checks for problem in check(settings)] + cross_field_problems(settings)
    if problems:
        raise ConfigError([_with_origin(p, origin, path) for p in problems],
                          source if all(origin.get(p.field, source) == source for p in problems) else "settings")
    assert settings is not None
    return settings


def _flatten(values: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, value in values.items():
        out += _flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]
    return out


def _with_origin(problem: Problem, origin: dict[str, str], path: Path | None) -> Problem:
    """Name where a bad value came from: the flag, the environment variable, or the settings file."""
    label = origin.get(problem.field)
    if label is None:
        return problem
    where = {"flags": f"--set {problem.field}", "environment": env_name(problem.field)}.get(label, str(path))
    return dataclasses.replace(problem, source=where)


def find_config_file(start: Path | None = None) -> Path | None:
    """The config file in the current folder, or None (defaults apply)."""
    candidate = (start or Path.cwd()) / CONFIG_FILENAME
    return candidate if candidate.exists() else None


def _read_file(path: Path | None) -> tuple[dict[str, Any], str]:
    if path is None:
        return {}, "settings (defaults, environment and flags)"
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([Problem("--config", f"cannot read {path}: {exc.strerror}",
                                   "pass an existing file, or run `sagaz-lakehouse init`")], str(path)) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError([Problem(where, f"malformed YAML: {exc.problem}",
                                   "fix the syntax at that position (indentation, ':' after keys, quotes)")],
                          str(path)) from exc
    if data is None:
        return {}, str(path)
    if not isinstance(data, dict):
        raise ConfigError([Problem("(top level)", f"expected a mapping of settings, got {type(data).__name__}",
                                   "start from `sagaz-lakehouse init`")], str(path))
    return data, str(path)


def _from_environment(environ: dict[str, str], problems: list[Problem]) -> dict[str, Any]:
    """SAGAZ_LAKEHOUSE_TARGET=compose, SAGAZ_LAKEHOUSE_REPLICAS__TABLET_SERVERS=3, ..."""
    flat: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in SECRET_ENV.values():
            continue
        dotted = name[len(ENV_PREFIX):].lower().replace("__", ".")
        if dotted not in ALL_PATHS:
            close = difflib.get_close_matches(dotted, ALL_PATHS, n=1)
            hint = f"did you mean {env_name(close[0])}?" if close else "unset it"
            problems.append(Problem(name, "unknown setting in the environment", hint))
            continue
        flat[dotted] = value
    return _nest(flat)


def env_name(dotted: str) -> str:
    return ENV_PREFIX + dotted.upper().replace(".", "__")


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = nested
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def _deep_merge(into: dict[str, Any], layer: dict[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def _build(cls: type, values: Any, prefix: str, problems: list[Problem]) -> Any:
    """Instantiate ``cls`` from a dict, recording every problem instead of stopping at the first."""
    if not isinstance(values, dict):
        problems.append(Problem(prefix.rstrip(".") or "(top level)", f"expected a mapping, got {values!r}",
                                "indent the keys of this section under it"))
        return None
    hints = get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f"did you mean '{prefix}{close[0]}'?" if close else f"valid keys: {', '.join(known)}"
            problems.append(Problem(f"{prefix}{key}", "unknown setting", hint))
    kwargs: dict[str, Any] = {}
    for name, spec in known.items():
        if name not in values:
            continue
        path, kind = f"{prefix}{name}", hints[name]
        if dataclasses.is_dataclass(kind):
            built = _build(cast(type, kind), values[name], path + ".", problems)
            if built is not None:
                kwargs[name] = built
        else:
            checked = _check_value(path, values[name], kind, spec.metadata, problems)
            if checked is not None:
                kwargs[name] = checked
    return cls(**kwargs)


def _check_value(path: str, value: Any, kind: type, meta: Any, problems: list[Problem]) -> Any:
    if kind is int:
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            value = int(value)  # environment variables and --set arrive as text
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(Problem(path, f"expected a whole number, got {value!r}", f"set {path}: <number>"))
            return None
        low, high = meta["minimum"], meta["maximum"]
        if (low is not None and value < low) or (high is not None and value > high):
            problems.append(Problem(path, f"expected a number from {low} to {high}, got {value}",
                                    f"set {path} within that range"))
            return None
        return value
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        problems.append(Problem(path, f"expected text, got {value!r}", f"quote the value of {path}"))
        return None
    value = str(value)
    if meta["choices"] and value not in meta["choices"]:
        close = difflib.get_close_matches(value, meta["choices"], n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"use one of: {', '.join(meta['choices'])}"
        problems.append(Problem(path, f"expected one of {', '.join(meta['choices'])}, got '{value}'", hint))
        return None
    if meta["pattern"] is not None and not meta["pattern"].fullmatch(value):
        problems.append(Problem(path, f"expected {meta['expect'] or meta['pattern'].pattern}, got '{value}'",
                                f"change {path}"))
        return None
    floor = meta.get("min_quantity")
    if floor and mebibytes(value) < mebibytes(floor):
        problems.append(Problem(path, f"expected at least {floor}, got '{value}'", f"set {path} to {floor} or more"))
        return None
    return value


def duration_seconds(duration: str) -> float:
    """A duration setting (``DURATION``: 500ms, 10s, 3min, 1h; ``LONG_DURATION`` also 7d) in seconds."""
    number = float("".join(ch for ch in duration if ch.isdigit() or ch == "."))
    unit = duration.lstrip("0123456789. ")
    return number * {"ms": 0.001, "s": 1, "min": 60, "h": 3600, "d": 86400}[unit]


def mebibytes(quantity: str) -> int:
    """A memory quantity from the settings (512Mi, 2Gi, 1.5Gi, or bytes) in MiB, rounded up, at least 1."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti)?", quantity)
    if not match:
        raise ConfigError([Problem("memory", f"'{quantity}' is not a quantity in Ki, Mi, Gi or Ti",
                                   "use a value like 512Mi or 2Gi")])
    factor = {None: 1 / (1 << 20), "Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1 << 20}[match.group(2)]
    return max(1, math.ceil(float(match.group(1)) * factor))


def cross_field_problems(settings: Settings) -> list[Problem]:
    """Checks that span fields: replication against tablet servers, image tags. (Ports are laid out by the stack
    model, which checks them: loader.model_problems.)"""
    problems = _durability_problems(settings) + _catalog_problems(settings) + _ensemble_problems(settings)
    for name in (f.name for f in dataclasses.fields(Images)):
        image = getattr(settings.images, name)
        _, tag, digest = image_reference(image)
        if "@" in image and not digest:
            problems.append(Problem(f"images.{name}", f"image '{image}' has a malformed digest",
                                    "write name@sha256:<64 hex digits> (or name:tag@sha256:...)"))
        elif not digest and (not tag or tag == "latest"):
            problems.append(Problem(f"images.{name}", f"image '{image}' is not pinned to a version tag or digest",
                                    f"use a versioned tag, e.g. {getattr(Images(), name)}, or a digest: "
                                    "name@sha256:<64 hex digits>"))
    return problems


def _ensemble_problems(settings: Settings) -> list[Problem]:
    """A ZooKeeper ensemble has an odd number of servers (an even one tolerates no more failures than one less), and
    runs on Kubernetes only: the other targets put every server on one host, where an ensemble adds nothing."""
    servers = settings.replicas.zookeeper
    if servers and servers % 2 == 0:
        return [Problem("replicas.zookeeper", f"{servers} ZooKeeper servers: an ensemble needs an odd number (a "
                        "majority of an even one tolerates no more failures than one server less)",
                        "use 1, 3, 5 or 7 (or 0: the profile's)")]
    if servers > 1 and settings.target != "kubernetes":
        return [Problem("replicas.zookeeper", f"a ZooKeeper ensemble ({servers} servers) runs on the kubernetes target "
                        f"only, not {settings.target}: one host holds every server there",
                        "set replicas.zookeeper to 1 (or 0), or use --target kubernetes")]
    return []


IMAGE_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def image_reference(image: str) -> tuple[str, str, str]:
    """(repository, tag, digest) of an image reference: ``name:tag``, ``name@sha256:...`` or
    ``name:tag@sha256:...``; "" for a part it lacks (and for a digest that is not sha256 and 64 hex digits)."""
    name, _, digest = image.partition("@")
    repository, tag = (name.rsplit(":", 1) if ":" in name.rsplit("/", 1)[-1] else (name, ""))
    return repository, tag, digest if IMAGE_DIGEST.fullmatch(digest) else ""


def settings_warnings(settings: Settings) -> list[str]:
    """What the settings allow but production should not rely on: in prod, an image by tag only (a tag can be
    moved to other content; a digest cannot)."""
    if profile(settings.profile).dev_credentials:
        return []
    found = []
    by_tag = [f"images.{f.name}" for f in dataclasses.fields(Images)
              if not image_reference(getattr(settings.images, f.name))[2]]
    if by_tag:
        found.append(f"{len(by_tag)} image(s) pinned by tag only, which a registry can move to other content: "
                     f"{', '.join(by_tag)}; in prod give each as name@sha256:<digest> (e.g. --set images.trino="
                     "trinodb/trino:476@sha256:...)")
    if settings.target == "kubernetes" and settings.kubernetes.spread in ("off", "preferred"):
        found.append(f"kubernetes.spread is {settings.kubernetes.spread}: tablet servers (and ZooKeeper servers) may "
                     "share a node, whose crash then takes every copy of a bucket; leave it empty in prod unless the "
                     "cluster has fewer nodes than servers")
    return found


def _catalog_problems(settings: Settings) -> list[Problem]:
    catalog = settings.catalog
    problems = []
    if catalog.kind == "bundled":
        problems += [Problem(f"catalog.{name}", "applies to an external catalog only (catalog.kind: external)",
                             f"unset catalog.{name}, or set catalog.kind: external")
                     for name in ("uri", "warehouse", "oauth2_server_uri", "scope") if getattr(catalog, name)]
        if settings.catalog_database == "sqlite" and not profile(settings.profile).dev_credentials:
            problems.append(Problem("catalog.database", "the prod profile never keeps the catalog in sqlite (one "
                                    "file, one writer at a time, nothing to fail over to)",
                                    "set catalog.database: postgresql, or leave it empty"))
        return problems
    if not catalog.uri:
        problems.append(Problem("catalog.uri", "an external catalog needs its REST endpoint",
                                "set catalog.uri, e.g. https://polaris.example.com/api/catalog"))
    if catalog.database:
        problems.append(Problem("catalog.database", "applies to the bundled catalog only (catalog.kind: bundled)",
                                "unset catalog.database"))
    if catalog.scope and not catalog.oauth2_server_uri:
        problems.append(Problem("catalog.scope", "a scope is asked for with OAuth2 only",
                                "set catalog.oauth2_server_uri, or unset catalog.scope"))
    return problems


def _durability_problems(settings: Settings) -> list[Problem]:
    problems = []
    if settings.replication_factor > settings.replicas.tablet_servers:
        problems.append(Problem("durability.replication_factor",
                                f"{settings.replication_factor} replicas need as many tablet servers, there are "
                                f"{settings.replicas.tablet_servers}",
                                "raise replicas.tablet_servers or lower durability.replication_factor"))
    if settings.min_in_sync_replicas > settings.replication_factor:
        problems.append(Problem("durability.min_in_sync_replicas",
                                f"{settings.min_in_sync_replicas} exceeds the replication factor "
                                f"{settings.replication_factor}: no write could ever be acknowledged",
                                "set it to at most durability.replication_factor"))
    return problems


# --------------------------------------------------------------------------------------------- secrets

SECRET_ENV = {"access_key": ENV_PREFIX + "S3_ACCESS_KEY", "secret_key": ENV_PREFIX + "S3_SECRET_KEY",
              "fluss_password": ENV_PREFIX + "FLUSS_PASSWORD", "trino_password": ENV_PREFIX + "TRINO_PASSWORD",
              "catalog_credential": ENV_PREFIX + "CATALOG_CREDENTIAL"}
# object_store.kind external: each role's own keys, as secrets.file keys (s3_fluss_access_key, ...) and variables
# (SAGAZ_LAKEHOUSE_S3_FLUSS_ACCESS_KEY, ...).
ROLE_SECRET_NAMES = {role: (f"s3_{role}_access_key", f"s3_{role}_secret_key") for role in S3_ROLES}
SECRET_ENV |= {name: ENV_PREFIX + name.upper() for pair in ROLE_SECRET_NAMES.values() for name in pair}


def resolve_credentials(settings: Settings, environ: dict[str, str] | None = None, base_dir: Path | None = None,
                        *, fluss_password: bool = False, trino_password: bool = False,
                        trino_names: tuple[tuple[str, ...], ...] = (("127.0.0.1", "localhost"),)) -> Credentials:
    """Credentials from the environment or the secrets file; dev falls back to the dev credentials. The Fluss and
    Trino passwords are read (and required) where the stack authenticates those clients (the profile says so:
    ``security.resolve_credentials``); the operator's Trino certificate must name one name of each group of
    ``trino_names`` (what clients connect to, which the target knows)."""
    environ = dict(os.environ if environ is None else environ)
    from_file = (_read_secrets_file(settings.secrets.file, base_dir, settings.external_store)
                 if settings.secrets.file else None)
    credentials = _s3_credentials(settings, environ, from_file)
    if fluss_password:
        credentials = dataclasses.replace(credentials, fluss_password=_password(
            settings, environ, from_file, "fluss_password", "Fluss clients (SASL/PLAIN)"))
    if trino_password:
        credentials = dataclasses.replace(credentials, trino_password=_password(
            settings, environ, from_file, "trino_password", "Trino clients (password over HTTPS)"))
        if settings.secrets.trino_tls:
            credentials = dataclasses.replace(credentials, trino_keystore=_read_trino_keystore(
                settings.secrets.trino_tls, base_dir, trino_names))
    if settings.catalog_oauth2:
        credentials = dataclasses.replace(credentials, catalog_credential=_catalog_credential(
            settings, environ, from_file))
    return credentials


def catalog_credential(settings: Settings, environ: dict[str, str] | None = None, base_dir: Path | None = None) -> str:
    """The external catalog's OAuth2 client credentials alone (for a client on the host)."""
    environ = dict(os.environ if environ is None else environ)
    from_file = None
    if settings.secrets.file and not environ.get(SECRET_ENV["catalog_credential"]):
        from_file = _read_secrets_file(settings.secrets.file, base_dir)
    return _catalog_credential(settings, environ, from_file)


def _catalog_credential(settings: Settings, environ: dict[str, str], from_file: Credentials | None) -> str:
    """The external catalog's OAuth2 client credentials, required where the catalog wants a login."""
    key = "catalog_credential"
    value = environ.get(SECRET_ENV[key], "") or (from_file.catalog_credential if from_file else "")
    source = SECRET_ENV[key] if environ.get(SECRET_ENV[key]) else settings.secrets.file
    if not value:
        raise ConfigError([Problem("secrets", "catalog.oauth2_server_uri asks every client of the catalog to log "
                                   "in, and no catalog credential was supplied",
                                   f"set {SECRET_ENV[key]}=<client_id>:<client_secret>, or add {key} to "
                                   "secrets.file")])
    # It travels as a value in Fluss's server.yaml (whose loader cuts lines at '#'), in env files and as a Java
    # property: the same characters as the passwords are refused, and so are spaces (an argument of the job).
    if any(c in value for c in '#"\\') or any(c.isspace() for c in value):
        raise ConfigError([Problem("catalog credential", f"from {source} contains '#', '\"', '\\' or whitespace, "
                                   "which Fluss's configuration loader or an env file would change",
                                   "ask the catalog for client credentials without them")])
    return value


def _read_trino_keystore(name: str, base_dir: Path | None, names: tuple[tuple[str, ...], ...]) -> str:
    """The operator's Trino keystore (secrets.trino_tls), checked before anything starts."""
    from sagaz_lakehouse import tls

    path = _secret_path(name, base_dir)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        pem = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem("secrets.trino_tls", f"cannot read {path}: {exc}",
                                   "point it at a PEM file with the private key and certificate chain")]) from exc
    if mode & 0o077:
        raise ConfigError([Problem("secrets.trino_tls", f"{path} is readable by others (mode {mode:o}) and holds a "
                                   "private key", f"chmod 600 {path}")])
    problem = tls.keystore_problem(pem, names)
    if problem:
        wanted = " and ".join(" or ".join(group) for group in names)
        raise ConfigError([Problem("secrets.trino_tls", f"{path}: {problem}",
                                   "supply an unencrypted PEM private key with its certificate chain, the first "
                                   f"certificate valid now and naming {wanted}; or unset secrets.trino_tls to have a "
                                   "self-signed one made")])
    return pem


def _secret_path(name: str, base_dir: Path | None) -> Path:
    path = Path(name).expanduser()
    return base_dir / path if not path.is_absolute() and base_dir is not None else path


def _password(settings: Settings, environ: dict[str, str], from_file: Credentials | None, key: str,
              who: str) -> str:
    """A password the profile requires, from the environment or else the secrets file, checked."""
    password = environ.get(SECRET_ENV[key], "") or (getattr(from_file, key) if from_file else "")
    source = "environment" if environ.get(SECRET_ENV[key]) else settings.secrets.file
    if not password:
        raise ConfigError([Problem("secrets", f"the {settings.profile} profile authenticates {who} and no "
                                   f"{key.replace('_', ' ')} was supplied",
                                   f"set {SECRET_ENV[key]}, or add {key} to secrets.file")])
    _check_password(password, key.replace("_", " "), source)
    return password


def _s3_credentials(settings: Settings, environ: dict[str, str], from_file: Credentials | None) -> Credentials:
    if settings.external_store:
        return _external_credentials(settings, environ, from_file)
    from_env = {k: environ.get(SECRET_ENV[k], "") for k in ("access_key", "secret_key")}
    if all(from_env.values()):
        return _checked_credentials(Credentials(from_env["access_key"], from_env["secret_key"]), "environment")
    if from_file is not None:
        return _checked_credentials(Credentials(from_file.access_key, from_file.secret_key), settings.secrets.file)
    if profile(settings.profile).dev_credentials:
        return DEV_CREDENTIALS
    raise ConfigError([Problem("secrets", "the prod profile needs S3 credentials and none were supplied",
                               f"set {SECRET_ENV['access_key']} and {SECRET_ENV['secret_key']}, or point "
                               "secrets.file at a 0600 YAML file with s3_access_key and s3_secret_key")])


def _external_credentials(settings: Settings, environ: dict[str, str], from_file: Credentials | None) -> Credentials:
    """object_store.kind external: the keys of the identities the user made, one per role (or one key for every
    role: ``shared_key_roles`` names them, and ``up`` warns in prod). The environment's pair wins over the file's."""
    in_file = {name: (access, secret) for name, access, secret in (from_file.role_keys if from_file else ())}
    if from_file is not None:
        in_file["access_key"] = (from_file.access_key, from_file.secret_key)

    def pair(access: str, secret: str) -> tuple[tuple[str, str], str]:
        env = (environ.get(SECRET_ENV[access], ""), environ.get(SECRET_ENV[secret], ""))
        if any(env):
            return env, f"{SECRET_ENV[access]}/{SECRET_ENV[secret]}"
        return in_file.get(access, ("", "")), settings.secrets.file

    shared, shared_source = pair("access_key", "secret_key")
    problems: list[Problem] = []
    roles: list[tuple[str, str, str]] = []
    for role, (access, secret) in ROLE_SECRET_NAMES.items():
        keys, source = pair(access, secret)
        if any(keys) and not all(keys):
            problems.append(Problem("secrets", f"the {role} role's keys from {source} are incomplete",
                                    f"supply both {access} and {secret}"))
        elif all(keys):
            problems += _key_problems(keys, f"the {role} role's keys", source)
            roles.append((role, *keys))
        elif all(shared):
            roles.append((role, *shared))
        else:
            problems.append(Problem("secrets", f"object_store.kind external and no keys for the {role} role",
                                    f"set {SECRET_ENV[access]} and {SECRET_ENV[secret]}, or add {access} and "
                                    f"{secret} to secrets.file (or s3_access_key and s3_secret_key for every "
                                    "role)"))
    if any(shared) and not all(shared):
        problems.append(Problem("secrets", f"the shared keys from {shared_source} are incomplete",
                                "supply both s3_access_key and s3_secret_key"))
    elif all(shared):
        problems += _key_problems(shared, "the shared s3 keys", shared_source)
    if problems:
        raise ConfigError(problems)
    return Credentials(shared[0], shared[1], role_keys=tuple(roles))


def _key_problems(keys: tuple[str, str], what: str, source: str) -> list[Problem]:
    # Fluss's YAML loader cuts every line at '#' (GlobalConfiguration.loadYAMLResource), and env files and property
    # files trim whitespace: such a value would silently become another one.
    if any("#" in value or value != value.strip() for value in keys):
        return [Problem("secrets", f"{what} from {source} contain '#' or leading/trailing whitespace, which "
                        "Fluss's configuration loader would cut off", "choose keys without them")]
    return []


def shared_key_roles(credentials: Credentials) -> list[str]:
    """The roles whose object-store key another role uses too (object_store.kind external)."""
    keys = [access for _, access, _ in credentials.role_keys]
    return [role for role, access, _ in credentials.role_keys if keys.count(access) > 1]


def _check_password(password: str, what: str, source: str) -> None:
    # The S3 keys' rules ('#', surrounding whitespace), plus '"' and backslash: the Fluss password sits between double
    # quotes in the JAAS files (which have no escaping) and in the JSON login file; Trino's takes the same rules.
    if len(password) < 8:
        raise ConfigError([Problem(what, f"from {source} is shorter than 8 characters",
                                   "use a longer password, e.g. `openssl rand -hex 24`")])
    if any(c in password for c in '#"\\') or password != password.strip():
        raise ConfigError([Problem(what, f"from {source} contains '#', '\"', '\\' or leading/trailing "
                                   "whitespace, which the JAAS file or Fluss's configuration loader would change",
                                   "choose a value without them, e.g. `openssl rand -hex 24`")])


def _read_secrets_file(name: str, base_dir: Path | None, external: bool = False) -> Credentials:
    import yaml

    path = _secret_path(name, base_dir)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError([Problem("secrets.file", f"cannot read {path}: {exc}",
                                   "create it with s3_access_key and s3_secret_key, mode 0600")]) from exc
    if mode & 0o077:
        raise ConfigError([Problem("secrets.file", f"{path} is readable by others (mode {mode:o})",
                                   f"chmod 600 {path}")])
    if not isinstance(data, dict):
        raise ConfigError([Problem("secrets.file", f"{path} is not a mapping of keys", "write key: value lines")])
    # object_store.kind external reads each role's keys, and needs the shared pair only for roles without their own
    # (_external_credentials); the bundled store always needs the root pair.
    missing = [k for k in ("s3_access_key", "s3_secret_key") if not data.get(k)]
    if missing and not external:
        raise ConfigError([Problem("secrets.file", f"{path} lacks {', '.join(missing)}", "add the missing keys")])
    # Keyed by the access key's name here; _external_credentials checks and pairs them with their roles.
    pairs = tuple((access, str(data.get(access) or ""), str(data.get(secret) or ""))
                  for access, secret in ROLE_SECRET_NAMES.values())
    return Credentials(str(data.get("s3_access_key") or ""), str(data.get("s3_secret_key") or ""),
                       str(data.get("fluss_password") or ""), str(data.get("trino_password") or ""),
                       role_keys=pairs,
                       catalog_credential=str(data.get("catalog_credential") or ""))


def _checked_credentials(creds: Credentials, source: str) -> Credentials:
    problems = []
    if len(creds.access_key) < 3:
        problems.append(Problem("s3 access key", f"from {source} is shorter than 3 characters (MinIO's minimum)",
                                "use a longer access key"))
    if len(creds.secret_key) < 8:
        problems.append(Problem("s3 secret key", f"from {source} is shorter than 8 characters (MinIO's minimum)",
                                "use a longer secret key"))
    if creds.access_key in {creds.s3_keys(role)[0] for role in S3_ROLES}:
        problems.append(Problem("s3 access key", f"from {source} is {creds.access_key!r}, the name of one of the "
                                "identities the bucket task creates in prod", "choose another root access key"))
    for label, value in (("s3 access key", creds.access_key), ("s3 secret key", creds.secret_key)):
        # Fluss's YAML loader cuts every line at '#' (GlobalConfiguration.loadYAMLResource), and env files and
        # property files trim whitespace: such a value would silently become another one.
        if "#" in value or value != value.strip():
            problems.append(Problem(label, f"from {source} contains '#' or leading/trailing whitespace, which "
                                    "Fluss's configuration loader would cut off", "choose a value without them"))
    if problems:
        raise ConfigError(problems)
    return creds


# --------------------------------------------------------------------------------------------- init file


def _paths(cls: type, prefix: str = "") -> list[str]:
    hints = get_type_hints(cls)
    out: list[str] = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += _paths(hints[f.name], f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
    return out


ALL_PATHS = _paths(Settings)


def commented_yaml(chosen: dict[str, Any] | None = None) -> str:
    """The file ``init`` writes: every setting with its documentation and default, commented out, so that a later
    version's defaults (image tags, jar versions) apply unless the user sets a value; ``chosen`` (dotted path →
    value) is written as active settings."""
    import json

    chosen = chosen or {}
    defaults = Settings()
    lines = ["# sagaz-lakehouse configuration. Every setting is listed with its documentation and its default,",
             "# commented out: uncomment a line (and its section) to change it.",
             "# Precedence: flags > environment (SAGAZ_LAKEHOUSE_<SECTION>__<KEY>) > this file > defaults.",
             "# Credentials never go here: see `secrets`.", ""]

    def emit(obj: Any, prefix: str, indent: str) -> None:
        hints = get_type_hints(type(obj))
        for f in dataclasses.fields(obj):
            path, doc = prefix + f.name, f.metadata.get("doc", "")
            if dataclasses.is_dataclass(hints[f.name]):
                active = any(key.startswith(path + ".") for key in chosen)
                lines.append(f"{indent}# {doc}")
                lines.append(f"{indent}{'' if active else '# '}{f.name}:")
                emit(getattr(obj, f.name), path + ".", indent + "  ")
                if not indent:
                    lines.append("")
                continue
            choices = f.metadata.get("choices")
            lines.append(f"{indent}# {doc}" + (f" ({' | '.join(choices)})" if choices else ""))
            if path in chosen:
                lines.append(f"{indent}{f.name}: {json.dumps(chosen[path])}")
            else:
                lines.append(f"{indent}# {f.name}: {json.dumps(getattr(obj, f.name))}")

    emit(defaults, "", "")
    return "\n".join(lines).rstrip() + "\n"
