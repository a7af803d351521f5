"""Every pinned version and container image, in one place.

Each pin names where upstream documents it. Jar-level pins (the exact files the local target and the plugin
init containers download) live in ``locks/artifacts.lock.json``, generated from these versions by
``scripts/lock_artifacts.py``; a unit test fails when the lock and this module disagree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pin:
    version: str
    image: str
    source: str  # where upstream states this version/tag


# apache/fluss website/fluss-versions.json: "dockerVersion": "0.9.1-incubating" (newest release on Maven Central;
# main is 1.0-SNAPSHOT).
FLUSS = Pin("0.9.1-incubating", "apache/fluss:0.9.1-incubating", "apache/fluss website/fluss-versions.json")
# apache/fluss pom.xml at v0.9.1-incubating: <iceberg.version>1.10.1</iceberg.version>; the REST fixture image is
# published per Iceberg release.
ICEBERG = Pin("1.10.1", "apache/iceberg-rest-fixture:1.10.1", "apache/fluss pom.xml iceberg.version")
# The tiering job and fluss-flink-1.20 are built against Flink 1.20 (apache/fluss pom.xml flink.version).
FLINK = Pin("1.20.3", "flink:1.20.3-scala_2.12-java17", "apache/fluss pom.xml (fluss-flink-1.20)")
FLINK_MINOR = "1.20"
# apache/fluss website/docs/install-deploy/deploying-with-docker.md uses zookeeper:3.9.2.
ZOOKEEPER = Pin("3.9.2", "zookeeper:3.9.2", "apache/fluss deploying-with-docker.md")
# Newest Trino on Maven Central (io.trino:trino-server maven-metadata.xml); requires Java 24+.
TRINO = Pin("476", "trinodb/trino:476", "io.trino:trino-server maven-metadata.xml")
# MinIO: the last commit of the archived minio/minio repository (7aac2a2c5b7c, 2026-02-12), as the Go module proxy
# serves it. It holds the source-only release RELEASE.2025-10-15T17-29-55Z, which fixed a privilege escalation
# (c1a49490c, "check sub-policy properly"), plus five later fixes; the newest image upstream published is the older
# RELEASE.2025-09-07T16-13-09Z. So every target runs this build: the local target the binary built from the proxy,
# containers the image `make images` builds from that same binary (images/minio). README, "Object store".
MINIO = Pin("v0.0.0-20260212201848-7aac2a2c5b7c", "sagaz-lakehouse/minio:20260212201848-7aac2a2c5b7c",
            "minio/minio 7aac2a2c5b7c, descendant of tag RELEASE.2025-10-15T17-29-55Z")
# SeaweedFS: the Go module proxy's newest github.com/seaweedfs/seaweedfs (7506e5f91cd6, 2026-11-09), whose
# weed/util/version/constants.go reads 4.53 (k8s/charts/seaweedfs/Chart.yaml appVersion "4.53"); upstream publishes
# that release as chrislusf/seaweedfs:4.53 (.github/workflows/container_release_unified.yml). Not yet the bundled
# store: the candidate of issue 26, item 2, tested as an operator's external store (docs/object-store-seaweedfs.md).
SEAWEEDFS = Pin("v0.0.0-20261109003541-7506e5f91cd6", "chrislusf/seaweedfs:4.53",
                "seaweedfs/seaweedfs 7506e5f91cd6 weed/util/version/constants.go 4.53")
# Prometheus: the Go module proxy serves github.com/prometheus/prometheus v0.316.0, whose VERSION file reads 3.16.0
# (upstream tags each 3.x.y release also as v0.3xx.y for Go); the local target builds cmd/prometheus and cmd/promtool
# of that module version, containers run the official image of the same release.
PROMETHEUS = Pin("v0.316.0", "prom/prometheus:v3.16.0", "github.com/prometheus/prometheus@v0.316.0 VERSION")
# The one-shot tasks (sagaz_lakehouse/tasks.py, standard library only) run in the official Python image:
# docker-library/official-images library/python lists 3.11.14-slim-bookworm (Debian 12, like the other bases).
PYTHON = Pin("3.11.14", "python:3.11.14-slim-bookworm", "docker-library/official-images library/python")
# The bundled catalog's database in prod (the catalog-db component): PostgreSQL 15, the major of Debian 12 (bookworm),
# whose package the local target runs (postgresql-15) and the stand-in image is built from; containers run the
# official image of that major on the same Debian (docker-library/postgres 15/bookworm/Dockerfile at 6edb0a8c:
# ENV PG_VERSION 15.17-1.pgdg12+1).
POSTGRES = Pin("15.17", "postgres:15.17-bookworm", "docker-library/postgres 15/bookworm/Dockerfile PG_VERSION")
POSTGRES_MAJOR = "15"
POSTGRES_BIN_DIR = f"/usr/lib/postgresql/{POSTGRES_MAJOR}/bin"  # Debian's postgresql-<major>: the local target's
# The REST fixture's jar carries sqlite-jdbc only (iceberg build.gradle, testFixtures); the PostgreSQL driver goes
# on its classpath beside it: the newest pgjdbc on Maven Central (org.postgresql:postgresql maven-metadata.xml).
POSTGRESQL_JDBC = "42.7.14"

# Jar versions of the Fluss/Iceberg plumbing, from apache/fluss docs/quickstart/lakehouse.md and
# docker/quickstart-flink/prepare_build.sh at v0.9.1-incubating.
HADOOP_APACHE = "3.3.5-2"  # io.trino.hadoop:hadoop-apache, used by the quickstart for Iceberg on Flink
# FLUSS_HOME/lib logging, as fluss-dist assembles it (apache/fluss pom.xml: log4j.version, slf4j.version).
FLUSS_LOG4J = "2.25.4"
FLUSS_SLF4J = "1.7.36"
ZOOKEEPER_METRICS = "4.1.12.1"  # zookeeper parent pom 3.9.2: dropwizard.version
ZOOKEEPER_SNAPPY = "1.1.10.5"  # zookeeper parent pom 3.9.2: snappy.version
# zookeeper parent pom 3.9.2: jetty.version. zookeeper-prometheus-metrics serves /metrics with Jetty, which its pom
# marks provided (the binary distribution's lib/ has it).
ZOOKEEPER_JETTY = "9.4.53.v20231009"
# Metrics reporters, all of the same release as the software they run in: Fluss's own plugins/prometheus
# (fluss-dist plugins.xml: fluss-metrics-prometheus), ZooKeeper's PrometheusMetricsProvider
# (org.apache.zookeeper:zookeeper-prometheus-metrics, in its binary distribution's lib/). Flink ships
# plugins/metrics-prometheus in its distribution and image; Trino 476 serves /metrics itself (airlift openmetrics);
# MinIO serves /minio/v2/metrics/cluster.

# Kubernetes API version the manifests are validated against (kubernetes-validate 1.33.1 ships the 1.33 OpenAPI
# schemas) and the kube-apiserver the cluster tests build should match.
KUBERNETES = "1.33"
# The kubelet-less test cluster of tests/kubernetes (scripts/tools/kube.sh builds it from the Go module proxy):
# - kubernetes: newest 1.33 patch in `go list -m -versions k8s.io/kubernetes` (kube-apiserver, -controller-manager,
#   -scheduler; the staging modules k8s.io/api, client-go, ... are the matching v0.33.x);
# - etcd: the go.etcd.io/etcd/server/v3 that k8s.io/kubernetes' go.mod at that version requires (kube.sh checks);
# - kwok (stands in for the kubelet): the release built against Kubernetes 1.33 (sigs.k8s.io/kwok v0.7.0 go.mod:
#   k8s.io/client-go v0.33.0, pkg/consts KubeVersion 1.33.0; v0.8.0 moved to 0.36);
# - coredns (cluster DNS of the real single-node cluster of tests/kubelet, next to a kubelet and kube-proxy built from
#   the same k8s.io/kubernetes): the version kubeadm 1.33 deploys (cmd/kubeadm/app/constants CoreDNSVersion);
# - kube-router (only its NetworkPolicy firewall, the enforcer of the real node: the prod render's policies are proven
#   there): the one version the Go module proxy serves (`go list -m -versions github.com/cloudnativelabs/kube-router/v2`
#   lists only v2.1.0), with a security warning; why that does not matter for this test-only use: docs/kubernetes.md.
KUBE_TEST_CLUSTER = {"kubernetes": "v1.33.13", "etcd": "v3.5.21", "kwok": "v0.7.0", "coredns": "v1.12.0",
                     "kube-router": "v2.1.0"}

# The OCI registry the `build-images --push` test pushes to and pulls from (tests/compose/engine): CNCF Distribution,
# the registry Docker Hub and most self-hosted registries run, built from the Go module proxy (`go list -m -versions
# github.com/distribution/distribution/v3`: v3.1.2 the newest; its go.mod has no replace directives, so `go install`).
REGISTRY_TEST = "v3.1.2"

# Spark, the second engine on the Iceberg tables (`query NAME --engine spark`): pyspark from PyPI with Iceberg's Spark
# runtime from Maven Central. apache/iceberg at apache-iceberg-1.10.1 (the Iceberg the stack runs, ICEBERG above):
# gradle.properties knownSparkVersions=3.4,3.5,4.0 and defaultSparkVersions=4.0; gradle/libs.versions.toml
# spark40 = "4.0.0", the Spark its iceberg-spark-runtime-4.0_2.13 is built against; that runtime is Scala 2.13, as is
# pyspark 4.0 (Spark 4.0 dropped 2.12). Spark 4.0 runs on Java 17 or 21 (its documentation's Overview).
SPARK = "4.0.0"
SPARK_MINOR = "4.0"
SPARK_SCALA = "2.13"
SPARK_JAVA = (17, 21)

JAVA_FOR = {"default": 17, "trino": 24}  # minimum Java feature version per component (Trino 476 needs 24)

ALL = {
    "zookeeper": ZOOKEEPER,
    "fluss": FLUSS,
    "minio": MINIO,
    "python": PYTHON,
    "rest-catalog": ICEBERG,
    "flink": FLINK,
    "trino": TRINO,
    "prometheus": PROMETHEUS,
    "catalog-db": POSTGRES,
}
