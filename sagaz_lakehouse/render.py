"""Rendering helpers shared by the targets: files in memory, written all at once, secrets 0600.

Rendering is pure: a target returns every file in memory first, so a failure leaves nothing half-written, and
``write_files`` then writes them all (secret-bearing files with mode 0600).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from sagaz_lakehouse.errors import UsageError

PACKAGE_DIR = Path(__file__).resolve().parent


def templates_dir() -> Path:
    """Templates ship inside the wheel (sagaz_lakehouse/templates) and live at the repo root in a checkout."""
    for candidate in (PACKAGE_DIR / "templates", PACKAGE_DIR.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise UsageError("templates folder not found", "reinstall sagaz-lakehouse (pip install .)")


def inside_git_work_tree(path: Path) -> bool:
    """Whether ``path`` (existing or not) lies in a git work tree: files written there are one `git add` from a
    commit, so `render` puts placeholders there instead of credentials unless told otherwise."""
    resolved = path.resolve()
    return any((folder / ".git").exists() for folder in [resolved, *resolved.parents])


@dataclass(frozen=True)
class RenderedFile:
    path: str  # relative to the output folder
    content: str
    secret: bool = False  # holds credentials: written with mode 0600


@cache
def environment() -> Any:  # a jinja2.Environment; jinja2 is imported lazily
    import json

    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["json"] = json.dumps
    return env


@cache
def masked_log4j() -> str:
    """Console logging for Fluss (and Flink) on every target. Fluss 0.9 logs each configuration value at start-up,
    credentials included; this layout masks anything named like a secret."""
    return environment().get_template("common/log4j-console.properties.j2").render()


def to_yaml(document: object) -> str:
    """Block YAML in the document's own key order; multi-line strings (config files, scripts) as literal blocks;
    no anchors or aliases (a reader sees every value where it applies)."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: object) -> bool:
            return True

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    return yaml.dump(document, Dumper=Dumper, sort_keys=False, width=1000, default_flow_style=False)


def config_checksum(parts: list[str]) -> str:
    """A digest of rendered configuration; put in pod annotations so a config change rolls the pods."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def write_files(files: list[RenderedFile], out_dir: Path) -> list[Path]:
    """Write all files; each lands atomically (temp file + rename) with 0600 where it holds secrets. A folder that
    holds secret files only (compose's secrets/<instance>/, and the folders above it that hold nothing else) is
    made 0700: only the user enters it."""
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
    for folder in _secret_folders(files):
        os.chmod(out_dir / folder, 0o700)
    return written


def _secret_folders(files: list[RenderedFile]) -> list[str]:
    """Relative folders every rendered file below which is a secret (never the output folder itself)."""
    verdict: dict[str, bool] = {}
    for item in files:
        for parent in Path(item.path).parents:
            if str(parent) != ".":
                verdict[str(parent)] = verdict.get(str(parent), True) and item.secret
    return sorted(folder for folder, secret in verdict.items() if secret)
