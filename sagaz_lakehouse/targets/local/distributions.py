"""The local target's software: each distribution installed once into the cache from the locked, verified
downloads (Maven Central and PyPI), plus the MinIO server built from the Go module proxy.

A distribution's folder is named by a digest of the artifacts in it, assembled in a temporary folder and moved into
place only when complete, so an interrupted install never leaves a half-built home behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from sagaz_lakehouse import artifacts, render, versions
from sagaz_lakehouse.errors import EnvironmentProblem

Progress = Callable[[str], None]
MINIO_MODULE = "github.com/minio/minio"
PROMETHEUS_MODULE = "github.com/prometheus/prometheus"
PROMETHEUS_COMMANDS = ("prometheus", "promtool")  # cmd/<name> of that module; promtool checks and tests the rules
PROMETHEUS_BUILD_TAGS = "remove_all_sd"  # static scrape targets only: no service-discovery plugins
SEAWEEDFS_MODULE = "github.com/seaweedfs/seaweedfs"
SEAWEEDFS_MAIN = f"{SEAWEEDFS_MODULE}/weed"  # the one `weed` binary: master, volume, filer and S3 gateway
MODULE = "sagaz_lakehouse.targets.local.distributions"


class Installer:
    def __init__(self, cache: Path, repository: str, minio_binary: str, progress: Progress,
                 prometheus_binary: str = "") -> None:
        self.cache = cache
        self.homes = cache / "homes"
        self.repository = repository
        self.minio_setting = minio_binary
        self.prometheus_setting = prometheus_binary
        self.progress = progress

    # ------------------------------------------------------------------------------------------ checks

    def check_minio(self) -> None:
        """Before anything is downloaded: MinIO and Prometheus binaries exist, or Go is there to build them."""
        if self._minio_present() is None and not find_go():
            raise EnvironmentProblem(
                "no MinIO server binary found (local.minio_binary, PATH, or the cache) and no Go to build one",
                f"install Go (https://go.dev/dl/) and run the command again: it builds "
                f"{MINIO_MODULE}@{versions.MINIO.version} once (about 5 minutes); or put a `minio` binary on PATH, "
                "or set local.minio_binary")
        if self._prometheus_present() is None and not find_go():
            raise EnvironmentProblem(
                "no Prometheus binary in the cache and no Go to build one",
                f"install Go (https://go.dev/dl/) and run the command again: it builds "
                f"{PROMETHEUS_MODULE}/cmd/prometheus@{versions.PROMETHEUS.version} once; or run `make tools`, "
                "or set local.prometheus_binary")

    def built_later(self, distribution: str) -> bool:
        """Software that must be built and that ``up`` leaves to a background build (``background.py``):
        Prometheus, whose build takes minutes on 2 cores and which nothing in the data path waits for."""
        return distribution == "prometheus" and self._prometheus_present() is None

    def later_home(self, distribution: str) -> tuple[Path, list[str]]:
        """Where a software built later will be, and the command that builds it there."""
        assert distribution == "prometheus"
        return self._prometheus_cached(), [sys.executable, "-m", MODULE, "prometheus", str(self.cache / "bin")]

    def _minio_present(self) -> Path | None:
        configured = self.minio_setting
        if configured:
            path = Path(configured).expanduser()
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise EnvironmentProblem(f"local.minio_binary {path} is not an executable file",
                                         "point it at a MinIO server binary, or leave it empty to build one")
            return path
        cached = self._minio_cached()
        if cached.exists():
            return cached
        on_path = shutil.which("minio")
        return Path(on_path) if on_path else None

    def _minio_cached(self) -> Path:
        return minio_binary(self.cache)

    def _postgresql_present(self) -> Path:
        """Debian's PostgreSQL server programs (the catalog's database is never downloaded: the distribution's
        package gets its security updates)."""
        home = Path(versions.POSTGRES_BIN_DIR)
        if not (home / "postgres").is_file() or not (home / "initdb").is_file():
            raise EnvironmentProblem(f"PostgreSQL {versions.POSTGRES_MAJOR} is not installed ({home} has no "
                                     "postgres and initdb)",
                                     f"apt-get install postgresql-{versions.POSTGRES_MAJOR} (`make postgresql` in "
                                     "a clone), or set catalog.database: sqlite (dev only)")
        return home

    # ------------------------------------------------------------------------------------------ install

    def install(self, distribution: str, groups: tuple[str, ...] = (),
                tree: Mapping[str, tuple[str, ...]] | None = None) -> Path:
        """The home of ``distribution`` (a folder; for MinIO the server binary; for the tasks a folder with the
        jars of ``groups``). ``tree``: software that is only locked files, folder by folder (Native.tree)."""
        if tree:
            return self._install_tree(distribution, {folder: list(names) for folder, names in tree.items()})
        if distribution == "minio":
            return self._minio_present() or self._build_minio()
        if distribution == "prometheus":
            return self._prometheus_present() or self._build_prometheus()
        if distribution == "flink":
            return self._install_flink()
        if distribution == "trino":
            return self._install_trino()
        if distribution == "python":
            return self._install_tree("tasks", {".": list(groups)})
        if distribution == "postgresql":
            return self._postgresql_present()
        raise ValueError(f"{distribution}: no locked files (Native.tree) and no installation of its own")

    def _fetch(self, group: str) -> list[Path]:
        items = artifacts.group(group)
        missing = [a for a in items if not artifacts.cached_path(a, self.cache).exists()]
        if missing:
            total = sum(a.size for a in missing) / 1e6
            self.progress(f"downloading {group}: {len(missing)} file(s), {total:.0f} MB (verified, cached in "
                          f"{self.cache})")
        return artifacts.fetch(items, self.cache, self.repository, self._download_progress())

    def _download_progress(self) -> artifacts.Progress:
        last: dict[str, float] = {}

        def report(name: str, done: int, total: int) -> None:
            now = time.monotonic()
            if total < 10_000_000:  # small files finish at once; the group's line said they are coming
                return
            if done == total or now - last.get(name, 0) > 5:
                last[name] = now
                self.progress(f"  {name}: {done / 1e6:.0f}/{total / 1e6:.0f} MB")

        return report

    def _home_dir(self, name: str, groups: list[str]) -> Path:
        digest = render.config_checksum([a.sha256 for g in groups for a in artifacts.group(g)])
        return self.homes / f"{name}-{digest}"

    @contextmanager
    def _staging(self, home: Path) -> Iterator[Path]:
        """Build a home in a temp folder and move it into place only when complete."""
        home.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=home.parent, prefix=f".{home.name}-"))
        try:
            yield staging
            os.replace(staging, home)
        finally:
            if staging.exists():
                shutil.rmtree(staging)

    def _install_tree(self, name: str, layout: dict[str, list[str]]) -> Path:
        home = self._home_dir(name, [g for groups in layout.values() for g in groups])
        if home.exists():
            return home
        paths = {folder: [p for g in groups for p in self._fetch(g)] for folder, groups in layout.items()}
        with self._staging(home) as staging:
            for folder, files in paths.items():
                artifacts.materialize(files, staging / folder)
        return home

    def _install_flink(self) -> Path:
        groups = ["flink-dist", "flink-lib-fluss", "flink-sql-gateway"]
        home = self._home_dir("flink", groups)
        if home.exists():
            return home
        (sdist,) = self._fetch("flink-dist")
        extra = self._fetch("flink-lib-fluss")
        gateway = self._fetch("flink-sql-gateway")  # opt/, where Flink's binary distribution ships it
        self.progress("installing Flink (from the apache-flink-libraries sdist)")
        with self._staging(home) as staging, tarfile.open(sdist) as archive:
            for member in archive.getmembers():
                parts = Path(member.name).parts
                if len(parts) > 2 and parts[1] == "deps" and parts[2] in ("lib", "bin", "plugins", "opt"):
                    member.name = str(Path(*parts[2:]))
                    archive.extract(member, staging, filter="data")
            artifacts.materialize(extra, staging / "lib")
            artifacts.materialize(gateway, staging / "opt")
        return home

    def _install_trino(self) -> Path:
        home = self._home_dir("trino", ["trino"])
        if home.exists():
            return home
        core, plugin = self._fetch("trino")
        self.progress("installing Trino (server core + Iceberg plugin)")
        with self._staging(home) as staging:
            with tarfile.open(core) as archive:  # has hard links between entries: extract whole, then move
                archive.extractall(staging / "raw", filter="data")
            (top,) = (staging / "raw").iterdir()
            for folder in ("lib", "plugin"):
                os.replace(top / folder, staging / folder)
            shutil.rmtree(staging / "raw")
            with zipfile.ZipFile(plugin) as archive:
                for info in archive.infolist():
                    parts = Path(info.filename).parts
                    if len(parts) > 1 and not info.is_dir():
                        target_path = staging / "plugin" / "iceberg" / Path(*parts[1:])
                        target_path.parent.mkdir(parents=True, exist_ok=True)
                        target_path.write_bytes(archive.read(info))
        return home

    def _build_minio(self) -> Path:
        if not find_go():  # check_minio ran first; this is the race where Go vanished in between
            self.check_minio()
        self.progress(f"building MinIO {versions.MINIO.image.rsplit(':', 1)[1]} from the Go module proxy "
                      "(one time; about 4 minutes on 2 cores)")
        build_minio(self.cache / "bin")
        return self._minio_cached()

    def _prometheus_present(self) -> Path | None:
        if self.prometheus_setting:
            path = Path(self.prometheus_setting).expanduser()
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise EnvironmentProblem(f"local.prometheus_binary {path} is not an executable file",
                                         "point it at a Prometheus binary, or leave it empty to build one")
            return path
        if self._prometheus_cached().exists():
            return self._prometheus_cached()
        on_path = shutil.which("prometheus")
        return Path(on_path) if on_path else None

    def _prometheus_cached(self) -> Path:
        return prometheus_binary(self.cache, "prometheus")

    def _build_prometheus(self) -> Path:
        self.progress(f"building Prometheus {versions.PROMETHEUS.image.rsplit(':', 1)[1]} from the Go module proxy "
                      "(one time; several minutes on 2 cores)")
        build_prometheus(self.cache / "bin")
        return self._prometheus_cached()


GO_DEFAULT = "/usr/local/go/bin/go"  # where Go's own archive installs it (go.dev/doc/install), often not on PATH


def find_go() -> str | None:
    """The Go toolchain as scripts/tools/*.sh find it: $GO, then `go` on PATH, then Go's default install folder."""
    for candidate in (os.environ.get("GO", ""), shutil.which("go") or "", GO_DEFAULT):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def prometheus_binary(cache: Path, command: str) -> Path:
    """Where the cache keeps cmd/prometheus and cmd/promtool of the pinned module version."""
    return cache / "bin" / f"{command}-{versions.PROMETHEUS.version}"


# Without the symbol table and DWARF (-s -w) the link step does less: stack traces keep their function names.
SLIM_LDFLAGS = "-s -w"


def build_minio(bin_dir: Path) -> None:
    """``go install`` of the pinned MinIO server into ``bin_dir`` as minio-<module version> (scripts/tools/minio.sh
    calls this too)."""
    go = find_go()
    if not go:
        raise EnvironmentProblem("Go is needed to build MinIO", "install Go (https://go.dev/dl/), or set "
                                 "local.minio_binary")
    bin_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=bin_dir) as gobin:
        result = subprocess.run([str(go), "install", "-trimpath", f"-ldflags={SLIM_LDFLAGS}",
                                 f"{MINIO_MODULE}@{versions.MINIO.version}"],
                                env={**os.environ, "GOBIN": gobin, "GOFLAGS": "-mod=mod"},
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise EnvironmentProblem(f"building MinIO failed:\n{result.stderr[-2000:]}",
                                     "check Go and the module proxy, or set local.minio_binary")
        os.replace(Path(gobin) / "minio", minio_binary(bin_dir.parent))


def build_prometheus(bin_dir: Path) -> None:
    """``go install`` of cmd/prometheus and cmd/promtool at the pinned version into ``bin_dir`` (scripts/tools/
    prometheus.sh calls this too). The web UI's assets are not embedded (they are built with npm upstream); the API,
    the rules and the scrapes are all there. Built with upstream's ``remove_all_sd`` tag (the build constraint of
    every plugins/plugin_<name>.go): the stack scrapes static targets only, and leaving out the cloud and
    Kubernetes discovery SDKs roughly halves a cold build on 2 cores."""
    go = find_go()
    if not go:
        raise EnvironmentProblem("Go is needed to build Prometheus", "install Go (https://go.dev/dl/)")
    bin_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=bin_dir) as gobin:
        packages = [f"{PROMETHEUS_MODULE}/cmd/{c}@{versions.PROMETHEUS.version}" for c in PROMETHEUS_COMMANDS]
        result = subprocess.run([str(go), "install", "-trimpath", f"-ldflags={SLIM_LDFLAGS}", "-tags",
                                 PROMETHEUS_BUILD_TAGS, *packages],
                                env={**os.environ, "GOBIN": gobin, "GOFLAGS": "-mod=mod"},
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise EnvironmentProblem(f"building Prometheus failed:\n{result.stderr[-2000:]}",
                                     "check Go and the module proxy")
        for command in PROMETHEUS_COMMANDS:
            os.replace(Path(gobin) / command, bin_dir / f"{command}-{versions.PROMETHEUS.version}")


def minio_binary(cache: Path) -> Path:
    """Where the cache keeps the MinIO server of the pinned module version."""
    return cache / "bin" / f"minio-{versions.MINIO.version}"


def seaweedfs_binary(cache: Path) -> Path:
    """Where the cache keeps the ``weed`` binary of the pinned SeaweedFS module version."""
    return cache / "bin" / f"weed-{versions.SEAWEEDFS.version}"


def module_replaces(go_mod: str) -> list[str]:
    """The ``replace`` directives of a go.mod (single lines and blocks, comments dropped). ``go install mod@ver``
    refuses a module whose go.mod has any (golang/go#44840), so a wrapper module that requires it must repeat them
    to build the same dependency graph. A replacement by a local path cannot be repeated: refuse it."""
    blocks = re.findall(r"^replace\s*\((.*?)^\)", go_mod, flags=re.MULTILINE | re.DOTALL)
    lines = re.findall(r"^replace\s+([^(\s].*)$", go_mod, flags=re.MULTILINE)
    for block in blocks:
        lines += [line.split("//")[0].strip() for line in block.splitlines()]
    directives = [line.split("//")[0].strip() for line in lines if line.split("//")[0].strip()]
    local = [d for d in directives if re.search(r"=>\s*[./]", d)]
    if local:
        raise EnvironmentProblem(f"the module replaces by a local path, which no other module can repeat: {local}",
                                 "pin a version whose go.mod has no such replace")
    return [f"replace {d}" for d in directives]


def build_seaweedfs(bin_dir: Path) -> None:
    """The pinned SeaweedFS ``weed`` into ``bin_dir`` as weed-<module version> (scripts/tools/seaweedfs.sh calls
    this). Its go.mod has a ``replace``, so ``go install`` refuses it: a throwaway module requires the pin, repeats
    its replaces and builds the main package, as upstream's release build does (docker/Dockerfile.go_build:
    CGO_ENABLED=0, no build tags)."""
    go = find_go()
    if not go:
        raise EnvironmentProblem("Go is needed to build SeaweedFS", "install Go (https://go.dev/dl/)")
    module = f"{SEAWEEDFS_MODULE}@{versions.SEAWEEDFS.version}"
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    bin_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=bin_dir) as work:
        download = _go(go, ["mod", "download", "-json", module], work, env, "downloading SeaweedFS")
        go_mod = Path(json.loads(download)["GoMod"]).read_text()
        go_line = re.search(r"^go\s+(\S+)", go_mod, flags=re.MULTILINE)
        wrapper = [f"module sagaz-lakehouse/build-{SEAWEEDFS_MODULE.rsplit('/', 1)[1]}", "",
                   f"go {go_line.group(1) if go_line else '1.26'}", "",
                   f"require {SEAWEEDFS_MODULE} {versions.SEAWEEDFS.version}", "", *module_replaces(go_mod), ""]
        Path(work, "go.mod").write_text("\n".join(wrapper))
        _go(go, ["build", "-trimpath", f"-ldflags={SLIM_LDFLAGS}", "-o", "weed", SEAWEEDFS_MAIN], work, env,
            "building SeaweedFS")
        os.replace(Path(work) / "weed", seaweedfs_binary(bin_dir.parent))


def _go(go: str, args: list[str], cwd: str, env: Mapping[str, str], what: str) -> str:
    result = subprocess.run([go, *args], cwd=cwd, env=dict(env), capture_output=True, text=True)
    if result.returncode != 0:
        raise EnvironmentProblem(f"{what} failed:\n{result.stderr[-2000:]}", "check Go and the module proxy")
    return result.stdout


# Each Go build: its recipe and its pin (``main``, scripts/tools/*.sh, scripts/build-images.py).
GO_BUILDS: dict[str, tuple[Callable[[Path], None], versions.Pin]] = {
    "minio": (build_minio, versions.MINIO), "prometheus": (build_prometheus, versions.PROMETHEUS),
    "seaweedfs": (build_seaweedfs, versions.SEAWEEDFS)}


def built_binaries(name: str, bin_dir: Path) -> list[Path]:
    """The files a build of ``name`` leaves in ``bin_dir`` (<command>-<module version>)."""
    cache = bin_dir.parent
    if name == "prometheus":
        return [prometheus_binary(cache, command) for command in PROMETHEUS_COMMANDS]
    return [seaweedfs_binary(cache) if name == "seaweedfs" else minio_binary(cache)]


def main(argv: list[str]) -> int:
    """``python -m sagaz_lakehouse.targets.local.distributions [--if-missing] minio|prometheus|seaweedfs BIN_DIR``:
    one build, as ``up`` runs it (the background build of Prometheus) and scripts/tools/*.sh do (``--if-missing``:
    nothing to do when the binaries are there)."""
    if_missing = argv[:1] == ["--if-missing"]
    argv = argv[1:] if if_missing else argv
    if len(argv) != 2 or argv[0] not in GO_BUILDS:
        print(f"usage: python -m {MODULE} [--if-missing] {'|'.join(GO_BUILDS)} BIN_DIR", file=sys.stderr)
        return 2
    name, bin_dir = argv[0], Path(argv[1])
    if if_missing and all(path.exists() for path in built_binaries(name, bin_dir)):
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `down` stops it: remove the half-built folder
    build, pinned = GO_BUILDS[name]
    print(f"building {name} {pinned.version} from the Go module proxy (one time) ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        build(bin_dir)
    except EnvironmentProblem as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"built {name} {pinned.version} in {time.monotonic() - started:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
