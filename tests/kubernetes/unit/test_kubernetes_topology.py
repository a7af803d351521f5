"""The topology of the Kubernetes render (issue 25, item 5): ZooKeeper's ensemble, how pods spread over nodes and
zones, and disruption budgets that match Fluss's replication. Prod keeps the guarantee; dev stays one ZooKeeper and
leaves placement to the scheduler."""

from __future__ import annotations

import subprocess
import sys

import pytest
from manifest_helpers import env, properties, render_variant

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import config
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.errors import ConfigError
from sagaz_lakehouse.targets.kubernetes import layout as k8s

HOSTNAME, ZONE = "kubernetes.io/hostname", "topology.kubernetes.io/zone"


@pytest.fixture(scope="module")
def prod_two_taskmanagers():
    return render_variant({"profile": "prod", "replicas.flink_taskmanagers": 2, "replicas.tablet_servers": 3})


def spread_of(rendered, name: str) -> list[dict]:
    return rendered.workload(name)["spec"]["template"]["spec"].get("topologySpreadConstraints", [])


def run_prelude(container: dict, pod: str, *command: str) -> str:
    """The container's bash prelude, run as the pod ``pod`` would run it, in front of ``command``."""
    assert container["command"][:2] == ["/bin/bash", "-c"]
    variables = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    result = subprocess.run(["/bin/bash", "-c", container["command"][2], container["command"][3], *command],
                            env={**variables, "POD_NAME": pod, "POD_IP": "10.0.0.9", "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=10, check=True)
    return result.stdout


# ---------------------------------------------------------------------------------------------------- ZooKeeper


def test_prod_runs_a_zookeeper_ensemble_of_three_that_every_fluss_server_lists(variant):
    st = variant.settings
    servers = 3 if st.profile == "prod" else 1
    assert s.ensemble_size(st) == servers
    workload = variant.workload(s.ZOOKEEPER)
    assert workload["kind"] == "StatefulSet" and workload["spec"]["replicas"] == servers
    cfg = variant.mounted_file(s.ZOOKEEPER, "/conf/zoo.cfg")
    members = [f"zookeeper-{i}.zookeeper-headless" for i in range(servers)]
    listed = {k: v for k, v in properties(cfg, "=").items() if k.startswith("server.")}
    for name in (s.COORDINATOR, s.TABLET):
        address = properties(env(variant.main(name))["FLUSS_PROPERTIES"], ":")["zookeeper.address"]
        assert address == (",".join(f"{m}:{st.ports.zookeeper}" for m in members) if servers > 1
                           else f"zookeeper:{st.ports.zookeeper}")
    headless = variant.get("Service", "zookeeper-headless")["spec"]
    ports = {p["name"]: p["port"] for p in headless["ports"]}
    if servers == 1:
        assert listed == {} and "quorumListenOnAllIPs" not in cfg and "peer" not in ports
        assert not [n for n in env(variant.main(s.ZOOKEEPER)) if n.startswith("ZOO_")]
        return
    # server.<ordinal + 1>=<its stable name>:<peer>:<election>, the names the headless Service gives the pods
    assert listed == {f"server.{i + 1}": f"{m}:{s.ZOOKEEPER_PEER_PORT}:{s.ZOOKEEPER_ELECTION_PORT}"
                      for i, m in enumerate(members)}
    assert workload["spec"]["serviceName"] == "zookeeper-headless" and headless["clusterIP"] == "None"
    assert headless["publishNotReadyAddresses"] is True  # peers resolve each other before any is ready
    assert ports["peer"] == s.ZOOKEEPER_PEER_PORT and ports["election"] == s.ZOOKEEPER_ELECTION_PORT
    assert properties(cfg, "=")["quorumListenOnAllIPs"] == "true"


def test_each_zookeeper_server_takes_its_ordinal_plus_one_as_its_id(variant):
    """The image's entrypoint writes myid from ZOO_MY_ID (docker-library zookeeper docker-entrypoint.sh); the prelude
    gives each pod its own."""
    container = variant.main(s.ZOOKEEPER)
    if s.ensemble_size(variant.settings) == 1:  # a standalone server: the image's own entrypoint, no id
        assert "command" not in container and "args" not in container
        return
    assert container["args"] == ["/docker-entrypoint.sh", "zkServer.sh", "start-foreground"]  # the image's own
    for ordinal in range(3):
        out = run_prelude(container, f"zookeeper-{ordinal}", "/bin/bash", "-c", 'echo "$ZOO_MY_ID"')
        assert out.strip() == str(ordinal + 1)


def test_only_zookeeper_servers_reach_the_quorum_ports(variant):
    policy = variant.get("NetworkPolicy", s.ZOOKEEPER)["spec"]
    if s.ensemble_size(variant.settings) == 1:  # a standalone server opens no quorum port and reaches nothing
        opened = {p["port"] for r in policy.get("ingress", []) for p in r["ports"]}
        assert not opened & {s.ZOOKEEPER_PEER_PORT, s.ZOOKEEPER_ELECTION_PORT}
        assert [r for r in policy["egress"] if "to" in r] == []
        return
    own = [{"podSelector": {"matchLabels": k8s.selector(variant.settings, k8s.cluster_stack(variant.settings)
                                                        .get(s.ZOOKEEPER))}}]
    for port in (s.ZOOKEEPER_PEER_PORT, s.ZOOKEEPER_ELECTION_PORT):
        (rule,) = [r for r in policy["ingress"] if r["ports"] == [{"protocol": "TCP", "port": port}]]
        assert rule["from"] == own
    (out,) = [r for r in policy["egress"] if r.get("to") == own]
    assert {p["port"] for p in out["ports"]} == {s.ZOOKEEPER_PEER_PORT, s.ZOOKEEPER_ELECTION_PORT}


def test_an_even_ensemble_or_one_off_kubernetes_is_refused_naming_the_field(tmp_path):
    for overrides in ({"target": "kubernetes", "replicas.zookeeper": "2"},
                      {"target": "compose", "replicas.zookeeper": "3"}, {"target": "local", "replicas.zookeeper": "3"}):
        with pytest.raises(ConfigError) as excinfo:
            lakehouse.load_settings(None, overrides, environ={})
        assert [p.field for p in excinfo.value.problems] == ["replicas.zookeeper"], overrides
    # prod on compose and local keeps one server; an explicit 5 on kubernetes is an ensemble of 5
    for target in ("compose", "local"):
        assert s.ensemble_size(lakehouse.load_settings(None, {"target": target, "profile": "prod"}, environ={})) == 1
    five = render_variant({"replicas.zookeeper": 5})
    assert five.workload(s.ZOOKEEPER)["spec"]["replicas"] == 5
    assert five.get("PodDisruptionBudget", s.ZOOKEEPER)["spec"]["maxUnavailable"] == 2  # a majority of 5 stays
    result = subprocess.run([sys.executable, "-m", "sagaz_lakehouse", "render", "--target", "compose", "--placeholders",
                             "--out", str(tmp_path / "out"), "--set", "replicas.zookeeper=3"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "replicas.zookeeper" in result.stderr and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------------ spread


def test_prod_keeps_tablet_servers_and_zookeeper_on_distinct_nodes_and_prefers_distinct_zones(variant):
    st = variant.settings
    stack = k8s.cluster_stack(st)
    for component in stack.components:
        constraints = spread_of(variant, component.name)
        if st.profile != "prod" or component.name not in (s.TABLET, s.ZOOKEEPER, s.TASKMANAGER) \
                or component.replicas < 2:
            assert constraints == [], component.name
            continue
        pods = {"matchLabels": k8s.selector(st, component)}
        by_node = {"maxSkew": 1, "topologyKey": HOSTNAME, "whenUnsatisfiable": "DoNotSchedule", "labelSelector": pods}
        if component.name != s.TASKMANAGER:
            by_node["minDomains"] = component.replicas  # fewer nodes than servers: the rest wait, never share
        assert constraints == [by_node, {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "ScheduleAnyway",
                                         "labelSelector": pods}], component.name


def test_prod_taskmanagers_spread_evenly_without_waiting_for_nodes(prod_two_taskmanagers):
    (by_node, by_zone) = spread_of(prod_two_taskmanagers, s.TASKMANAGER)
    assert by_node["topologyKey"] == HOSTNAME and by_node["whenUnsatisfiable"] == "DoNotSchedule"
    assert "minDomains" not in by_node  # no durable state: more TaskManagers than nodes double up
    assert by_zone["topologyKey"] == ZONE and by_zone["whenUnsatisfiable"] == "ScheduleAnyway"
    assert spread_of(prod_two_taskmanagers, s.TABLET)[0]["minDomains"] == 3


# ---------------------------------------------------------------------------------------------------- budgets


@pytest.mark.parametrize(("factor", "in_sync", "allowed"), [(3, 2, 1), (3, 1, 2), (2, 2, 1), (2, 1, 1)])
def test_tablet_budget_leaves_every_bucket_its_minimum_in_sync_replicas(factor, in_sync, allowed):
    """A drain takes down at most replication factor - min in-sync replicas tablet servers (any bucket keeps enough
    replicas for acks=all), never 0 (which blocks every drain: a factor equal to the minimum stops acks=all writes of a
    drained server's buckets until it is back, docs/kubernetes.md)."""
    rendered = render_variant({"profile": "prod", "replicas.tablet_servers": 3,
                               "durability.replication_factor": factor, "durability.min_in_sync_replicas": in_sync})
    assert rendered.get("PodDisruptionBudget", s.TABLET)["spec"]["maxUnavailable"] == allowed


def test_budgets_exist_for_every_replicated_component_with_what_it_tolerates(variant):
    st = variant.settings
    budgets = {b["metadata"]["name"]: b["spec"]["maxUnavailable"] for b in variant.of_kind("PodDisruptionBudget")}
    expected = {c.name: 1 for c in k8s.cluster_stack(st).components if c.replicas > 1}
    if st.profile == "prod":
        assert budgets[s.ZOOKEEPER] == 1  # 2 of 3 keep the majority
    else:
        assert s.ZOOKEEPER not in budgets
    assert budgets == expected


# ------------------------------------------------------------------------------------------------------- racks


def test_prod_tablet_servers_take_their_nodes_zone_as_rack_through_a_least_privilege_init_container(variant, tmp_path):
    st = variant.settings
    workload = variant.workload(s.TABLET)
    spec = workload["spec"]["template"]["spec"]
    props = properties(env(variant.main(s.TABLET))["FLUSS_PROPERTIES"], ":")
    accounts = variant.of_kind("ServiceAccount")
    if st.profile != "prod":  # dev: no rack, no ServiceAccount, nothing cluster-wide
        assert "tablet-server.rack" not in props and not accounts and "serviceAccountName" not in spec
        assert not variant.of_kind("ClusterRole") and not variant.of_kind("ClusterRoleBinding")
        assert "node-zone" not in [c["name"] for c in spec.get("initContainers", [])]
        return
    assert props["tablet-server.rack"] == k8s.RACK_PLACEHOLDER
    # only the tablet servers read a rack; the coordinator, ZooKeeper and the TaskManagers run no such container
    for name in (s.COORDINATOR, s.ZOOKEEPER, s.TASKMANAGER):
        other = variant.workload(name)["spec"]["template"]["spec"]
        assert "serviceAccountName" not in other and "node-zone" not in [c["name"] for c in
                                                                          other.get("initContainers", [])]
    (init,) = [c for c in spec["initContainers"] if c["name"] == "node-zone"]
    assert init["image"] == st.images.python and init["command"] == ["python3", "-c", k8s.RACK_SCRIPT]
    assert init["env"] == [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in spec["volumes"]}
    token_mounts = [(c["name"], m) for c in [*spec["initContainers"], *spec["containers"]]
                    for m in c.get("volumeMounts", []) if m["name"] == "api-token"]
    assert [name for name, _ in token_mounts] == ["node-zone"]  # the token reaches the init container only
    assert token_mounts[0][1]["readOnly"] is True
    sources = volumes["api-token"]["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["expirationSeconds"] == 600  # the shortest the API server allows
    main_mounts = {m["mountPath"]: m for m in variant.main(s.TABLET)["volumeMounts"]}
    assert main_mounts[k8s.RACK_DIR]["readOnly"] is True
    # its own ServiceAccount (no automounted token anywhere), allowed to get nodes and nothing else
    assert spec["serviceAccountName"] == s.TABLET and spec["automountServiceAccountToken"] is False
    (account,) = accounts
    assert account["metadata"]["name"] == s.TABLET and account["automountServiceAccountToken"] is False
    (role,) = variant.of_kind("ClusterRole")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
    (binding,) = variant.of_kind("ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"] == binding["metadata"]["name"]
    assert st.namespace in role["metadata"]["name"]  # two stacks' roles never collide
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": s.TABLET, "namespace": st.namespace}]
    # the prelude puts the rack file's content into server.yaml's properties
    rack_dir = tmp_path / "rack"
    rack_dir.mkdir()
    (rack_dir / k8s.RACK_FILE).write_text("eu-west-1b")
    container = dict(variant.main(s.TABLET))
    container["command"] = [*container["command"][:2], container["command"][2].replace(k8s.RACK_DIR, str(rack_dir)),
                            *container["command"][3:]]
    out = run_prelude(container, "fluss-tablet-1", "/bin/bash", "-c", 'echo "$FLUSS_PROPERTIES"')
    assert properties(out, ":")["tablet-server.rack"] == "eu-west-1b"
    assert properties(out, ":")["tablet-server.id"] == "1"


def test_kubernetes_spread_setting_overrides_the_profile_and_off_warns_in_prod():
    """One node is all the real single-node test cluster has: there prod runs with spread off (and one ZooKeeper),
    which render warns about; dev can ask for the prod topology."""
    off = render_variant({"profile": "prod", "kubernetes.spread": "off", "replicas.zookeeper": 1})
    assert not [w for w in off.workloads() if w["spec"]["template"]["spec"].get("topologySpreadConstraints")]
    assert not off.of_kind("ClusterRole") and "tablet-server.rack" not in \
        properties(env(off.main(s.TABLET))["FLUSS_PROPERTIES"], ":")
    assert off.workload(s.ZOOKEEPER)["spec"]["replicas"] == 1
    warnings = config.settings_warnings(off.settings)
    assert [w for w in warnings if w.startswith("kubernetes.spread is off")], warnings
    assert not [w for w in config.settings_warnings(render_variant({"profile": "prod"}).settings)
                if "kubernetes.spread" in w]
    on = render_variant({"kubernetes.spread": "on"})
    assert spread_of(on, s.TABLET)[0]["minDomains"] == on.settings.replicas.tablet_servers
    assert on.of_kind("ClusterRole") and on.workload(s.ZOOKEEPER)["spec"]["replicas"] == 1  # dev: one ZooKeeper
    for target in ("compose", "local"):  # one host: nothing to spread over
        chosen = lakehouse.load_settings(None, {"target": target, "kubernetes.spread": "on"}, environ={})
        assert not s.spread(chosen)


def test_preferred_spread_schedules_every_server_on_too_few_nodes_and_keeps_the_racks():
    """kubernetes.spread: preferred, for a cluster with fewer nodes than servers (the real single-node test cluster
    runs prod so, with its ensemble of 3): both rules ScheduleAnyway, nothing waits for a node, and the tablet servers
    still read their racks; prod warns that servers may share a node."""
    preferred = render_variant({"profile": "prod", "kubernetes.spread": "preferred"})
    assert preferred.workload(s.ZOOKEEPER)["spec"]["replicas"] == 3
    for name in (s.TABLET, s.ZOOKEEPER):
        (by_node, by_zone) = spread_of(preferred, name)
        assert by_node["topologyKey"] == HOSTNAME and "minDomains" not in by_node
        assert {by_node["whenUnsatisfiable"], by_zone["whenUnsatisfiable"]} == {"ScheduleAnyway"}, name
    props = properties(env(preferred.main(s.TABLET))["FLUSS_PROPERTIES"], ":")
    assert props["tablet-server.rack"] == k8s.RACK_PLACEHOLDER and preferred.of_kind("ClusterRole")
    assert [w for w in config.settings_warnings(preferred.settings) if w.startswith("kubernetes.spread is preferred")]
    with pytest.raises(ConfigError) as excinfo:
        lakehouse.load_settings(None, {"target": "kubernetes", "kubernetes.spread": "maybe"}, environ={})
    assert [p.field for p in excinfo.value.problems] == ["kubernetes.spread"]
