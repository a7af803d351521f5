"""The stack model: every component described once and consistently, whatever the target.

These checks run over every component of several settings variants, so a new component is held to them by
being added to ``components.REGISTRY``.
"""

from __future__ import annotations

import dataclasses

import pytest

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import addresses, config
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components import build_stack
from sagaz_lakehouse.security import trino_auth_on
from sagaz_lakehouse.stack import Condition, View, concrete_instance

VARIANTS = {
    "dev": {},
    "scaled": {"replicas.tablet_servers": "3", "replicas.flink_taskmanagers": "2", "replicas.trino_workers": "2"},
    "prod": {"profile": "prod"},
}


@pytest.fixture(params=[(v, view) for v in VARIANTS for view in View], ids=lambda p: f"{p[0]}-{p[1].value}")
def stack(request):
    name, view = request.param
    target = {"target": "local" if view is View.EXTERNAL else "compose"}  # the view a target's processes have
    return build_stack(lakehouse.load_settings(None, {**VARIANTS[name], **target}, environ={}), view)


def instance_of(component: s.Component, name: str) -> s.Instance:
    return concrete_instance(component, name, host="h", data=component.data_dir or "/d", conf="/c")


def test_dependencies_exist_and_come_first(stack):
    seen: set[str] = set()
    for component in stack.components:
        for dependency, condition in component.depends_on:
            assert dependency in seen, f"{component.name} depends on {dependency}, which is not before it"
            needed = stack.get(dependency)
            assert (condition is Condition.COMPLETED) == needed.one_shot, (component.name, dependency)
        seen.add(component.name)


def test_health_checks_name_real_ports(stack):
    for component in stack.components:
        if component.one_shot:
            assert component.health is None, component.name
            continue
        health = component.health
        assert health is not None, f"{component.name} has no health check"
        owner = stack.get(health.via) if health.via else component
        owner.port(health.port)  # raises if the port does not exist
        assert health.kind in ("http", "tcp", "zookeeper", "postgres")


def test_instance_names_are_the_same_scheme_everywhere(stack):
    settings = stack.settings
    names = [name for _, name in stack.instances()]
    assert len(names) == len(set(names))
    tablets = [n for n in names if n.startswith(s.TABLET)]
    assert tablets == [f"{s.TABLET}-{i}" for i in range(settings.replicas.tablet_servers)]
    assert [n for n in names if n.startswith(s.TASKMANAGER)] == [
        f"{s.TASKMANAGER}-{i}" for i in range(settings.replicas.flink_taskmanagers)]
    assert s.instance_index(f"{s.TABLET}-2") == 2
    for component in stack.components:
        for name in component.instance_names():
            assert stack.resolve(name) == [(component, name)]
        assert [n for _, n in stack.resolve(component.name)] == component.instance_names()
    with pytest.raises(KeyError):
        stack.resolve("no-such-component")


def test_every_instance_has_a_container_and_a_native_recipe(stack):
    for component, name in stack.instances():
        setup = component.setup(instance_of(component, name))
        assert setup.container.user > 0, f"{component.name} would run as root"
        assert setup.native.distribution, component.name
        if not component.one_shot:
            assert setup.container.probe_tool in ("curl", "wget", "bash", "python3"), component.name
        for file in setup.files:
            assert not file.mount or file.mount.startswith("/"), file
        if component.stateful:
            assert component.data_dir.startswith("/") and component.volume_size


def test_host_ports_are_distinct_and_come_from_the_settings(stack):
    settings = stack.settings
    seen: dict[int, str] = {}
    for component, name in stack.instances():
        for port in component.ports:
            if not port.host:
                continue
            number = port.host_port(s.instance_index(name))
            assert number not in seen, f"{name} and {seen.get(number)} both use host port {number}"
            seen[number] = name
    # Every port setting on the host, tablet servers and TaskManagers fanning out; the INTERNAL listener stays
    # inside containers, only a Trino that takes logins (prod) listens on trino_https, and the SQL Gateway runs
    # where the settings ask for it (off in prod).
    fan_out = {"fluss_tablet": settings.replicas.tablet_servers,
               "fluss_tablet_metrics": settings.replicas.tablet_servers,
               "flink_taskmanager_metrics": settings.replicas.flink_taskmanagers}
    unused = {"fluss_internal"} | (set() if trino_auth_on(settings) else {"trino_https"})
    unused |= set() if settings.sql_gateway else {"flink_sql_gateway"}
    unused |= set() if settings.catalog_database == "postgresql" else {"catalog_db"}  # the bundled catalog's database
    expected = {getattr(settings.ports, f.name) + i for f in dataclasses.fields(config.Ports) if f.name not in unused
                for i in range(fan_out.get(f.name, 1))}
    assert set(seen) == expected
    assert {entry.number for entry in stack.host_ports()} == expected  # the model's own list says the same


def test_addresses_depend_on_the_view_only():
    """The same settings give in-network names for INTERNAL and loopback for EXTERNAL, whatever the target."""
    for target in lakehouse.TARGET_NAMES:
        settings = lakehouse.load_settings(None, {"target": target}, environ={})
        assert addresses.endpoints(settings, View.INTERNAL).s3 == f"http://{s.MINIO}:{settings.ports.minio}"
        assert addresses.endpoints(settings, View.EXTERNAL).s3 == f"http://127.0.0.1:{settings.ports.minio}"
        coordinator = build_stack(settings, View.INTERNAL).get(s.COORDINATOR)
        env = coordinator.setup(instance_of(coordinator, s.COORDINATOR)).container.env
        assert f"zookeeper.address: {s.ZOOKEEPER}:" in env["FLUSS_PROPERTIES"]


