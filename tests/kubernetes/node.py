"""A real single-node Kubernetes cluster for tests: the control plane of tests/kubernetes/cluster.py (without kwok)
plus a real node — containerd + runc, a kubelet, kube-proxy (iptables mode), CoreDNS and a local-volume provisioner —
whose pods run the stand-in images of images/ (the same builds the compose target runs).

What runs where (everything is started and stopped by this module; nothing is left running):

- **containerd** (Debian's, like runc and the CNI plugins; installed with apt-get when missing) with a config of its
  own: socket and state under ``/run/sagaz-kube-node``, content store under the cache (``$CACHE/kube-node``, so images
  imported once are there next time), runc root of its own. ``restrict_oom_score_adj``: root here lacks
  CAP_SYS_RESOURCE. The pod sandbox image is ``sagaz.local/pause:1``, packed here from the ``pause`` binary
  ``scripts/tools/kube.sh`` builds (no registry).
- **network**: a bridge ``sgz-kube0`` with ``10.214.0.1/24`` (the node IP: the kubelet refuses a loopback one), pods
  from ``10.214.0.0/24`` (CNI bridge + host-local, no masquerade), Services from ``10.215.0.0/16``. One iptables chain
  of ours, ``SAGAZ-KUBE-FWD`` (first in FORWARD), lets pods talk to each other and drops everything else they would
  send through the host: pods reach only pods and the node address. The drop is in the mangle table's FORWARD too
  (a chain of the same name), which runs before any filter rule: kube-router puts its own jump first in the filter
  table's FORWARD and ACCEPTs there what the policies allow, which would otherwise skip ours. kube-proxy writes its
  KUBE-* rules and removes them with ``kube-proxy --cleanup`` on stop.
- **kubelet** (cgroupfs driver, cgroup v1 here) at the node IP on a free port; the API server reaches it with a client
  certificate of the test CA (webhook authentication and authorization, as kubeadm sets it up). No image garbage
  collection (the imported images cannot be pulled again) and eviction thresholds only near exhaustion.
- **kube-router**, only its NetworkPolicy firewall (``--run-firewall``; no routing, no service proxy): the
  enforcer of the node, so the stack's NetworkPolicies are really applied (iptables chains ``KUBE-ROUTER-*``,
  ``KUBE-POD-FW-*``, ``KUBE-NWPLCY-*`` in the filter table, ipsets ``KUBE-SRC-*``/``KUBE-DST-*``; Debian's
  ``ipset`` is installed when missing). It acts only on the addresses of this node's pods; stopping the node removes
  its chains and sets by name (the Docker Engine's rules and loopback are never in them).
- **CoreDNS** as a host process on ``10.214.0.1:53``, the pods' nameserver (``clusterDNS``). It answers only the
  cluster domain: no forward plugin, so no name outside the cluster resolves from a pod.
- **volumes**: StorageClass ``sagaz-local`` (the default) and a provisioner thread in the test process that makes a
  ``local`` PersistentVolume (a directory under the test's folder) for each claim and deletes it when the claim goes.
  Local volumes, unlike hostPath ones, honour the pod's ``fsGroup``, so the non-root pods can write them.
- **artifacts**: the locked jars the pods' ``fetch-jars`` init containers download are served by a small HTTP server
  in the test process on the node address (``maven_repository``), from the verified artifact cache.

Leftovers of an interrupted run (the bridge, our chain, kube-proxy's and kube-router's rules and sets, processes
recorded in ``/run/sagaz-kube-node``) are removed by name before a start.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tarfile
import threading
import time
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
import support
from cluster import VERSIONS, TestCluster, _Process

from sagaz_lakehouse import artifacts

NODE_NAME = "sagaz-node"
BRIDGE = "sgz-kube0"
CHAIN = "SAGAZ-KUBE-FWD"
NODE_IP = "10.214.0.1"
POD_RANGE = "10.214.0.0/24"
CLUSTER_CIDR = "10.214.0.0/16"
SERVICE_CIDR = "10.215.0.0/16"
CLUSTER_DOMAIN = "cluster.local"
STORAGE_CLASS = "sagaz-local"
PROVISIONER = "sagaz.test/local-directory"
SANDBOX_IMAGE = "sagaz.local/pause:1"
PAUSE_BINARY = "pause-sagaz-1"
RUN_DIR = Path("/run/sagaz-kube-node")
SOCKET = RUN_DIR / "containerd.sock"
CNI_BIN = Path("/usr/lib/cni")
KUBE_ROUTER_SETS = ("KUBE-SRC-", "KUBE-DST-")  # the ipsets of kube-router's NetworkPolicy controller
PACKAGES = {"containerd": "/usr/bin/containerd", "runc": "/usr/sbin/runc",
            "containernetworking-plugins": "/usr/lib/cni/bridge", "iptables": "/usr/sbin/iptables"}
START_TIMEOUT = 120.0
REPO = support.REPO


def _run(args: list[str], check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)
    if check and result.returncode != 0:
        pytest.fail(f"`{' '.join(args)}` exited {result.returncode}: {result.stderr.strip()[-2000:]}", pytrace=False)
    return result


def ensure_packages() -> None:
    """Debian's containerd, runc, CNI plugins and iptables; `apt-get update` only when apt does not know one."""
    missing = [name for name, path in PACKAGES.items() if not Path(path).exists()]
    if not missing:
        return
    if any(_run(["apt-cache", "show", name], check=False).returncode != 0 for name in missing):
        _run(["apt-get", "update", "-q"], timeout=600)
    _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], timeout=900,
         env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


