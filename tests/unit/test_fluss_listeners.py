"""Every Fluss server's listeners, bound and advertised, take distinct ports on every target (issue 22).

Fluss refuses a server whose listeners share a port: ``Endpoint.fromListenersString`` requires distinct ports when
the coordinator decodes a tablet server's registration (advertised listeners, each bind listener replaced by the
advertised one of its name: ``Endpoint.loadAdvertisedEndpoints``, apache/fluss v0.9.1-incubating). With the
defaults, tablet 1 once advertised CLIENT on 9125, the INTERNAL port, and never joined the cluster. These tests
apply the same rule to the rendered configuration of every target, for the defaults and for 1 to 8 tablet servers.
"""

from __future__ import annotations

import re

import pytest

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import addresses, config
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components import build_stack
from sagaz_lakehouse.errors import ConfigError
from sagaz_lakehouse.stack import View
from sagaz_lakehouse.targets.compose import layout as compose
from sagaz_lakehouse.targets.kubernetes import layout as kubernetes
from sagaz_lakehouse.targets.local import layout as local

LISTENER = re.compile(r"^\s*([A-Z_]+)://(.+):(\d+)\s*$")


def parse(listeners: str) -> dict[str, int]:
    found = [LISTENER.match(item) for item in listeners.split(",") if item.strip()]
    assert all(found), listeners
    names = [m.group(1) for m in found if m]
    assert len(names) == len(set(names)), f"a listener name repeats: {listeners}"
    return {m.group(1): int(m.group(3)) for m in found if m}


def assert_distinct_ports(instance: str, props: dict[str, str]) -> None:
    """Fluss's rule on one server's configuration, for what it binds and for what it registers."""
    bound = parse(props["bind.listeners"])
    advertised = {**bound, **parse(props.get("advertised.listeners", ""))}
    for what, ports in (("bound", bound), ("advertised", advertised)):
        values = [port for port in ports.values() if port]
        assert len(values) == len(set(values)), f"{instance}: two {what} listeners share a port: {ports}"
    metrics = int(props["metrics.reporter.prometheus.port"])
    assert metrics not in bound.values(), f"{instance}: the metrics reporter takes a listener's port"


def yaml_properties(text: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in text.splitlines() if line.strip())


def local_properties(settings: config.Settings) -> dict[str, dict[str, str]]:
    layout = local.Layout(local.Path("/run"), local.Path("/homes"))
    stack = local.local_stack(settings)
    return {name: yaml_properties(component.setup(local.instance(layout, component, name)).files[0].content)
            for component, name in stack.instances() if component.software == "fluss"}


def compose_properties(settings: config.Settings) -> dict[str, dict[str, str]]:
    services = compose.project(build_stack(settings, View.INTERNAL))["services"]
    return {name: yaml_properties(svc["environment"]["FLUSS_PROPERTIES"].replace("$$", "$"))
            for name, svc in services.items() if "FLUSS_PROPERTIES" in svc.get("environment", {})}


def kubernetes_properties(settings: config.Settings) -> dict[str, dict[str, str]]:
    """Each pod's properties as its prelude resolves them (kubernetes.instance_prelude): the ordinal from the pod
    name, a per-instance port as its base plus the ordinal."""
    out = {}
    for manifest in kubernetes.manifests(settings, config.PLACEHOLDER_CREDENTIALS):
        for obj in manifest.objects:
            if obj["kind"] != "StatefulSet" or obj["metadata"]["name"] not in (s.COORDINATOR, s.TABLET):
                continue
            container = obj["spec"]["template"]["spec"]["containers"][0]
            text = next(e["value"] for e in container["env"] if e["name"] == "FLUSS_PROPERTIES")
            component = build_stack(settings, View.INTERNAL).get(obj["metadata"]["name"])
            for ordinal in range(obj["spec"]["replicas"]):
                pod = f"{component.name}-{ordinal}"
                values = {"INSTANCE_NAME": pod, "INSTANCE_INDEX": str(ordinal), "INSTANCE_HOST": f"10.0.0.{ordinal}"}
                values |= {f"INSTANCE_PORT_{p.name.upper()}": str(p.host + ordinal)
                           for p in component.ports if p.per_instance}
                resolved = text
                for token, value in values.items():
                    resolved = resolved.replace("${" + token + "}", value)
                assert "${INSTANCE_" not in resolved
                out[pod] = yaml_properties(resolved)
    return out


RENDERERS = {"local": local_properties, "compose": compose_properties, "kubernetes": kubernetes_properties}


@pytest.mark.parametrize("tablets", range(1, 9))
@pytest.mark.parametrize("target", list(RENDERERS))
def test_no_two_listeners_of_a_fluss_server_share_a_port(target, tablets):
    settings = lakehouse.load_settings(None, {"target": target, "replicas.tablet_servers": str(tablets)}, environ={})
    rendered = RENDERERS[target](settings)
    assert sorted(rendered) == sorted([s.COORDINATOR if target != "kubernetes" else f"{s.COORDINATOR}-0",
                                       *(f"{s.TABLET}-{i}" for i in range(tablets))])
    for instance, props in rendered.items():
        assert_distinct_ports(instance, props)


@pytest.mark.parametrize("target", list(RENDERERS))
def test_the_defaults_register_every_tablet_with_its_own_client_port(target):
    settings = lakehouse.load_settings(None, {"target": target}, environ={})
    rendered = RENDERERS[target](settings)
    clients = {}
    for instance, props in rendered.items():
        ports = {**parse(props["bind.listeners"]), **parse(props.get("advertised.listeners", ""))}
        clients[instance] = ports.get("CLIENT", ports.get("FLUSS"))
    assert len(set(clients.values())) == len(clients), clients


def test_the_internal_port_is_refused_where_a_server_advertises_it():
    # Tablet 1 advertises ports.fluss_tablet + 1: the old layout's collision, now an error before anything starts.
    for target in ("compose", "kubernetes"):
        with pytest.raises(ConfigError) as excinfo:
            lakehouse.load_settings(None, {"target": target, "ports.fluss_internal": "9125"}, environ={})
        (problem,) = excinfo.value.problems
        assert problem.field == "ports.fluss_internal"
        assert "fluss-tablet-1" in problem.message and "ports.fluss_tablet + 1" in problem.message
        assert "9123-9125" in problem.hint


def test_the_internal_port_is_refused_where_the_container_binds_another_listener():
    with pytest.raises(ConfigError) as excinfo:
        lakehouse.load_settings(None, {"target": "compose", "ports.fluss_internal": str(addresses.FLUSS_METRICS_PORT)},
                                environ={})
    assert "metrics reporter" in excinfo.value.problems[0].message


def test_the_local_target_has_no_internal_listener_to_collide():
    settings = lakehouse.load_settings(None, {"ports.fluss_internal": "9125"}, environ={})
    assert all("INTERNAL" not in props["bind.listeners"] for props in local_properties(settings).values())
