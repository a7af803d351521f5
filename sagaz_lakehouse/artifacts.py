"""Locked artifacts: exact files, exact digests, downloaded once into a cache and verified every time.

``locks/artifacts.lock.json`` is written at development time by ``scripts/lock_artifacts.py`` (which asks Maven to
resolve the dependency trees). At run time nothing is resolved: each group lists the files it needs, with the
repository-relative path (or full URL, for files that come from PyPI) and the sha256 digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from sagaz_lakehouse.errors import LakehouseError, UsageError

LOCK_FILE = next((p for p in (Path(__file__).resolve().parent / "locks" / "artifacts.lock.json",
                  Path(__file__).resolve().parent.parent / "locks" / "artifacts.lock.json") if p.exists()),
                 Path(__file__).resolve().parent.parent / "locks" / "artifacts.lock.json")
DEFAULT_REPOSITORY = "https://repo1.maven.org/maven2"
CHUNK = 1 << 20

Progress = Callable[[str, int, int], None]  # (file name, bytes so far, total bytes or 0)


@dataclass(frozen=True)
class Artifact:
    name: str  # file name on disk
    sha256: str
    size: int
    path: str = ""  # repository-relative path (Maven), or
    url: str = ""  # an absolute URL (PyPI files)
    coordinates: str = ""  # group:artifact:version[:classifier]@type, for humans

    def source(self, repository: str) -> str:
        return self.url or f"{repository.rstrip('/')}/{self.path}"


class DigestMismatch(LakehouseError):
    def __init__(self, artifact: Artifact, actual: str, source: str) -> None:
        super().__init__(
            f"{artifact.name}: sha256 {actual} does not match the locked {artifact.sha256} (from {source}); "
            "the download was discarded",
            "retry; if it persists, the mirror serves a different file: check local.maven_repository",
        )


class DownloadFailed(LakehouseError):
    pass


def load_lock(path: Path = LOCK_FILE) -> dict[str, list[Artifact]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise UsageError(f"artifact lock {path} is missing", "run `python scripts/lock_artifacts.py`") from exc
    return {group: [Artifact(**entry) for entry in entries] for group, entries in data["groups"].items()}


def group(name: str, lock: dict[str, list[Artifact]] | None = None) -> list[Artifact]:
    lock = lock if lock is not None else load_lock()
    if name not in lock:
        raise UsageError(f"artifact group '{name}' is not in the lock", "regenerate it with scripts/lock_artifacts.py")
    return lock[name]


def cache_dir(configured: str) -> Path:
    return Path(os.path.expanduser(configured)).resolve()


def cached_path(artifact: Artifact, cache: Path) -> Path:
    # Content-addressed: two versions of a file never collide, and a digest names exactly one file.
    return cache / "artifacts" / artifact.sha256[:2] / artifact.sha256 / artifact.name


def fetch(artifacts: Iterable[Artifact], cache: Path, repository: str = DEFAULT_REPOSITORY,
          progress: Progress | None = None) -> list[Path]:
    """Ensure every artifact is in the cache with the locked digest; returns their paths, in order."""
    return [_fetch_one(a, cache, repository, progress) for a in artifacts]


def _fetch_one(artifact: Artifact, cache: Path, repository: str, progress: Progress | None) -> Path:
    target = cached_path(artifact, cache)
    if target.exists():
        return target  # verified when it was stored; the name is its digest
    target.parent.mkdir(parents=True, exist_ok=True)
    source = artifact.source(repository)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, _open(source) as response:
            total = int(response.headers.get("Content-Length") or artifact.size or 0)
            done = 0
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(artifact.name, done, total)
        if digest.hexdigest() != artifact.sha256:
            raise DigestMismatch(artifact, digest.hexdigest(), source)
        os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; containers (other uids) read these through mounts
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def _open(url: str):
    try:
        return urllib.request.urlopen(url, timeout=60)  # noqa: S310 - http(s) URLs from the lock or the config
    except urllib.error.HTTPError as exc:
        raise DownloadFailed(f"download failed: {url}: HTTP {exc.code}",
                             "check local.maven_repository (a mirror must carry the same paths)") from exc
    except (urllib.error.URLError, TimeoutError) as exc:
        raise DownloadFailed(f"download failed: {url}: {getattr(exc, 'reason', exc)}",
                             "check the network or point local.maven_repository at a reachable mirror") from exc


def materialize(paths: Iterable[Path], directory: Path) -> None:
    """Place cached files into ``directory`` (hard links where possible, copies across file systems).

    Whatever already sits at a target and is not that file is replaced: a container engine asked to mount a
    missing file may have created an empty directory there, and a partial copy must not pass for the jar."""
    directory.mkdir(parents=True, exist_ok=True)
    for source in paths:
        target = directory / source.name
        if target.is_file() and not target.is_symlink() and (
                target.samefile(source) or target.stat().st_size == source.stat().st_size):
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