# ---------------------------------------------------------------------------------------------- the node


class Node:
    """The node processes and network around a TestCluster started with the users below (see RealCluster)."""

    USERS: ClassVar[dict[str, str]] = {"kubelet": f"system:node:{NODE_NAME}", "kube-proxy": "system:kube-proxy",
                                       "coredns": "sagaz:coredns", "kube-router": "sagaz:kube-router"}

    def __init__(self, cluster: TestCluster, workdir: Path) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.state = support.cache_dir() / "kube-node"  # kept between runs: the imported images
        self.processes: list[_Process] = []
        self.kubelet_root = workdir / "kubelet"
        self.volumes = workdir / "volumes"
        self._ip_forward_was = ""
        self._provisioner: LocalProvisioner | None = None
        self.artifact_server: ArtifactServer | None = None
        self.api_relay: ApiServerRelay | None = None

    # -- start ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        if os.geteuid() != 0:
            pytest.fail("the real cluster needs root (network, mounts, cgroups)", pytrace=False)
        ensure_packages()
        cleanup_leftovers()
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        self._network()
        self._containerd()
        self._kubelet()
        self._kube_proxy()
        self._kube_router()
        self._coredns()
        self._provisioner = LocalProvisioner(self.cluster, self.volumes)
        self._provisioner.start()
        self.artifact_server = ArtifactServer(NODE_IP, support.free_port())
        self.api_relay = ApiServerRelay(self.cluster)

    def provisioner_errors(self) -> list[str]:
        return list(self._provisioner.errors) if self._provisioner else []

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> _Process:
        process = _Process(name, args, self.cluster.log_dir / f"{name}.log", env)
        self.processes.append(process)
        self.cluster.processes.append(process)  # log_tail() quotes every component
        # The pid and the exact command line: a leftover is ended only if both still match (pids are reused).
        (RUN_DIR / f"{name}.pid").write_text(json.dumps({"pid": process.popen.pid, "argv": args}))
        return process

    def _network(self) -> None:
        uplink = Path("/sys/class/net/eth0/mtu")  # pods' packets must fit the host's link
        mtu = uplink.read_text().strip() if uplink.exists() else "1500"
        _run(["ip", "link", "add", BRIDGE, "mtu", mtu, "type", "bridge"])
        _run(["ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE])
        _run(["ip", "link", "set", BRIDGE, "up"])
        _run(["iptables", "-w", "-N", CHAIN])
        _run(["iptables", "-w", "-A", CHAIN, "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"])  # pod to pod (Services too)
        _run(["iptables", "-w", "-A", CHAIN, "-i", BRIDGE, "-j", "DROP"])  # nothing else leaves through the host
        _run(["iptables", "-w", "-A", CHAIN, "-o", BRIDGE, "-j", "DROP"])  # and nothing else comes in
        _run(["iptables", "-w", "-I", "FORWARD", "1", "-j", CHAIN])
        _run(["iptables", "-w", "-t", "mangle", "-N", CHAIN])  # before filter: kube-router's ACCEPT cannot skip it
        _run(["iptables", "-w", "-t", "mangle", "-A", CHAIN, "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP"])
        _run(["iptables", "-w", "-t", "mangle", "-A", CHAIN, "!", "-i", BRIDGE, "-o", BRIDGE, "-j", "DROP"])
        _run(["iptables", "-w", "-t", "mangle", "-I", "FORWARD", "1", "-j", CHAIN])
        forward = Path("/proc/sys/net/ipv4/ip_forward")
        self._ip_forward_was = forward.read_text().strip()
        if self._ip_forward_was != "1":
            forward.write_text("1")  # Service traffic is routed (DNAT) between bridge ports
        net_d = self.workdir / "cni" / "net.d"
        net_d.mkdir(parents=True)
        (net_d / "10-sagaz.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0", "name": "sagaz-pods",
            "plugins": [{"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
                         "mtu": int(mtu),
                         "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_RANGE, "gateway": NODE_IP}]],
                                  "routes": [{"dst": "0.0.0.0/0"}],
                                  "dataDir": str(self.workdir / "cni" / "ipam")}}]}, indent=1))

    def _containerd(self) -> None:
        root = self.state / "containerd"
        root.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "containerd.toml"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config.write_text(f"""version = 2
root = "{root}"
state = "{RUN_DIR / 'containerd'}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{SOCKET}"
[ttrpc]
  address = "{SOCKET}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.state / 'opt'}"
[{cri}]
  sandbox_image = "{SANDBOX_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [{cri}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{self.workdir / 'cni' / 'net.d'}"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{RUN_DIR / 'runc'}"
""")
        process = self._spawn("containerd", ["containerd", "--config", str(config)])
        self._until("containerd to answer", process, lambda: ctr("version", check=False).returncode == 0)
        remove_leftover_containers()
        import_image(pause_image_archive(), "the pod sandbox image")

    def _kubelet(self) -> None:
        kubeconfig = self.cluster.kubeconfig_for("kubelet", self.workdir / "kubelet.kubeconfig")
        port, healthz = support.free_port(), support.free_port()
        config = self.workdir / "kubelet.yaml"
        config.write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": NODE_IP, "port": port, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": healthz,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.cluster.pki / "kubelet-ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs", "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{SOCKET}",
            "clusterDNS": [NODE_IP], "clusterDomain": CLUSTER_DOMAIN,
            "resolvConf": "",  # pods resolve cluster names only
            # The images were imported, not pulled: never garbage-collect them; evict only near exhaustion.
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            "serializeImagePulls": False, "maxPods": 60, "podPidsLimit": 4096,
            "containerLogMaxSize": "20Mi", "podLogsDir": str(self.workdir / "pod-logs"),
        }))
        self.kubelet_root.mkdir(parents=True)
        process = self._spawn("kubelet", [
            str(support.tool(f"kubelet-{VERSIONS['kubernetes']}")), f"--config={config}",
            f"--kubeconfig={kubeconfig}", f"--root-dir={self.kubelet_root}",
            f"--cert-dir={self.workdir / 'kubelet-pki'}", f"--node-ip={NODE_IP}",
            f"--hostname-override={NODE_NAME}", "--v=1"])
        self._until(f"node {NODE_NAME} to be Ready and untainted", process,
                    lambda: self._node_exists() and self.cluster.node_ready(NODE_NAME))

    def _node_exists(self) -> bool:
        try:
            self.cluster.request("GET", f"/api/v1/nodes/{NODE_NAME}")
        except urllib.error.HTTPError:
            return False
        return True

    def _kube_proxy(self) -> None:
        kubeconfig = self.cluster.kubeconfig_for("kube-proxy", self.workdir / "kube-proxy.kubeconfig")
        healthz, metrics = support.free_port(), support.free_port()
        config = self.workdir / "kube-proxy.yaml"
        config.write_text(json.dumps({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "mode": "iptables", "clusterCIDR": CLUSTER_CIDR, "hostnameOverride": NODE_NAME,
            "bindAddress": NODE_IP, "healthzBindAddress": f"127.0.0.1:{healthz}",
            "metricsBindAddress": f"127.0.0.1:{metrics}", "nodePortAddresses": [f"{NODE_IP}/32"],
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            # Leave the host's conntrack settings alone; masquerade Service traffic so replies come back through
            # the host whatever the bridge's netfilter settings are; no route_localnet for NodePorts.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "iptables": {"masqueradeAll": True, "localhostNodePorts": False},
        }))
        process = self._spawn("kube-proxy", [str(support.tool(f"kube-proxy-{VERSIONS['kubernetes']}")),
                                             f"--config={config}", "--v=1"])
        self._until("kube-proxy to be healthy", process, lambda: _http_ok(f"http://127.0.0.1:{healthz}/healthz"))

    def _kube_router(self) -> None:
        """kube-router's NetworkPolicy controller only, as this node's enforcer: it reads pods, namespaces and
        policies (its informers list services, endpoints and nodes too) and programs iptables and ipsets."""
        support.debian_program("debian-package.sh", "ipset", "ipset")
        bridged = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
        if not bridged.exists() or bridged.read_text().strip() != "1":  # pod to pod on the bridge must pass iptables
            pytest.fail(f"{bridged} is not 1: bridged pod traffic would bypass the NetworkPolicy firewall",
                        pytrace=False)
        self.cluster.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", {
            "metadata": {"name": "sagaz:kube-router"},
            "rules": [{"apiGroups": [""], "resources": ["pods", "namespaces", "nodes", "services", "endpoints"],
                       "verbs": ["get", "list", "watch"]},
                      {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                       "verbs": ["list", "watch"]},
                      {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
                       "verbs": ["list", "watch"]}]})
        self.cluster.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
            "metadata": {"name": "sagaz:kube-router"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "sagaz:kube-router"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "sagaz:kube-router"}]})
        kubeconfig = self.cluster.kubeconfig_for("kube-router", self.workdir / "kube-router.kubeconfig")
        process = self._spawn("kube-router", [
            str(support.tool(f"kube-router-{VERSIONS['kube-router']}")), f"--kubeconfig={kubeconfig}",
            "--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
            f"--hostname-override={NODE_NAME}", f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--enable-ipv6=false", "--health-port=0", "--metrics-port=0", "--v=1"])
        self._until("kube-router's NetworkPolicy firewall to be in place", process, kube_router_in_place)

    def _coredns(self) -> None:
        self.cluster.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", {
            "metadata": {"name": "sagaz:coredns"},
            "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                       "verbs": ["list", "watch"]},
                      {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                       "verbs": ["list", "watch"]}]})
        self.cluster.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
            "metadata": {"name": "sagaz:coredns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "sagaz:coredns"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "sagaz:coredns"}]})
        kubeconfig = self.cluster.kubeconfig_for("coredns", self.workdir / "coredns.kubeconfig")
        ready = support.free_port()
        corefile = self.workdir / "Corefile"
        corefile.write_text(f""".:53 {{
    bind {NODE_IP}
    errors
    ready 127.0.0.1:{ready}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} coredns
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
}}
""")
        process = self._spawn("coredns", [str(support.tool(f"coredns-{VERSIONS['coredns']}")), "-conf", str(corefile)])
        self._until("CoreDNS to be ready", process, lambda: _http_ok(f"http://127.0.0.1:{ready}/ready"))

    def _until(self, what: str, process: _Process, check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not check():
            if process.popen.poll() is not None:
                self.cluster.fail(f"{process.name} exited with code {process.popen.returncode}", process)
            if time.monotonic() > deadline:
                self.cluster.fail(f"{process.name}: timed out after {START_TIMEOUT:.0f} s waiting for {what}",
                                   process)
            time.sleep(0.5)

    # -- stop ---------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Every pod deleted through the API (the kubelet stops its containers and tears down their network), then
        the node processes stopped and everything this node created on the host removed by name."""
        with contextlib.suppress(Exception):
            self._drain()
        if self._provisioner:
            self._provisioner.stop()
        if self.artifact_server:
            self.artifact_server.close()
        if self.api_relay:
            self.api_relay.close()
        for process in reversed(self.processes):
            if process.name == "containerd":
                kill_tasks()  # a container the kubelet did not stop in time (shims outlive containerd)
            process.stop()
        with contextlib.suppress(Exception):
            cleanup_leftovers(ip_forward=self._ip_forward_was)
        unmount_under(self.kubelet_root)
        shutil.rmtree(self.kubelet_root, ignore_errors=True)
        shutil.rmtree(self.volumes, ignore_errors=True)

    def _drain(self) -> None:
        system = {"default", "kube-system", "kube-public", "kube-node-lease"}
        for item in self.cluster.request("GET", "/api/v1/namespaces")["items"]:
            name = item["metadata"]["name"]
            if name not in system:
                with contextlib.suppress(urllib.error.HTTPError):
                    self.cluster.request("DELETE", f"/api/v1/namespaces/{name}")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            pods = self.cluster.request("GET", "/api/v1/pods")["items"]
            if not pods:
                return
            for pod in pods:  # in the system namespaces, or stuck: ask once more, without grace
                meta = pod["metadata"]
                with contextlib.suppress(urllib.error.HTTPError):
                    self.cluster.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
                                         "?gracePeriodSeconds=0")
            time.sleep(1)


# ---------------------------------------------------------------------------------------------- host cleanup


def cleanup_leftovers(ip_forward: str = "") -> None:
    """Removes, by name, what a node (this run's or an interrupted earlier one) created on the host."""
    for pidfile in RUN_DIR.glob("*.pid") if RUN_DIR.exists() else []:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            recorded = json.loads(pidfile.read_text())
            pid = int(recorded["pid"])
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").rstrip("\0").split("\0")
            if argv == recorded["argv"]:  # still the process we started, not a reused pid
                os.kill(pid, signal.SIGTERM)
                for _ in range(50):
                    if not Path(f"/proc/{pid}").exists():
                        break
                    time.sleep(0.2)
        pidfile.unlink(missing_ok=True)
    kill_orphan_shims()
    proxy = support.cache_dir() / "bin" / f"kube-proxy-{VERSIONS['kubernetes']}"
    if proxy.exists() and "KUBE-" in _run(["iptables-save"], check=False).stdout:
        _run([str(proxy), "--cleanup"], check=False)  # kube-proxy's own rules, every mode
    # What remains of ours: the chain SAGAZ-KUBE-FWD, the kubelet's and kube-proxy's KUBE-* chains (canaries,
    # KUBE-FIREWALL, KUBE-MARK-MASQ, KUBE-IPTABLES-HINT) and kube-router's (KUBE-ROUTER-*, KUBE-POD-FW-*,
    # KUBE-NWPLCY-*); no other Kubernetes runs on these machines. Then kube-router's ipsets, which no rule uses now.
    remove_chains(("KUBE-", CHAIN))
    remove_ipsets(KUBE_ROUTER_SETS)
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        _run(["ip", "link", "delete", BRIDGE], check=False)
    if ip_forward and ip_forward != "1":
        Path("/proc/sys/net/ipv4/ip_forward").write_text(ip_forward)
    unmount_under(RUN_DIR)
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    for controller in Path("/sys/fs/cgroup").glob("*/kubepods"):
        for directory in sorted(controller.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if directory.is_dir():
                with contextlib.suppress(OSError):
                    directory.rmdir()
        with contextlib.suppress(OSError):
            controller.rmdir()


def kill_orphan_shims() -> None:
    """Container shims of our containerd (recognised by its socket in their command line) that outlived it, and the
    containers they run: the processes below each shim first, then the shim."""
    marker = f"-address\0{SOCKET}\0"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            if "containerd-shim" in cmdline and marker in cmdline:
                for pid in [*descendants(int(proc.name)), int(proc.name)]:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, deepest first."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            if proc.name.isdigit():
                parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(proc.name))
    found: list[int] = []

    def walk(node: int) -> None:
        for child in children.get(node, []):
            walk(child)
            found.append(child)

    walk(pid)
    return found


def kube_router_in_place() -> bool:
    """kube-router's jump in FORWARD and its default policy chain: its first full sync is done."""
    rules = _run(["iptables-save", "-t", "filter"], check=False).stdout
    return "-j KUBE-ROUTER-FORWARD" in rules and ":KUBE-NWPLCY-DEFAULT" in rules


def remove_ipsets(prefixes: tuple[str, ...]) -> None:
    """Destroys every ipset whose name starts with one of ``prefixes`` (none when ipset is not installed)."""
    if not shutil.which("ipset"):
        return
    for name in _run(["ipset", "list", "-n"], check=False).stdout.split():
        if name.startswith(prefixes):
            _run(["ipset", "destroy", name], check=False)


def remove_chains(prefixes: tuple[str, ...]) -> None:
    """Deletes, in the filter, nat and mangle tables, every rule jumping to a chain whose name starts with one of
    ``prefixes``, then those chains."""
    for table in ("filter", "nat", "mangle"):
        rules = _run(["iptables-save", "-t", table], check=False).stdout.splitlines()
        chains = [line[1:].split()[0] for line in rules if line.startswith(":") and line[1:].startswith(prefixes)]
        for line in rules:
            words = shlex.split(line)  # comments are quoted: "kube-router netpol - ..."
            if (line.startswith("-A ") and not words[1].startswith(prefixes) and "-j" in words
                    and words[words.index("-j") + 1].startswith(prefixes)):
                _run(["iptables", "-w", "-t", table, "-D", *words[1:]], check=False)
        for chain in chains:
            _run(["iptables", "-w", "-t", table, "-F", chain], check=False)
        for chain in chains:
            _run(["iptables", "-w", "-t", table, "-X", chain], check=False)


def unmount_under(root: Path) -> None:
    """Unmounts ``root`` and everything mounted below it (volumes, sandbox shm, rootfs), deepest first."""
    top = str(root.resolve())
    mounts = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == top or point.startswith(top + "/"):  # the kubelet bind-mounts its root dir onto itself
                mounts.append(point)
    for point in sorted(set(mounts), key=len, reverse=True):
        _run(["umount", "-l", point], check=False)


# ---------------------------------------------------------------------------------------------- containerd


def ctr(*args: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return _run(["ctr", "--address", str(SOCKET), "--namespace", "k8s.io", *args], check=check, **kwargs)


def remove_leftover_containers() -> None:
    """Containers of an interrupted earlier run (their shims outlive containerd and were found again by it): killed
    and removed, and their sandboxes' network namespaces (``cni-*``, which only the CRI plugin creates) deleted."""
    kill_tasks()
    for container in ctr("containers", "ls", "-q", check=False).stdout.split():
        ctr("containers", "rm", container, check=False)
    for line in _run(["ip", "netns", "list"], check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith("cni-"):
            _run(["ip", "netns", "delete", name], check=False)


def kill_tasks() -> None:
    listing = ctr("tasks", "ls", "-q", check=False)
    for task in listing.stdout.split():
        ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)
    time.sleep(1)
    for task in listing.stdout.split():
        ctr("tasks", "delete", "--force", task, check=False)


def import_image(archive: bytes | Path, what: str) -> None:
    """`ctr images import` of a docker-save archive (bytes or a file)."""
    if isinstance(archive, Path):
        with archive.open("rb") as source:
            result = subprocess.run(["ctr", "--address", str(SOCKET), "--namespace", "k8s.io", "images", "import",
                                     "-"], stdin=source, capture_output=True, check=False, timeout=1800)
    else:
        result = subprocess.run(["ctr", "--address", str(SOCKET), "--namespace", "k8s.io", "images", "import", "-"],
                                input=archive, capture_output=True, check=False, timeout=600)
    if result.returncode != 0:
        pytest.fail(f"importing {what} into containerd failed: {result.stderr.decode(errors='replace')[-2000:]}",
                    pytrace=False)


def pause_image_archive() -> bytes:
    """A docker-save archive of the sandbox image: one layer holding /pause (scripts/tools/kube.sh builds it)."""
    binary = support.tool(PAUSE_BINARY).read_bytes()
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tarfile.TarInfo("pause")
        info.size, info.mode, info.mtime = len(binary), 0o755, 0
        tar.addfile(info, io.BytesIO(binary))
    layer_bytes = layer.getvalue()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
                         "rootfs": {"type": "layers",
                                    "diff_ids": [f"sha256:{hashlib.sha256(layer_bytes).hexdigest()}"]}}).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in (("layer.tar", layer_bytes), ("config.json", config),
                           ("manifest.json", json.dumps([{"Config": "config.json", "RepoTags": [SANDBOX_IMAGE],
                                                          "Layers": ["layer.tar"]}]).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def containerd_images() -> set[str]:
    """The image names our containerd holds."""
    return set(ctr("images", "ls", "-q").stdout.split())


def pinned_by_digest(tag: str) -> str:
    """``tag`` as production pins it, ``name:tag@sha256:<digest>``: the digest of the manifest containerd imported
    for that tag, which the CRI then finds under ``repository@sha256:<digest>`` too (the name a pull records)."""
    name = normalized(tag)
    rows = [line.split() for line in ctr("images", "ls").stdout.splitlines()[1:]]
    (digest,) = [row[2] for row in rows if row[0] == name]
    repository = name.rsplit(":", 1)[0]
    if f"{repository}@{digest}" not in containerd_images():
        ctr("images", "tag", name, f"{repository}@{digest}")
    return f"{tag}@{digest}"


def normalized(tag: str) -> str:
    """docker.io/library/zookeeper:3.9.2 for zookeeper:3.9.2, as containerd and the kubelet name it."""
    first = tag.split("/", 1)[0]
    if "/" not in tag:
        return f"docker.io/library/{tag}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{tag}"
    return tag


def baked_images() -> list[str]:
    """The images carrying the locked jars that prod renders with kubernetes.jars: baked, FROM the stand-ins
    (`sagaz-lakehouse build-images --profile prod` builds exactly these, in Images.load)."""
    from sagaz_lakehouse import load_settings
    from sagaz_lakehouse.stack import View
    from sagaz_lakehouse.targets.kubernetes import jar_images, layout

    settings = load_settings(None, {"target": "kubernetes", "profile": "prod", "kubernetes.jars": "baked"},
                                       environ={})
    stack = layout.build_stack(settings, View.INTERNAL, layout.instance_address)
    found = jar_images.jar_images(settings, stack.components, artifacts.load_lock())
    return sorted(image.reference for image in found.values())


class Images:
    """The stand-in images (images/, scripts/build-images.py) on the private Docker Engine, loaded into the node's
    containerd with `docker save | ctr images import`, each only when its image ID changed since it was loaded.

    An engine that is already running belongs to someone else: it is used read-only (inspect, save), and an image
    missing there fails the test with the command that builds it. Otherwise the engine is started, the images are
    built (a warm build only inspects labels), and the engine is stopped again."""

    ENGINE = REPO / "scripts" / "docker-engine.sh"
    BUILD = REPO / "scripts" / "build-images.py"

    def __init__(self, state: Path) -> None:
        self.marker = state / "imported.json"

    def load(self, tags: list[str]) -> dict[str, float]:
        """Loads what changed; returns seconds spent per image loaded."""
        import sys

        # No docker CLI yet (a fresh machine): docker-engine.sh installs the engine and its CLI.
        running = bool(shutil.which("docker")) and _run(["docker", "info"], check=False, timeout=30).returncode == 0
        if not running:
            _run(["bash", str(self.ENGINE), "start"], timeout=1800)
        try:
            if not running:
                _run([sys.executable, str(self.BUILD)], timeout=3600)
                # the images carrying the locked jars (kubernetes.jars: baked), FROM those stand-ins; cwd: no
                # settings file of anyone's
                _run([sys.executable, "-m", "sagaz_lakehouse", "build-images", "--profile", "prod"], timeout=1800,
                     cwd=self.marker.parent)
            return self._import(tags)
        finally:
            if not running:
                _run(["bash", str(self.ENGINE), "stop"], check=False, timeout=300)

    def _import(self, tags: list[str]) -> dict[str, float]:
        done = json.loads(self.marker.read_text()) if self.marker.exists() else {}
        present = containerd_images()
        timings = {}
        for tag in tags:
            inspect = _run(["docker", "image", "inspect", "--format", "{{.Id}}", tag], check=False)
            if inspect.returncode != 0:
                pytest.fail(f"image {tag} is not on the running Docker Engine: build the stand-ins with "
                            "`make images` (scripts/build-images.py), then the images carrying the jars with "
                            "`python -m sagaz_lakehouse build-images --profile prod`", pytrace=False)
            image_id = inspect.stdout.strip()
            if done.get(tag) == image_id and normalized(tag) in present:
                continue
            started = time.monotonic()
            archive = self.marker.parent / "save.tar"
            with archive.open("wb") as out:
                saved = subprocess.run(["docker", "save", tag], stdout=out, stderr=subprocess.PIPE, check=False,
                                       timeout=1800)
            if saved.returncode != 0:
                pytest.fail(f"docker save {tag}: {saved.stderr.decode(errors='replace')[-1000:]}", pytrace=False)
            try:
                import_image(archive, tag)
            finally:
                archive.unlink(missing_ok=True)
            done[tag] = image_id
            self.marker.write_text(json.dumps(done, indent=1))
            timings[tag] = round(time.monotonic() - started, 1)
        return timings


# ---------------------------------------------------------------------------------------------- volumes


class LocalProvisioner:
    """Provisions a `local` PersistentVolume (a fresh directory) for every pending claim of STORAGE_CLASS, bound to
    that claim, and deletes volume and directory once the claim is gone (reclaim policy Delete)."""

    def __init__(self, cluster: TestCluster, root: Path) -> None:
        self.cluster = cluster
        self.root = root
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="local provisioner")
        self.errors: list[str] = []

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.cluster.request("POST", "/apis/storage.k8s.io/v1/storageclasses", {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": STORAGE_CLASS,
                         "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"})
        self._await_default_class()
        self._thread.start()

    def _await_default_class(self, timeout: float = 60.0) -> None:
        """Until the API server gives new claims this class: its DefaultStorageClass admission reads a cache that
        can lag the class just created, and a claim admitted meanwhile keeps no class, which nothing provisions
        (a claim made right after the node came up stayed Pending once). A probe claim shows when it is in."""
        probe = "/api/v1/namespaces/default/persistentvolumeclaims"
        deadline = time.monotonic() + timeout
        for attempt in range(10_000):
            name = f"sagaz-default-class-probe-{attempt}"
            claim = self.cluster.request("POST", probe, {
                "metadata": {"name": name},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}})
            self.cluster.request("DELETE", f"{probe}/{name}")
            if claim["spec"].get("storageClassName") == STORAGE_CLASS:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"new claims did not get the default StorageClass {STORAGE_CLASS} within "
                                   f"{timeout:.0f}s")
            time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self._provision()
                self._reclaim()
            except Exception as exc:  # report through errors; the claim stays Pending and the test says why
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def _provision(self) -> None:
        volumes = {pv["spec"].get("claimRef", {}).get("uid") for pv in
                   self.cluster.request("GET", "/api/v1/persistentvolumes")["items"]}
        for claim in self.cluster.request("GET", "/api/v1/persistentvolumeclaims")["items"]:
            meta, spec = claim["metadata"], claim["spec"]
            if (spec.get("storageClassName") != STORAGE_CLASS or spec.get("volumeName")
                    or claim["status"].get("phase") != "Pending" or meta["uid"] in volumes):
                continue
            name = f"local-{meta['uid']}"
            path = self.root / name
            path.mkdir(mode=0o755, exist_ok=True)  # a try whose PV request failed left it: the retry reuses it
            self.cluster.request("POST", "/api/v1/persistentvolumes", {
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
                "spec": {"capacity": {"storage": spec["resources"]["requests"]["storage"]},
                         "accessModes": spec["accessModes"], "persistentVolumeReclaimPolicy": "Delete",
                         "storageClassName": STORAGE_CLASS, "volumeMode": "Filesystem", "local": {"path": str(path)},
                         "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                      "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]},
                         "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                             {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE_NAME]}]}]}}}})

    def _reclaim(self) -> None:
        for pv in self.cluster.request("GET", "/api/v1/persistentvolumes")["items"]:
            annotations = pv["metadata"].get("annotations") or {}
            if annotations.get("pv.kubernetes.io/provisioned-by") != PROVISIONER:
                continue
            if pv["status"].get("phase") in ("Released", "Failed"):
                shutil.rmtree(pv["spec"]["local"]["path"], ignore_errors=True)
                with contextlib.suppress(urllib.error.HTTPError):
                    self.cluster.request("DELETE", f"/api/v1/persistentvolumes/{pv['metadata']['name']}")


# ---------------------------------------------------------------------------------------------- artifacts


class ArtifactServer:
    """Serves the locked jars in Maven layout (``<url>/<group path>/<file>``) from the verified cache, so the pods'
    fetch-jars init containers download from the node, never from the Internet. Files missing in the cache are
    fetched into it first (by the test process, from the configured repository, digest-checked)."""

    def __init__(self, host: str, port: int) -> None:
        lock = artifacts.load_lock()
        cache = artifacts.cache_dir(os.environ.get("SAGAZ_LAKEHOUSE_LOCAL__CACHE_DIR", "~/.cache/sagaz-lakehouse"))
        files = {a.path: a for entries in lock.values() for a in entries if a.path}
        self.requests: list[str] = []
        served = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                item = files.get(self.path.lstrip("/").removeprefix("maven2/"))
                if item is None:
                    self.send_error(404)
                    return
                path = artifacts.fetch([item], cache)[0]
                served.append(item.name)
                self.send_response(200)
                self.send_header("Content-Length", str(path.stat().st_size))
                self.end_headers()
                with path.open("rb") as source:
                    shutil.copyfileobj(source, self.wfile, 1 << 20)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{port}/maven2"
        threading.Thread(target=self._server.serve_forever, daemon=True, name="artifact server").start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class ApiServerRelay:
    """Makes the API server reachable from pods, through the `kubernetes` Service, as on any cluster.

    The control plane binds 127.0.0.1 only (and runs without the endpoint reconciler: a Service's endpoints may not be
    a loopback address), so the `kubernetes` Service had no endpoints and a pod asking the API server (the tablet
    servers' rack lookup) was refused. This relays TCP (TLS passes through unchanged: the self-signed serving
    certificate names the Service's cluster IP) from the node's address to the API server, on the API server's own
    port number, and gives the Service that endpoint: its EndpointSlice, which kube-proxy reads. ``port`` is what a
    NetworkPolicy sees after the Service's translation (the stack's kubernetes.api_server_port)."""

    def __init__(self, cluster: TestCluster) -> None:
        self.port = int(cluster.server.rsplit(":", 1)[1])
        self._listener = socket.create_server((NODE_IP, self.port))
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="api server relay").start()
        cluster.request("POST", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes-relay", "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": "IPv4", "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": self.port, "protocol": "TCP"}]})

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)

        def pump(source: socket.socket, sink: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := source.recv(65536):
                    sink.sendall(data)
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join()
        client.close()
        upstream.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()


# ---------------------------------------------------------------------------------------------- the cluster


class RealCluster:
    """Control plane + node; ``kubeconfig``, ``log_tail()`` and ``request()`` as on TestCluster."""

    def __init__(self, workdir: Path) -> None:
        self.control_plane = TestCluster(workdir / "control-plane", service_cidr=SERVICE_CIDR, kwok=False,
                                         users=dict(Node.USERS))
        self.node = Node(self.control_plane, workdir / "node")
        self.image_timings: dict[str, float] = {}

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.kubeconfig

    def log_tail(self, n: int = 40) -> str:
        provisioner = self.node.provisioner_errors()
        errors = "--- volume provisioner errors ---\n" + "\n".join(provisioner[-10:]) + "\n" if provisioner else ""
        return errors + self.control_plane.log_tail(n)

    def request(self, *args: Any, **kwargs: Any) -> Any:
        return self.control_plane.request(*args, **kwargs)

    def start(self, images: list[str]) -> None:
        self.control_plane.workdir.mkdir(parents=True)
        self.node.workdir.mkdir(parents=True)
        self.control_plane.start()
        self.node.start()
        self.image_timings = Images(self.node.state).load(images)

    def stop(self) -> None:
        self.node.stop()
        self.control_plane.stop()

    def __enter__(self) -> RealCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except OSError:
        return False


def start_real_cluster(workdir: Path, images: list[str]) -> RealCluster:
    cluster = RealCluster(workdir)
    try:
        cluster.start(images)
    except BaseException:
        cluster.stop()
        raise
    return cluster
