#!/usr/bin/env python3
"""Resolve every artifact the stack needs into locks/artifacts.lock.json (development time only).

Groups of kind "jars" are exact files (shaded jars and archives). Groups of kind "tree" are resolved with Maven
(`mvn dependency:list` on a throwaway pom) into their full runtime classpath. Each file is then downloaded once
and hashed, so the lock holds sha256 digests (Maven Central publishes only sha1/md5). Run it again after
changing sagaz_lakehouse/versions.py; tests/unit/test_artifacts.py checks the lock matches the versions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sagaz_lakehouse import versions as v

FLUSS, ICEBERG, FLINK_MINOR = v.FLUSS.version, v.ICEBERG.version, v.FLINK_MINOR

# group -> (kind, coordinates); coordinates are group:artifact:version[:type[:classifier]].
GROUPS: dict[str, tuple[str, list[str]]] = {
    # Extra jars for /opt/fluss/plugins/iceberg (apache/fluss docs/quickstart/lakehouse.md, Iceberg tab).
    "fluss-iceberg-extras": ("jars", [
        f"org.apache.iceberg:iceberg-aws:{ICEBERG}",
        f"org.apache.iceberg:iceberg-aws-bundle:{ICEBERG}",
    ]),
    # Jars added to Flink's lib for the tiering job (apache/fluss docker/quickstart-flink/prepare_build.sh).
    "flink-lib-fluss": ("jars", [
        f"org.apache.fluss:fluss-flink-{FLINK_MINOR}:{FLUSS}",
        f"org.apache.fluss:fluss-fs-s3:{FLUSS}",
        f"org.apache.fluss:fluss-lake-iceberg:{FLUSS}",
        f"org.apache.iceberg:iceberg-flink-runtime-{FLINK_MINOR}:{ICEBERG}",
        f"io.trino.hadoop:hadoop-apache:{v.HADOOP_APACHE}",
        f"org.apache.iceberg:iceberg-aws:{ICEBERG}",
        f"org.apache.iceberg:iceberg-aws-bundle:{ICEBERG}",
    ]),
    "tiering-job": ("jars", [f"org.apache.fluss:fluss-flink-tiering:{FLUSS}"]),
    # ---- local target: the same components as native processes ----
    # ZooKeeper server with its runtime classpath, plus metrics-core and snappy-java, which its pom marks provided
    # and its binary distribution ships (versions: dropwizard.version, snappy.version in zookeeper's parent pom).
    # zookeeper-prometheus-metrics: the PrometheusMetricsProvider and its simpleclient jars, as the binary
    # distribution's lib/ has them.
    "zookeeper": ("tree", [f"org.apache.zookeeper:zookeeper:{v.ZOOKEEPER.version}",
                           f"org.apache.zookeeper:zookeeper-prometheus-metrics:{v.ZOOKEEPER.version}",
                           f"org.eclipse.jetty:jetty-server:{v.ZOOKEEPER_JETTY}",
                           f"org.eclipse.jetty:jetty-servlet:{v.ZOOKEEPER_JETTY}",
                           f"io.dropwizard.metrics:metrics-core:{v.ZOOKEEPER_METRICS}",
                           f"org.xerial.snappy:snappy-java:{v.ZOOKEEPER_SNAPPY}"]),
    # FLUSS_HOME/lib as fluss-dist assembles it (fluss-dist/src/main/assemblies/bin.xml): the shaded server jar
    # plus log4j2 (versions from apache/fluss pom.xml at the release tag).
    "fluss-lib": ("jars", [
        f"org.apache.fluss:fluss-server:{FLUSS}",
        f"org.slf4j:slf4j-api:{v.FLUSS_SLF4J}",
        *(f"org.apache.logging.log4j:{name}:{v.FLUSS_LOG4J}"
          for name in ("log4j-api", "log4j-core", "log4j-slf4j-impl", "log4j-1.2-api")),
    ]),
    # FLUSS_HOME/plugins/<name> (fluss-dist/src/main/assemblies/plugins.xml).
    "fluss-plugin-s3": ("jars", [f"org.apache.fluss:fluss-fs-s3:{FLUSS}"]),
    "fluss-plugin-iceberg": ("jars", [f"org.apache.fluss:fluss-lake-iceberg:{FLUSS}"]),
    # plugins/prometheus: the reporter, shaded with its Prometheus client (fluss-dist plugins.xml).
    "fluss-plugin-prometheus": ("jars", [f"org.apache.fluss:fluss-metrics-prometheus:{FLUSS}"]),
    # The Apache Iceberg REST fixture: a runnable jar (Main-Class RESTCatalogServer, sqlite-jdbc inside).
    "rest-catalog": ("jars", [f"org.apache.iceberg:iceberg-open-api:{ICEBERG}"]),
    # The PostgreSQL JDBC driver, on the fixture's classpath where the catalog keeps its tables in PostgreSQL (one
    # jar without dependencies: pgjdbc's pom has none at runtime).
    "postgresql-jdbc": ("jars", [f"org.postgresql:postgresql:{v.POSTGRESQL_JDBC}"]),
    # Trino: the core server and the Iceberg plugin (the full trino-server tarball carries every plugin).
    "trino": ("jars", [f"io.trino:trino-server-core:{v.TRINO.version}:tar.gz",
                       f"io.trino:trino-iceberg:{v.TRINO.version}:zip"]),
    # Flink's distribution is not on Maven Central; PyPI's apache-flink-libraries carries its lib/ and bin/.
    "flink-dist": ("pypi", [f"apache-flink-libraries=={v.FLINK.version}"]),
    # The SQL Gateway, which Flink's binary distribution ships in opt/ and the PyPI sdist lacks: one jar, shaded with
    # flink-sql-gateway-api and quartz (its pom); everything else it needs is in lib/.
    "flink-sql-gateway": ("jars", [f"org.apache.flink:flink-sql-gateway:{v.FLINK.version}"]),
    # Spark's Iceberg catalog, added to the session pyspark starts (`query --engine spark`): Iceberg's Spark runtime for
    # the pinned Spark line and Scala, of the Iceberg release the stack runs, and the AWS SDK bundle S3FileIO needs
    # (apache/iceberg docs/docs/spark-getting-started.md, docs/docs/aws.md).
    "spark-iceberg": ("jars", [
        f"org.apache.iceberg:iceberg-spark-runtime-{v.SPARK_MINOR}_{v.SPARK_SCALA}:{ICEBERG}",
        f"org.apache.iceberg:iceberg-aws-bundle:{ICEBERG}",
    ]),
}


def parse(coordinates: str) -> tuple[str, str, str, str, str]:
    parts = coordinates.split(":")
    group, artifact, version = parts[:3]
    kind = parts[3] if len(parts) > 3 else "jar"
    classifier = parts[4] if len(parts) > 4 else ""
    return group, artifact, version, kind, classifier


def repo_path(coordinates: str) -> str:
    group, artifact, version, kind, classifier = parse(coordinates)
    name = f"{artifact}-{version}" + (f"-{classifier}" if classifier else "") + f".{kind}"
    return f"{group.replace('.', '/')}/{artifact}/{version}/{name}"


def resolve_tree(coordinates: list[str]) -> list[str]:
    """Full runtime classpath of the given roots, via Maven."""
    deps = "".join(
        f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{ver}</version>"
        + (f"<type>{k}</type>" if k != "jar" else "") + (f"<classifier>{c}</classifier>" if c else "")
        + "</dependency>"
        for g, a, ver, k, c in map(parse, coordinates)
    )
    pom = ("<project><modelVersion>4.0.0</modelVersion><groupId>lock</groupId><artifactId>lock</artifactId>"
           f"<version>1</version><dependencies>{deps}</dependencies></project>")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "pom.xml").write_text(pom)
        out = Path(tmp) / "deps.txt"
        subprocess.run(["mvn", "-q", "-B", "dependency:list", "-DincludeScope=runtime", f"-DoutputFile={out}",
                        "-DoutputAbsoluteArtifactFilename=false", "-DexcludeTransitive=false"],
                       cwd=tmp, check=True)
        resolved = []
        for line in out.read_text().splitlines():
            line = line.strip().split(" -- ")[0]
            parts = line.split(":")
            if len(parts) < 5:
                continue
            group, artifact, kind = parts[0], parts[1], parts[2]
            classifier, version = (parts[3], parts[4]) if len(parts) >= 6 else ("", parts[3])
            resolved.append(f"{group}:{artifact}:{version}:{kind}" + (f":{classifier}" if classifier else ""))
        return sorted(set(resolved))


def describe_pypi(requirement: str) -> dict[str, object]:
    """The sdist of a pinned PyPI release, from the simple index (each link carries its sha256)."""
    name, version = requirement.split("==")
    with urllib.request.urlopen(f"https://pypi.org/simple/{name}/", timeout=60) as response:
        index = response.read().decode()
    filename = f"{name}-{version}.tar.gz"
    match = re.search(r'href="([^"#]*/' + re.escape(filename) + r')#sha256=([0-9a-f]{64})"', index)
    if not match:
        raise SystemExit(f"{filename} not found in the PyPI simple index")
    url, digest = match.groups()
    request = urllib.request.Request(url, method="HEAD")  # noqa: S310 - https from the index
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        size = int(response.headers["Content-Length"])
    return {"name": filename, "url": url, "sha256": digest, "size": size, "coordinates": f"pypi:{requirement}"}


def describe(coordinates: str, repository: str) -> dict[str, object]:
    path = repo_path(coordinates)
    digest, size = hashlib.sha256(), 0
    with urllib.request.urlopen(f"{repository}/{path}", timeout=120) as response:  # noqa: S310
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return {"name": path.rsplit("/", 1)[1], "path": path, "sha256": digest.hexdigest(), "size": size,
            "coordinates": coordinates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", default="https://repo1.maven.org/maven2")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "locks" /
                        "artifacts.lock.json")
    parser.add_argument("--only", nargs="*", help="re-lock only these groups, keep the others")
    args = parser.parse_args()
    existing = json.loads(args.out.read_text())["groups"] if args.out.exists() else {}
    groups = {}
    for name, (kind, roots) in GROUPS.items():
        if args.only and name not in args.only and name in existing:
            groups[name] = existing[name]
            continue
        print(f"{name}: resolving {kind}", file=sys.stderr)
        if kind == "pypi":
            groups[name] = [describe_pypi(r) for r in roots]
            continue
        coordinates = resolve_tree(roots) if kind == "tree" else roots
        groups[name] = [describe(c, args.repository) for c in coordinates]
    lock = {"generated_by": "scripts/lock_artifacts.py", "versions": {k: p.version for k, p in v.ALL.items()},
            "groups": groups}
    args.out.write_text(json.dumps(lock, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
