"""Each stand-in image keeps its upstream image's contract: the user, paths, tools, entrypoint and default command the
compose project (and anyone used to the upstream image) relies on. Sources: the header of each images/*/Dockerfile."""

from __future__ import annotations

import json

from conftest import must, run
from external_store import SeaweedContainer, assert_roles_and_sts_hold, external_settings
from support import free_ports

from sagaz_lakehouse import versions

PYTHON_IMAGE = versions.PYTHON.image


def image_config(image: str) -> dict:
    return json.loads(must(run(["docker", "image", "inspect", image]), f"docker image inspect {image}").stdout)[0][
        "Config"]


def inside(image: str, script: str, user: str | None = None) -> str:
    """Runs a shell script in a throwaway container of the image (entrypoint bypassed); returns its output."""
    args = ["docker", "run", "--rm", "--network", "none", "--entrypoint", "bash"]
    if user:
        args += ["--user", user]
    return must(run([*args, image, "-euo", "pipefail", "-c", script], timeout=120), f"{image}: {script}").stdout


def test_zookeeper(engine):
    image = versions.ZOOKEEPER.image
    cfg = image_config(image)
    assert cfg["Entrypoint"] == ["/docker-entrypoint.sh"] and cfg["Cmd"] == ["zkServer.sh", "start-foreground"]
    assert {"/data": {}, "/datalog": {}, "/logs": {}}.items() <= cfg["Volumes"].items()
    out = inside(image, 'id -u zookeeper; stat -c %U /data /datalog /conf /logs; command -v zkServer.sh gosu nc wget;'
                        ' echo "$ZOOCFGDIR"; zkServer.sh version')
    lines = out.split()
    assert lines[0] == "1000" and lines[1:5] == ["zookeeper"] * 4
    assert "/conf" in lines and "3.9.2" in out


def test_fluss(engine):
    image = versions.FLUSS.image
    cfg = image_config(image)
    assert cfg["Entrypoint"] == ["/docker-entrypoint.sh"] and cfg["Cmd"] == ["help"]
    assert not cfg.get("User"), "upstream has no USER line: the servers run as root unless told"
    out = inside(image, "id -u fluss; ls lib plugins/s3 plugins/iceberg plugins/prometheus;"
                        " grep -c bind.listeners conf/server.yaml;"
                        " command -v envsubst coordinator-server.sh tablet-server.sh; pwd")
    assert out.split()[0] == "9999"
    for jar in ("fluss-server-0.9.1-incubating.jar", "fluss-fs-s3-0.9.1-incubating.jar",
                "fluss-lake-iceberg-0.9.1-incubating.jar", "fluss-metrics-prometheus-0.9.1-incubating.jar"):
        assert jar in out
    assert out.rstrip().endswith("/opt/fluss")
    usage = must(run(["docker", "run", "--rm", "--network", "none", image]), "fluss help").stdout
    assert "coordinatorServer|tabletServer" in usage


def test_fluss_entrypoint_appends_the_properties_once_as_key_value_lines(engine):
    """What a server reads: the image's defaults, then FLUSS_PROPERTIES with ${VAR} expanded, each line a key-value
    pair by Fluss's own rule (`GlobalConfiguration.loadYAMLResource` splits at ': ' and warns "Line is not a
    key-value pair" otherwise). A `$NAME` in the stand-in's comments once pasted the properties into a comment."""
    properties = "zookeeper.address: zookeeper:2181\ns3.secret-key: ${S3_SECRET_KEY}\ntablet-server.id: 1\n"
    result = must(run(["docker", "run", "--rm", "--network", "none", "-e", f"FLUSS_PROPERTIES={properties}",
                       "-e", "S3_SECRET_KEY=expanded-secret", versions.FLUSS.image, "cat", "conf/server.yaml"]),
                  "fluss entrypoint")
    lines = [line.split("#", 1)[0].strip() for line in result.stdout.splitlines()]
    pairs = [line for line in lines if line]
    assert all(": " in line for line in pairs), [line for line in pairs if ": " not in line]
    assert pairs[-3:] == ["zookeeper.address: zookeeper:2181", "s3.secret-key: expanded-secret",
                          "tablet-server.id: 1"]
    assert pairs.count("zookeeper.address: zookeeper:2181") == 1
    assert not any(line.startswith("bind.listeners:") for line in pairs)