def test_profiles_differ_only_through_the_profile_table():
    from sagaz_lakehouse import profiles

    for name, row in profiles.PROFILES.items():
        settings = lakehouse.load_settings(None, {"profile": name}, environ={})
        assert settings.freshness == row.freshness and settings.tiering_poll == row.tiering_poll
        coordinator = build_stack(settings, View.INTERNAL).get(s.COORDINATOR)
        env = coordinator.setup(instance_of(coordinator, s.COORDINATOR)).container.env
        assert f"kv.snapshot.interval: {row.kv_snapshot_interval}" in env["FLUSS_PROPERTIES"]
    explicit = lakehouse.load_settings(None, {"profile": "prod", "lake.freshness": "1min"}, environ={})
    assert explicit.freshness == "1min"


def test_no_component_carries_a_credential_value():
    """Components hold placeholders only; each target decides how the values reach the process."""
    creds = config.DEV_CREDENTIALS
    for view in View:
        stack = build_stack(lakehouse.load_settings(None, {}, environ={}), view)
        for component, name in stack.instances():
            setup = component.setup(instance_of(component, name))
            text = repr(setup.container) + "".join(f.content for f in setup.files)
            assert creds.secret_key not in text and creds.access_key not in text, component.name


@pytest.mark.parametrize("view", list(View))
def test_sql_gateway_reaches_the_cluster_and_fluss_as_its_view_sees_them(view, tmp_path):
    from pathlib import Path

    from sagaz_lakehouse.components import flink

    settings = lakehouse.load_settings(None, {"ports.flink_sql_gateway": "18083"}, environ={})
    stack = build_stack(settings, view)
    gateway = stack.get(s.FLINK_SQL_GATEWAY)
    assert gateway.port("rest").container == gateway.port("rest").host == 18083
    assert gateway.health == s.Health("http", "rest", "/v1/info")
    assert gateway.depends_on == ((s.JOBMANAGER, Condition.HEALTHY),)
    setup = gateway.setup(instance_of(gateway, s.FLINK_SQL_GATEWAY))
    (config_yaml,) = [f for f in setup.files if f.name == "config.yaml"]
    props = dict(line.split(": ", 1) for line in config_yaml.content.splitlines() if not line.startswith("#"))
    cluster = "127.0.0.1" if view is View.EXTERNAL else s.JOBMANAGER
    assert (props["rest.address"], props["rest.port"]) == (cluster, str(settings.ports.flink_rest))
    assert props["sql-gateway.endpoint.rest.port"] == "18083"
    assert props[flink.FLUSS_BOOTSTRAP_PROPERTY] == addresses.endpoints(settings, view).fluss_bootstrap
    # the image's script (not its entrypoint), reading config.yaml mounted over the image's conf/
    assert (setup.container.entrypoint, setup.container.args) == (("/opt/flink/bin/sql-gateway.sh",),
                                                                  ("start-foreground",))
    assert config_yaml.mount == "/opt/flink/conf/config.yaml"
    ctx = s.NativeContext(Path("/java"), tmp_path, "-Dsagaz.run-dir=x", tmp_path / "log")
    process = setup.native.command(ctx)
    classpath = process.argv[process.argv.index("-cp") + 1]
    assert classpath.endswith(f"/{flink.gateway_jar()}") and process.argv[-1] == flink.MAIN_CLASS[s.FLINK_SQL_GATEWAY]
    assert process.env == {"FLINK_CONF_DIR": "/c"}


@pytest.mark.parametrize("target", ["local", "compose", "kubernetes"])
def test_prod_leaves_the_unauthenticated_sql_gateway_out_unless_asked_for(target):
    """The SQL Gateway has no authentication and holds the Fluss login: prod runs it only when asked for
    (analytics.sql_gateway), dev unless told not to."""
    from sagaz_lakehouse.targets.base import get_target

    def names(**overrides: str) -> list[str]:
        settings = lakehouse.load_settings(None, {"target": target, **overrides}, environ={})
        return get_target(target).stack(settings).names

    assert s.FLINK_SQL_GATEWAY in names()
    assert s.FLINK_SQL_GATEWAY not in names(profile="prod")
    assert s.FLINK_SQL_GATEWAY in names(profile="prod", **{"analytics.sql_gateway": "on"})
    assert s.FLINK_SQL_GATEWAY not in names(**{"analytics.sql_gateway": "off"})


def test_stop_waves_stop_each_component_after_everything_that_depends_on_it(stack):
    """`down` stops in these waves: a component goes only after its dependants, so (for one) the Fluss servers
    close their ZooKeeper sessions while ZooKeeper still runs."""
    waves = stack.stop_waves()
    wave_of = {name: i for i, wave in enumerate(waves) for name in wave}
    assert sorted(wave_of) == sorted(stack.names) and sum(map(len, waves)) == len(stack.names)
    for component in stack.components:
        for dependency, _ in component.depends_on:
            assert wave_of[component.name] < wave_of[dependency], (component.name, dependency, waves)
    assert wave_of[s.TABLET] < wave_of[s.COORDINATOR] < wave_of[s.ZOOKEEPER]
