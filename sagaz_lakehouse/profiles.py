"""What the ``dev`` and ``prod`` profiles change, in one table.

A setting left empty in the settings file takes its profile's value here; everything else about a profile (which
credentials are acceptable) is read from the same row, so a reader sees every difference between the profiles at
once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    freshness: str  # table.datalake.freshness: how stale the Iceberg copy may get
    tiering_poll: str  # tiering job's tiering.poll.table.interval (upstream default 30 s)
    kv_snapshot_interval: str  # Fluss kv.snapshot.interval: primary-key tables tier from KV snapshots
    # Fluss log.replica.high-watermark.checkpoint-interval (upstream 5 s): what a bucket with a single in-sync
    # replica can lose on a crash (docs/fluss-hw-truncation.md). Cheap: one small file per tablet server.
    hw_checkpoint_interval: str
    cpu_request: str  # Kubernetes CPU request per container (no CPU limit anywhere: no throttling)
    dev_credentials: bool  # fixed development credentials are acceptable
    # Fluss clients authenticate (SASL/PLAIN on every listener; README, "Logins in prod"), on every target.
    fluss_sasl: bool
    # Trino takes password-authenticated clients over HTTPS only (README, "Logins in prod"), on every target.
    trino_auth: bool
    # Flink's REST API takes jar uploads (web.submit.enable); where it does not, the tiering job goes in through
    # Flink's own client instead (security.flink_jar_upload_on()).
    flink_jar_upload: bool
    # The Flink SQL Gateway runs (analytics.sql_gateway when empty). It has no authentication of its own and holds the
    # Fluss login, so prod leaves it out unless asked for (README, "The SQL Gateway in prod").
    sql_gateway: bool
    # One object-store identity per role, each reaching only its own prefixes (identities.s3_grants); the root keys are
    # left to MinIO and the bucket task. Every target: the bucket task that creates them is the same everywhere.
    s3_identities: bool
    snapshot_retention: str  # how far back Iceberg time travel reaches (maintenance expires older snapshots)
    maintenance_schedule: str  # how often the lake maintenance service runs (README, Operations)
    # Where the bundled REST catalog keeps its tables (catalog.database): one sqlite file (WAL, a 30 s busy timeout)
    # is enough for one developer; prod needs a database server (docs/catalog.md: PostgreSQL, chosen by measurement).
    catalog_database: str
    # Kubernetes only (one host holds every compose or local process, so there an ensemble or a spread buys nothing):
    # ZooKeeper servers (replicas.zookeeper when 0; an ensemble of 3 survives the loss of one), and whether the pods
    # of tablet servers, ZooKeeper and TaskManagers spread over nodes and zones (docs/kubernetes.md, "Topology").
    zookeeper_ensemble: int
    spread: bool


PROFILES: dict[str, Profile] = {
    # Small and fast feedback on one machine: a probe event reaches Iceberg within ~15 s.
    "dev": Profile("dev", freshness="10s", tiering_poll="2s", kv_snapshot_interval="5s",
                   hw_checkpoint_interval="1s", cpu_request="100m", dev_credentials=True,
                   fluss_sasl=False, trino_auth=False, flink_jar_upload=True, sql_gateway=True,
                   s3_identities=False, snapshot_retention="1h", maintenance_schedule="10min",
                   catalog_database="sqlite", zookeeper_ensemble=1, spread=False),
    # Upstream defaults where they exist (freshness 3 min, poll 30 s); snapshots every minute.
    "prod": Profile("prod", freshness="3min", tiering_poll="30s", kv_snapshot_interval="1min",
                    hw_checkpoint_interval="1s", cpu_request="500m", dev_credentials=False,
                    fluss_sasl=True, trino_auth=True, flink_jar_upload=False, sql_gateway=False,
                    s3_identities=True, snapshot_retention="7d", maintenance_schedule="1h",
                    catalog_database="postgresql", zookeeper_ensemble=3, spread=True),
}


def profile(name: str) -> Profile:
    return PROFILES[name]