def test_flink(engine):
    image = versions.FLINK.image
    cfg = image_config(image)
    assert cfg["Entrypoint"] == ["/docker-entrypoint.sh"] and cfg["Cmd"] == ["help"]
    assert {"6123/tcp", "8081/tcp"} <= set(cfg["ExposedPorts"])
    out = inside(image, "id -u flink; command -v wget gosu envsubst; grep -A2 '^rest:' conf/config.yaml;"
                        " flink --version", user="flink")
    assert out.split()[0] == "9999"
    assert "bind-address: 0.0.0.0" in out and "address: 0.0.0.0" in out
    assert "Version: 1.20.3" in out


def test_trino(engine):
    image = versions.TRINO.image
    cfg = image_config(image)
    assert cfg["User"] == "trino:trino" and cfg["Cmd"] == ["/usr/lib/trino/bin/run-trino"]
    assert "/usr/lib/trino/bin/health-check" in " ".join(cfg["Healthcheck"]["Test"])
    out = inside(image, "id -u; ls /etc/trino; ls /usr/lib/trino/plugin/iceberg | wc -l; command -v curl python3;"
                        " java -XshowSettings:properties -version 2>&1 | grep java.specification.version")
    assert out.split()[0] == "1000"
    assert "jvm.config" in out and "config.properties" in out and "node.properties" in out
    java = int(out.rsplit("=", 1)[1].strip())
    assert java >= 24, f"Trino 476 needs Java 24+, image has {java}"
    # Upstream's default jvm.config loads the jvmkill agent from the image: a rendered jvm.config may too.
    agent = "/usr/lib/trino/bin/libjvmkill.so"
    out = inside(image, f"grep -c '^-agentpath:{agent}$' /etc/trino/jvm.config; java -agentpath:{agent} -version")
    assert out.split()[0] == "1"


def test_rest_catalog(engine):
    image = versions.ICEBERG.image
    cfg = image_config(image)
    assert cfg["User"] == "iceberg:iceberg" and cfg["WorkingDir"] == "/usr/lib/iceberg-rest"
    assert cfg["Cmd"] == ["java", "-jar", "iceberg-rest-adapter.jar"]
    assert "/v1/config" in " ".join(cfg["Healthcheck"]["Test"])
    assert "REST_PORT=8181" in cfg["Env"] and "CATALOG_CATALOG__IMPL=org.apache.iceberg.jdbc.JdbcCatalog" in cfg["Env"]
    out = inside(image, "id -u; stat -c %U \"$HOME\"; ls iceberg-rest-adapter.jar; command -v curl")
    assert out.split()[:2] == ["1000", "iceberg"]


def test_minio(engine):
    image = versions.MINIO.image
    cfg = image_config(image)
    assert cfg["Entrypoint"] == ["/usr/bin/docker-entrypoint.sh"] and cfg["Cmd"] == ["minio"]
    out = inside(image, "id -u; command -v curl minio; minio --version")
    assert out.split()[0] == "0" and "/usr/bin/minio" in out


