"""Local target: the stack model as native processes on loopback, with their files under one run folder::

    config/<instance>/...   each instance's configuration files (those holding credentials are 0600)
    data/<instance>/...     its state: ZooKeeper, MinIO objects, the catalog database, Fluss logs and KV, scratch
    logs/<instance>.log     its stdout/stderr
    pids/<instance>.pid     pid files (see supervisor.py)

Every instance is a process of the component's :class:`~sagaz_lakehouse.stack.Native` recipe, configured for
``View.EXTERNAL`` (the user's host), with concrete folders in the run folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sagaz_lakehouse import addresses, identities
from sagaz_lakehouse.components import build_stack
from sagaz_lakehouse.config import Credentials, Settings
from sagaz_lakehouse.render import RenderedFile
from sagaz_lakehouse.stack import (
    Component,
    Health,
    Instance,
    NativeContext,
    Stack,
    View,
    concrete_instance,
    instance_index,
)
from sagaz_lakehouse.targets.local.supervisor import HealthProbe, ProcessSpec


@dataclass(frozen=True)
class Layout:
    run_dir: Path
    homes: Path  # where the installed distributions live (inside the download cache)

    def config(self, instance: str) -> Path:
        return self.run_dir / "config" / instance

    def data(self, instance: str) -> Path:
        return self.run_dir / "data" / instance


def default_layout(settings: Settings, base_dir: Path | None = None) -> Layout:
    from sagaz_lakehouse.artifacts import cache_dir

    run_dir = Path(settings.local.run_dir).expanduser()
    if not run_dir.is_absolute():
        run_dir = (base_dir or Path.cwd()) / run_dir
    return Layout(run_dir.resolve(), cache_dir(settings.local.cache_dir) / "homes")


def local_stack(settings: Settings) -> Stack:
    return build_stack(settings, View.EXTERNAL)


def instance(layout: Layout, component: Component, name: str) -> Instance:
    return concrete_instance(component, name, host=addresses.LOOPBACK, data=str(layout.data(name)),
                             conf=str(layout.config(name)))


def files(settings: Settings, credentials: Credentials, layout: Layout | None = None) -> list[RenderedFile]:
    """Every instance's files; credentials written into them (0600) since native processes read them as they are."""
    layout = layout or default_layout(settings)
    out = []
    for component, name in local_stack(settings).instances():
        for config in (f for f in component.setup(instance(layout, component, name)).files if f.native):
            out.append(RenderedFile(f"config/{name}/{config.name}", identities.substitute_secrets(config.content,
                                                                                             credentials),
                                    secret=config.secret or identities.holds_secret(config.content)))
    return out


ContextFor = Callable[[Component, str], NativeContext]
# The class-cache flags of an instance whose Native asks for one (class_cache.py), given its argv: from the driver,
# which knows the JDK and the installed software.
ClassCacheFor = Callable[[Component, str, list[str]], tuple[str, ...]]


def process_specs(stack: Stack, layout: Layout, credentials: Credentials, context: ContextFor,
                  class_cache: ClassCacheFor = lambda _c, _n, _a: ()) -> list[ProcessSpec]:
    """One supervised process per instance, in dependency order. A task whose result lives in another component
    (the tiering job inside the JobManager) makes that component's fingerprint depend on its arguments too."""
    specs: list[ProcessSpec] = []
    carried: dict[str, list[str]] = {}
    for component, name in stack.instances():
        at = instance(layout, component, name)
        native = component.setup(at).native
        process = native.command(context(component, name))
        if component.state_in:
            carried.setdefault(component.state_in, []).append(" ".join(process.argv))
        specs.append(ProcessSpec(
            name, process.argv, env={k: identities.substitute_secrets(v, credentials) for k, v in process.env.items()},
            cwd=layout.data(name), health=health_probe(stack, component, name), depends_on=_dependencies(stack,
                                                                                                       component),
            ports=tuple(component.host_ports(name).values()),
            one_shot=component.one_shot, timeout=component.start_seconds,
            secret_values=credentials.secret_values(), config=(layout.config(name),),
            launch_flags=class_cache(component, name, process.argv) if native.class_cache else ()))
    return [spec if spec.name not in carried else _with_config(spec, carried[spec.name]) for spec in specs]


def _with_config(spec: ProcessSpec, extra: list[str]) -> ProcessSpec:
    from dataclasses import replace

    return replace(spec, config=(*spec.config, *extra))


def _dependencies(stack: Stack, component: Component) -> tuple[str, ...]:
    return tuple(name for dependency, _ in component.depends_on for name in stack.get(dependency).instance_names())


def health_probe(stack: Stack, component: Component, name: str) -> HealthProbe | None:
    health: Health | None = component.health
    if health is None:
        return None
    owner = stack.get(health.via) if health.via else component
    port = owner.port(health.port).host_port(0 if health.via else instance_index(name))
    kind = {"zookeeper": "fourletter"}.get(health.kind, health.kind)
    path = "srvr" if health.kind == "zookeeper" else health.path
    expect = "Mode:" if health.kind == "zookeeper" else health.expect.replace("{instance}", name)
    return HealthProbe(kind, addresses.LOOPBACK, port, path, expect)
