"""Local target rendering: the same wiring as the container targets, laid out as native config files.

Everything lives under one run folder::

    config/<component>/...   rendered configuration (files with credentials are 0600)
    data/<component>/...     state: ZooKeeper, MinIO objects, the catalog database, Fluss logs and KV
    logs/<component>.log     stdout/stderr of each process
    pids/<component>.pid     pid files (see supervisor.py)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sagaz_lakehouse import render, wiring
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.config import Credentials, Settings, mebibytes
from sagaz_lakehouse.render import RenderedFile


@dataclass(frozen=True)
class Layout:
    run_dir: Path
    homes: Path  # where the installed distributions live (inside the download cache)

    @property
    def config_dir(self) -> Path:
        return self.run_dir / "config"

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    def home(self, name: str) -> Path:
        return self.homes / name


def default_layout(settings: Settings, base_dir: Path | None = None) -> Layout:
    from sagaz_lakehouse.artifacts import cache_dir

    run_dir = Path(settings.local.run_dir).expanduser()
    if not run_dir.is_absolute():
        run_dir = (base_dir or Path.cwd()) / run_dir
    return Layout(run_dir.resolve(), cache_dir(settings.local.cache_dir) / "homes")


def tablet_name(index: int) -> str:
    return f"{s.TABLET}-{index}"


def taskmanager_name(index: int) -> str:
    return f"{s.TASKMANAGER}-{index}"


def files(settings: Settings, credentials: Credentials, layout: Layout | None = None) -> list[RenderedFile]:
    layout = layout or default_layout(settings)
    env = render.environment()
    values = {
        "settings": settings,
        "data_dir": layout.data_dir,
        "config_dir": layout.config_dir,
        "trino_heap": f"{mebibytes(settings.memory.trino)}m",
        "flink_jobmanager_memory": f"{mebibytes(settings.memory.flink_jobmanager)}m",
        "flink_taskmanager_memory": f"{mebibytes(settings.memory.flink_taskmanager)}m",
    }

    def template(name: str) -> str:
        return env.get_template(name).render(**values)

    def secret_file(path: str, content: str) -> RenderedFile:
        has_secret = wiring.holds_secret(content)
        return RenderedFile(path, wiring.substitute_secrets(content, credentials), secret=has_secret)

    log4j = render.masked_log4j()
    out = [
        RenderedFile("config/zookeeper/zoo.cfg", template("local/zoo.cfg.j2")),
        RenderedFile("config/zookeeper/logback.xml", template("local/logback.xml.j2")),
        secret_file(f"config/{s.COORDINATOR}/server.yaml",
                    render.yaml_lines(wiring.fluss_coordinator_properties(settings))),
        RenderedFile(f"config/{s.COORDINATOR}/log4j-console.properties", log4j),
        secret_file("config/minio/minio.env", _env_file(wiring.minio_environment())),
        secret_file(f"config/{s.REST_CATALOG}/catalog.env", _env_file(
            wiring.rest_catalog_environment(settings, str(layout.data_dir / s.REST_CATALOG)))),
        RenderedFile("config/flink/config.yaml", template("local/flink-config.yaml.j2")),
        RenderedFile("config/flink/log4j-console.properties", log4j),
        secret_file("config/flink/taskmanager.env", _env_file(wiring.aws_environment(settings))),
        RenderedFile("config/trino/config.properties", template("local/trino-config.properties.j2")),
        RenderedFile("config/trino/jvm.config", template("local/trino-jvm.config.j2")),
        RenderedFile("config/trino/node.properties", template("local/trino-node.properties.j2")),
        RenderedFile("config/trino/log.properties", "io.trino=INFO\n"),
        secret_file("config/trino/catalog/iceberg.properties",
                    render.java_properties(wiring.trino_iceberg_catalog(settings))),
    ]
    for index in range(settings.replicas.tablet_servers):
        properties = wiring.fluss_tablet_properties(settings, index)
        properties["data.dir"] = str(layout.data_dir / tablet_name(index))
        out.append(secret_file(f"config/{tablet_name(index)}/server.yaml", render.yaml_lines(properties)))
        out.append(RenderedFile(f"config/{tablet_name(index)}/log4j-console.properties", log4j))
    return out


def _env_file(values: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}