def test_seaweedfs(engine, tmp_path):
    """The stand-in keeps upstream's contract, and a container of it started through its entrypoint serves the
    project's per-role policies and the STS role Fluss assumes, as the local binary does (tests/external_store.py)."""
    image = versions.SEAWEEDFS.image
    cfg = image_config(image)
    assert (cfg["Entrypoint"], cfg["Cmd"], cfg["WorkingDir"]) == (["/entrypoint.sh"], ["mini", "-dir=/data"], "/data")
    assert "/data" in cfg["Volumes"] and {"8333/tcp", "9333/tcp", "8888/tcp", "8080/tcp"} <= set(cfg["ExposedPorts"])
    out = inside(image, "id -u; stat -c %u:%g /data /etc/seaweedfs; command -v curl weed; weed version")
    assert out.split()[:3] == ["0", "1000:1000", "1000:1000"] and "/usr/bin/weed" in out and " 4.53 " in out
    store = SeaweedContainer(tmp_path, "127.0.0.1", free_ports(1, stride=2)[0])
    try:
        store.start()
        store.provision(external_settings(store))
        assert_roles_and_sts_hold(store)
        server = must(run(["docker", "exec", store.container, "stat", "-c", "%u", "/proc/1"]), "docker exec").stdout
        assert server.strip() == "1000"  # the entrypoint gave up root: weed (process 1) runs as seaweed
    finally:
        store.stop()


def test_python(engine):
    cfg = image_config(PYTHON_IMAGE)
    assert cfg["Cmd"] == ["python3"]
    out = inside(PYTHON_IMAGE, "command -v python python3 pip;"
                               " python -c 'import sys, ssl, sqlite3; print(sys.version)'")
    assert "/usr/local/bin/python" in out and out.strip().splitlines()[-1].startswith("3.11.")


def test_prometheus(engine):
    image = versions.PROMETHEUS.image
    cfg = image_config(image)
    assert cfg["Entrypoint"] == ["/bin/prometheus"]
    assert cfg["Cmd"] == ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
    assert cfg["User"] == "nobody" and cfg["WorkingDir"] == "/prometheus" and "/prometheus" in cfg["Volumes"]
    out = inside(image, "id -u; stat -c %U /prometheus /etc/prometheus; command -v wget promtool;"
                        " promtool check config /etc/prometheus/prometheus.yml")
    assert out.split()[:3] == ["65534", "nobody", "nobody"] and "/bin/promtool" in out and "SUCCESS" in out


def test_postgres(engine):
    """The catalog database's stand-in: the official image's contract (uid 999, SIGINT, PGDATA volume), and its
    entrypoint initialises a database with a password-only TCP login."""
    image = versions.POSTGRES.image
    cfg = image_config(image)
    assert cfg["Entrypoint"] == ["docker-entrypoint.sh"] and cfg["Cmd"] == ["postgres"]
    assert cfg["StopSignal"] == "SIGINT" and "/var/lib/postgresql/data" in cfg["Volumes"]
    out = inside(image, "id -u postgres; command -v pg_isready initdb postgres")
    # pg_isready: Debian's wrapper in /usr/bin comes first on PATH, as in the official image (PATH=$PATH:.../bin).
    assert out.split() == ["999", "/usr/bin/pg_isready", "/usr/lib/postgresql/15/bin/initdb",
                           "/usr/lib/postgresql/15/bin/postgres"], out
    # The password from a file (POSTGRES_PASSWORD_FILE), as sagaz-lakehouse gives it: a secret file.
    script = ("printf 's3cr3t-valu3\\n' > /tmp/pw; export POSTGRES_USER=u POSTGRES_DB=d POSTGRES_PASSWORD_FILE=/tmp/pw"
              " PGDATA=/tmp/pg;"
              " docker-entrypoint.sh postgres -c listen_addresses=127.0.0.1 >/tmp/log 2>&1 &"
              " for i in $(seq 60); do pg_isready -q -h 127.0.0.1 && break; sleep 0.5; done;"
              " psql -h 127.0.0.1 -U u -d d -Atc 'select current_database()'; tail -n 1 /tmp/pg/pg_hba.conf;"
              " grep -c s3cr3t-valu3 /tmp/log || true")
    out = inside(image, script, user="999")
    # Other hosts log in with the password (scram-sha-256), which appears in no log line.
    assert out.strip().splitlines()[-3:] == ["d", "host all all all scram-sha-256", "0"], out
