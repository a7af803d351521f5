"""Images that carry the locked jars (``kubernetes.jars: baked``): no download when a pod starts.

Each upstream image whose pods need locked jars (Flink: the Fluss connector and the tiering job; Fluss: the Iceberg
extras; the REST catalog: the PostgreSQL driver, with ``catalog.database: postgresql``) gets an image ``FROM`` it
(images/jars/Dockerfile) with every jar at exactly the path where the ``fetch-jars`` init container puts it. Which
jars, where, and the image's name are derived here, once, from the stack the settings build: the render uses the
names, ``build-images`` builds (and pushes) exactly these. The tag is the upstream tag plus a digest of the base
reference, the Dockerfile and the jars' paths and sha256: a lock change, or another base, is another tag.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sagaz_lakehouse import artifacts
from sagaz_lakehouse.config import Images, Settings, image_reference
from sagaz_lakehouse.errors import ConfigError, EnvironmentProblem, LakehouseError, Problem
from sagaz_lakehouse.stack import Component, Stack

PACKAGE_DIR = Path(__file__).resolve().parents[2]
LABEL = "io.sagaz-lakehouse.jars.digest"
SUMS = "jars.sha256"
DEFAULT_DIRECTORY = "/artifacts"  # where a task reads jars whose Jars.directory is empty (layout.ARTIFACTS_DIR)


def dockerfile() -> Path:
    """images/jars/Dockerfile: inside the wheel (sagaz_lakehouse/images/jars) or at the repo root in a checkout."""
    for candidate in (PACKAGE_DIR / "images" / "jars", PACKAGE_DIR.parent / "images" / "jars"):
        if (candidate / "Dockerfile").is_file():
            return candidate / "Dockerfile"
    raise EnvironmentProblem("images/jars/Dockerfile not found", "reinstall sagaz-lakehouse (pip install .)")


def jar_path(directory: str, artifact: artifacts.Artifact) -> str:
    """Where a locked jar sits in the container: the same path for the fetch-jars init container's mount and for
    the image that carries it."""
    return f"{directory or DEFAULT_DIRECTORY}/{artifact.name}"


@dataclass(frozen=True)
class JarImage:
    field: str  # images.<field> is the base
    base: str
    files: tuple[tuple[str, artifacts.Artifact], ...]  # (path in the image, locked jar), by path
    digest: str
    reference: str


def _field_of(settings: Settings, image: str) -> str:
    return next(f.name for f in dataclasses.fields(Images) if getattr(settings.images, f.name) == image)


def jar_images(settings: Settings, components: tuple[Component, ...],
               lock: dict[str, list[artifacts.Artifact]]) -> dict[str, JarImage]:
    """The images carrying jars that these components need, by ``images.<field>`` of their base."""
    wanted: dict[str, dict[str, artifacts.Artifact]] = {}
    for component in components:
        for jars in component.jars:
            for item in artifacts.group(jars.group, lock):
                wanted.setdefault(_field_of(settings, component.image), {})[jar_path(jars.directory, item)] = item
    recipe = dockerfile().read_bytes()
    out = {}
    for field, by_path in sorted(wanted.items()):
        base = getattr(settings.images, field)
        files = tuple(sorted(by_path.items()))
        digest = hashlib.sha256(b"\0".join([base.encode(), recipe, *(f"{p} {a.sha256}".encode()
                                                                     for p, a in files)])).hexdigest()
        out[field] = JarImage(field, base, files, digest, reference(settings, field, base, digest))
    return out


def reference(settings: Settings, field: str, base: str, digest: str) -> str:
    """``<kubernetes.registry>/sagaz-lakehouse-<image>:<upstream tag>-<digest prefix>`` (a tag is at most 128
    characters; a base given by digest only has no upstream tag)."""
    tag = image_reference(base)[1]
    tag = f"{tag[:115]}-{digest[:12]}" if tag else digest[:12]
    name = f"sagaz-lakehouse-{field.replace('_', '-')}:{tag}"
    return f"{settings.kubernetes.registry}/{name}" if settings.kubernetes.registry else name


def baked(stack: Stack, lock: dict[str, list[artifacts.Artifact]]) -> Stack:
    """With ``kubernetes.jars: baked``, every component that needs jars runs the image carrying them and needs none
    fetched (so no init container, no emptyDir, no egress to the Maven repository); else the stack as it is."""
    if stack.settings.kubernetes.jars != "baked":
        return stack
    images = jar_images(stack.settings, stack.components, lock)
    components = tuple(
        dataclasses.replace(c, image=images[_field_of(stack.settings, c.image)].reference, jars=()) if c.jars else c
        for c in stack.components)
    return dataclasses.replace(stack, components=components)


# ---------------------------------------------------------------------------------------------- building


def engine_command() -> list[str]:
    """The docker CLI (the images are built with `docker build`, whose legacy builder needs no buildx)."""
    found = shutil.which("docker")
    if not found:
        raise EnvironmentProblem("docker is not on PATH: building the images carrying the jars needs a Docker "
                                 "Engine", "install Docker (or build images/jars/Dockerfile yourself, as the "
                                 "README's 'Air-gapped clusters' shows)")
    return [found]


def present(docker: list[str], ref: str) -> str:
    """The digest label of a local image, "" when there is none."""
    result = subprocess.run([*docker, "image", "inspect", "--format", f'{{{{index .Config.Labels "{LABEL}"}}}}',
                             ref], capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def build(image: JarImage, cache: Path, repository: str, docker: list[str],
          log: Callable[[str], None]) -> None:
    """The jars from the digest-checked cache (fetched into it from ``repository`` where missing), a context of
    them under their paths, `docker build` FROM the base."""
    paths = artifacts.fetch([a for _, a in image.files], cache, repository)
    with tempfile.TemporaryDirectory(prefix="sagaz-jars-") as tmp:
        context = Path(tmp)
        shutil.copy2(dockerfile(), context / "Dockerfile")
        for (inside, _), source in zip(image.files, paths, strict=True):
            target = context / "payload" / inside.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            target.chmod(0o644)
        (context / SUMS).write_text("".join(f"{a.sha256}  {inside}\n" for inside, a in image.files))
        env = dict(os.environ)
        if subprocess.run([*docker, "buildx", "version"], capture_output=True, check=False).returncode != 0:
            env.setdefault("DOCKER_BUILDKIT", "0")  # no buildx: the legacy builder
        result = subprocess.run([*docker, "build", "--build-arg", f"BASE={image.base}", "--label",
                                 f"{LABEL}={image.digest}", "-t", image.reference, str(context)],
                                capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise LakehouseError(f"building {image.reference} FROM {image.base} failed:\n"
                             f"{(result.stdout + result.stderr)[-3000:]}",
                             f"is {image.base} on this Docker Engine or pullable from where it runs?")
    log(f"{image.reference}: built FROM {image.base} with {len(image.files)} jar(s)")


def push(image: JarImage, docker: list[str]) -> None:
    result = subprocess.run([*docker, "push", image.reference], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LakehouseError(f"pushing {image.reference} failed:\n{(result.stdout + result.stderr)[-2000:]}",
                             "log in to the registry (docker login) and check kubernetes.registry")


def check_push(settings: Settings) -> None:
    if not settings.kubernetes.registry:
        raise ConfigError([Problem("kubernetes.registry", "--push needs a registry to push to",
                                   "set it, e.g. --set kubernetes.registry=registry.example.com/lakehouse")])
