"""Rendering: settings + stack model + wiring → files, for one target.

Rendering is pure: it returns every file in memory first, so a failure leaves nothing half-written, and
``write_files`` then writes them all (secret-bearing files with mode 0600).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sagaz_lakehouse.config import Credentials, Settings
from sagaz_lakehouse.errors import UsageError

PACKAGE_DIR = Path(__file__).resolve().parent


def templates_dir() -> Path:
    """Templates ship inside the wheel (sagaz_lakehouse/templates) and live at the repo root in a checkout."""
    for candidate in (PACKAGE_DIR / "templates", PACKAGE_DIR.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise UsageError("templates folder not found", "reinstall sagaz-lakehouse (pip install .)")


@dataclass(frozen=True)
class RenderedFile:
    path: str  # relative to the output folder
    content: str
    secret: bool = False  # holds credentials: written with mode 0600


def environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["properties"] = java_properties
    env.filters["yaml_lines"] = yaml_lines
    env.filters["json"] = json.dumps
    return env


def java_properties(values: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


def yaml_lines(values: dict[str, str]) -> str:
    """Flat ``key: value`` lines as Fluss's server.yaml and Flink's config expect."""
    return "".join(f"{key}: {value}\n" for key, value in values.items())


def masked_log4j() -> str:
    """Console logging for Fluss (and Flink) on every target. Fluss 0.9 logs each configuration value at start-up,
    credentials included; this layout masks anything named like a secret."""
    return environment().get_template("common/log4j-console.properties.j2").render()


FLUSS_LOG4J_PATH = "/opt/fluss/conf/log4j-console.properties"  # what the image's start-foreground reads


def config_checksum(parts: list[str]) -> str:
    """A digest of rendered configuration; put in pod annotations so a config change rolls the pods."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
    return digest.hexdigest()[:16]


Renderer = Callable[[Settings, Credentials], list[RenderedFile]]


def renderers() -> dict[str, Renderer]:
    # Imported here so that `render --target X` loads only what X needs.
    from sagaz_lakehouse.targets import compose_files, kubernetes_files, local_files

    return {"compose": compose_files, "kubernetes": kubernetes_files, "local": local_files}


def render(settings: Settings, credentials: Credentials, target: str | None = None) -> list[RenderedFile]:
    target = target or settings.target
    table = renderers()
    if target not in table:
        raise UsageError(f"--target: unknown target '{target}'", f"use one of: {', '.join(table)}")
    return table[target](settings, credentials)


def write_files(files: list[RenderedFile], out_dir: Path) -> list[Path]:
    """Write all files; each lands atomically (temp file + rename) with 0600 where it holds secrets."""
    written = []
    for item in files:
        target = out_dir / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(item.content)
            os.chmod(tmp, 0o600 if item.secret else 0o644)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        written.append(target)
    return written
