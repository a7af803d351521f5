"""A real Kubernetes control plane on loopback, for tests: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler (built by scripts/tools/kube.sh at the versions of sagaz_lakehouse.versions.KUBE_TEST_CLUSTER), with
kwok standing in for the kubelet: there is no container runtime here, so no container ever runs. kwok marks its fake
Nodes Ready, makes every pod scheduled on them Running and Ready (with a pod IP) and moves pods owned by a Job to
Succeeded, so Deployments, StatefulSets and Jobs roll out through the real controllers and scheduler.

What is real and what is not:
- authentication is static tokens (--token-auth-file): `admin` (group system:masters) and `limited` (no group, no
  RBAC binding: everything but discovery is forbidden); authorization is Node,RBAC as on kubeadm clusters;
- the controller manager runs its default controller set (so also endpoints, quota, garbage collection, ...) with
  per-controller service-account credentials; the ServiceAccount admission plugin stays on (pods need their
  ServiceAccount to exist, as on a real cluster), which is why the service-account key pair exists;
- storage: a default StorageClass `standard` with the in-tree `kubernetes.io/host-path` provisioner, enabled by
  kube-controller-manager --enable-hostpath-provisioner (meant for exactly this: single-node testing). PVCs without
  storageClassName, as volumeClaimTemplates write them, get it from the DefaultStorageClass admission plugin; the
  real PV controller provisions a PV (an empty directory /tmp/hostpath_pv/<uuid>), binds it, and deletes both when
  the claim goes (reclaim policy Delete);
- kwok also serves the kubelet API the API server dials for `pods/log` and `pods/portforward` (on the node's
  InternalIP 127.0.0.1 and the port kwok advertises in the Node status), so logs and port-forwards take the real
  path through the API server's authentication, authorization and proxying. As no container runs, what they reach
  is named stand-ins: every pod's logs are the file `container_log`, and every pod port forwards to `PodStandIn`,
  a TCP echo server in this process.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import support

from sagaz_lakehouse import versions

VERSIONS = versions.KUBE_TEST_CLUSTER
NODE_ANNOTATION = "kwok.x-k8s.io/node"  # kwok manages the Nodes with this annotation = "fake"
NODE_CAPACITY = {"cpu": "64", "memory": "256Gi", "pods": "200", "ephemeral-storage": "1Ti"}
NODES = ("kwok-node-0",)
ZONE_LABEL = "topology.kubernetes.io/zone"
# A cluster of three zones with two nodes each, for the topology tests (start_cluster(..., nodes=ZONED_NODES)).
ZONED_NODES = {f"kwok-{zone}-{i}": {ZONE_LABEL: f"zone-{zone}"} for zone in "abc" for i in range(2)}
STORAGE_CLASS = "standard"
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"  # as kubeadm names it
START_TIMEOUT = 60.0
ERROR_LINE = re.compile(r'^(Error:|[EF]\d{4} )|"level":"(error|fatal|panic|ERROR)"')  # klog, cobra, zap, slog


def _http(url: str, context: ssl.SSLContext, method: str = "GET", body: bytes | None = None,
          headers: dict[str, str] | None = None, timeout: float = 10) -> bytes:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310 - loopback
        return response.read()


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the test process dies, even by SIGKILL (Linux prctl)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class _Process:
    def __init__(self, name: str, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.log = name, log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env={**os.environ, **(env or {})}, preexec_fn=_die_with_parent)

    def lines(self) -> list[str]:
        try:
            return self.log.read_text(errors="replace").splitlines()
        except OSError as exc:
            return [f"(no log: {exc})"]

    def tail(self, n: int) -> str:
        return "\n".join(self.lines()[-n:])

    def errors(self, n: int = 10) -> list[str]:
        """The first `n` error lines of the log (a bad flag is reported above a long usage text)."""
        return [line for line in self.lines() if ERROR_LINE.search(line)][:n]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def cri_log_line(message: str) -> str:
    """A container log line as the kubelet stores it (CRI format), which is what kwok serves."""
    return f"2026-01-01T00:00:00.000000000Z stdout F {message}\n"


class PodStandIn:
    """Stand-in for every container port (no container runs): a TCP server on loopback that greets each connection
    with GREETING and then echoes what it receives."""

    GREETING = b"pod stand-in\n"

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True, name="pod stand-in").start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.sendall(self.GREETING)
            while data := conn.recv(65536):
                conn.sendall(data)

    def close(self) -> None:
        self._server.close()


class TestCluster:
    """The running control plane; a context manager that stops every process it started on exit.

    `kubeconfig` (mode 0600) has the contexts `admin_context` (current) and `limited_context`; `server` is the API
    server's URL; `log_dir` holds one log file per component, and `log_tail()` quotes them for failure messages."""

    __test__ = False  # not a pytest test class

    admin_context = "admin"
    limited_context = "limited"

    def __init__(self, workdir: Path, *, service_cidr: str = "10.96.0.0/16", kwok: bool = True,
                 users: dict[str, str] | None = None, nodes: dict[str, dict[str, str]] | None = None) -> None:
        """``users``: more token users (name -> user name, e.g. {"kubelet": "system:node:n"}); a real kubelet also
        needs the API server's kubelet client certificate (``kubelet_ca`` and ``kubelet_client_*`` in ``pki``).
        ``nodes``: the fake nodes kwok runs, by name, with labels of their own (default: NODES, no extra labels)."""
        self.workdir = workdir
        self.nodes = nodes or {name: {} for name in NODES}
        self.log_dir = workdir / "logs"
        self.kubeconfig = workdir / "kubeconfig"
        self.server = ""
        self.version = VERSIONS["kubernetes"]
        self.service_cidr = service_cidr
        self.with_kwok = kwok
        self.pki = workdir / "pki"
        self.processes: list[_Process] = []
        self._users = {"kube-controller-manager": "system:kube-controller-manager",
                       "kube-scheduler": "system:kube-scheduler", **(users or {})}  # bootstrap RBAC binds these
        self._tokens = {name: secrets.token_hex(16) for name in
                        ("admin", "limited", "kube-controller-manager", "kube-scheduler", "kwok", *(users or {}))}
        self._ca = b""
        self.pod_stand_in: PodStandIn | None = None
        self.container_log = workdir / "container.log"

    def __enter__(self) -> TestCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- public helpers -------------------------------------------------------------------------------------------
    def log_tail(self, n: int = 40) -> str:
        """The last `n` lines of every component's log, each under a header."""
        return "\n".join(f"--- {p.name} ({p.log}) ---\n{p.tail(n)}" for p in self.processes)

    def api_client(self, context: str | None = None) -> Any:
        """A `kubernetes` ApiClient for a context of the kubeconfig (default: admin)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig), context=context or self.admin_context)

    def request(self, method: str, path: str, body: Any = None, user: str = "admin") -> Any:
        """One JSON request to the API server as `user` (admin or limited); raises urllib.error.HTTPError."""
        answer = _http(self.server + path, ssl.create_default_context(cadata=self._ca.decode()), method,
                       None if body is None else json.dumps(body).encode(),
                       {"Authorization": f"Bearer {self._tokens[user]}", "Content-Type": "application/json",
                        "Accept": "application/json"})
        return json.loads(answer or b"null")

    # -- start-up ---------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        binaries = {name: support.tool(f"{name}-{VERSIONS[key]}") for name, key in
                    (("etcd", "etcd"), ("kube-apiserver", "kubernetes"), ("kube-controller-manager", "kubernetes"),
                     ("kube-scheduler", "kubernetes"), ("kwok", "kwok"))}
        pki = self.pki
        pki.mkdir()
        for args in (["genrsa", "-out", pki / "sa.key", "2048"],
                     ["rsa", "-in", pki / "sa.key", "-pubout", "-out", pki / "sa.pub"]):
            subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
        # The client certificate the API server shows a kubelet (pods/log, exec, port-forward), from a CA of its own
        # that a real kubelet trusts; kwok does not ask for one.
        for args in (["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=kubelet-client-ca",
                      "-keyout", pki / "kubelet-ca.key", "-out", pki / "kubelet-ca.crt"],
                     ["req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={KUBELET_CLIENT_USER}",
                      "-keyout", pki / "kubelet-client.key", "-out", pki / "kubelet-client.csr"],
                     ["x509", "-req", "-in", pki / "kubelet-client.csr", "-CA", pki / "kubelet-ca.crt",
                      "-CAkey", pki / "kubelet-ca.key", "-CAcreateserial", "-days", "2",
                      "-out", pki / "kubelet-client.crt"]):
            subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
        tokens = self.workdir / "tokens.csv"
        groups = {"admin": "system:masters", "kwok": "system:masters"}  # kwok acts for every fake kubelet
        groups |= {name: "system:nodes" for name, user in self._users.items() if user.startswith("system:node:")}
        tokens.write_text("".join(
            f'{token},{self._users.get(name, name)},uid-{name}' + (f',"{groups[name]}"' if name in groups else "")
            + "\n" for name, token in self._tokens.items()))
        tokens.chmod(0o600)

        etcd_port, peer_port, api_port = support.free_port(), support.free_port(), support.free_port()
        etcd = self._spawn("etcd", binaries["etcd"], [
            "--name=test", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_port}", f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=test=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync",  # a throwaway cluster: durability buys nothing, fsync costs seconds
            "--log-level=warn"])
        self._wait(etcd, f"http://127.0.0.1:{etcd_port}/health", lambda body: b'"health":"true"' in body)

        apiserver = self._spawn("kube-apiserver", binaries["kube-apiserver"], [
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
            f"--cert-dir={pki}",  # a self-signed serving certificate (apiserver.crt: the cert, then its CA)
            f"--token-auth-file={tokens}", "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={self.service_cidr}", "--allow-privileged=true",
            # the `kubernetes` Service's Endpoints may not hold a loopback address: keep the reconciler quiet
            "--endpoint-reconciler-type=none", "--profiling=false",
            # pods/log and pods/portforward dial kwok at the node's InternalIP; its self-signed serving certificate
            # goes unverified, as without --kubelet-certificate-authority on any cluster
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'kubelet-client.key'}"])
        self.server = f"https://127.0.0.1:{api_port}"
        self._wait(apiserver, f"{self.server}/readyz", lambda body: body.strip() == b"ok",
                   headers={"Authorization": f"Bearer {self._tokens['admin']}"}, verify=False)
        self._ca = (pki / "apiserver.crt").read_bytes()
        self._write_kubeconfigs()

        kcm_port, sched_port, kwok_port = support.free_port(), support.free_port(), support.free_port()
        kcm = self._spawn("kube-controller-manager", binaries["kube-controller-manager"], [
            f"--kubeconfig={self.workdir / 'kube-controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1", f"--secure-port={kcm_port}", f"--cert-dir={self.workdir / 'kcm-certs'}",
            "--leader-elect=false", "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'apiserver.crt'}",
            "--enable-hostpath-provisioner=true", "--controllers=*", "--profiling=false"])
        scheduler = self._spawn("kube-scheduler", binaries["kube-scheduler"], [
            f"--kubeconfig={self.workdir / 'kube-scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1", f"--secure-port={sched_port}",
            f"--cert-dir={self.workdir / 'scheduler-certs'}", "--leader-elect=false", "--profiling=false"])
        self._wait(kcm, f"https://127.0.0.1:{kcm_port}/healthz", lambda body: body.strip() == b"ok", verify=False)
        self._wait(scheduler, f"https://127.0.0.1:{sched_port}/healthz", lambda body: body.strip() == b"ok",
                   verify=False)
        self._until("the default ServiceAccount", kcm,
                    lambda: self._exists("/api/v1/namespaces/default/serviceaccounts/default"))
        # The API server's kubelet client may do everything on a kubelet (kubeadm binds the same role).
        self.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
            "metadata": {"name": "sagaz-test:kubelet-api-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "system:kubelet-api-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": KUBELET_CLIENT_USER}]})
        if not self.with_kwok:
            return
        kwok = self._spawn("kwok", binaries["kwok"], [
            f"--kubeconfig={self.workdir / 'kwok.kubeconfig'}",
            "--manage-all-nodes=false", f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
            f"--server-address=127.0.0.1:{kwok_port}", "--node-ip=127.0.0.1", f"--node-port={kwok_port}",
            "--cidr=10.244.0.0/16", "--node-lease-duration-seconds=40", f"--config={self._kwok_config()}"],
            env={"KWOK_WORKDIR": str(self.workdir / "kwok")})  # not ~/.kwok: no user config leaks in
        self._wait(kwok, f"http://127.0.0.1:{kwok_port}/healthz", lambda body: body.strip() == b"ok")

        self.request("POST", "/apis/storage.k8s.io/v1/storageclasses", {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": STORAGE_CLASS,
                         "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "kubernetes.io/host-path", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"})
        for name, extra in self.nodes.items():
            self.request("POST", "/api/v1/nodes", {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "annotations": {NODE_ANNOTATION: "fake"},
                             "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                        "kubernetes.io/arch": "amd64", "type": "kwok", **extra}},
                "status": {"capacity": NODE_CAPACITY, "allocatable": NODE_CAPACITY,
                           "nodeInfo": {"kubeletVersion": self.version}}})
        # Ready only once kwok has taken the nodes (the controllers made the default ServiceAccount above: the
        # ServiceAccount admission plugin refuses pods until it exists).
        self._until("the nodes to be Ready and untainted", kwok, lambda: all(self.node_ready(n) for n in self.nodes))

    def _kwok_config(self) -> Path:
        """kwok's ClusterPortForward and ClusterLogs for every pod: the stand-in server and the stand-in log."""
        self.pod_stand_in = PodStandIn()
        self.container_log.write_text("".join(cri_log_line(f"stand-in log line {i}") for i in range(1, 41)))
        api = "kwok.x-k8s.io/v1alpha1"
        documents = [
            {"apiVersion": api, "kind": "ClusterPortForward", "metadata": {"name": "pod-stand-in"},
             "spec": {"forwards": [{"target": {"address": "127.0.0.1", "port": self.pod_stand_in.port}}]}},
            {"apiVersion": api, "kind": "ClusterLogs", "metadata": {"name": "stand-in-log"},
             "spec": {"logs": [{"logsFile": str(self.container_log)}]}},
        ]
        path = self.workdir / "kwok.yaml"
        path.write_text("\n---\n".join(json.dumps(d) for d in documents) + "\n")  # JSON is YAML
        return path

    def _spawn(self, name: str, binary: Path, args: list[str], env: dict[str, str] | None = None) -> _Process:
        process = _Process(name, [str(binary), *args], self.log_dir / f"{name}.log", env)
        self.processes.append(process)
        return process

    def _wait(self, process: _Process, url: str, healthy: Any, headers: dict[str, str] | None = None,
              verify: bool = True) -> None:
        ctx = ssl.create_default_context()
        if not verify:  # self-signed serving certificates, made at start-up
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        last = "no answer yet"

        def probe() -> bool:
            nonlocal last
            try:
                body = _http(url, ctx, headers=headers, timeout=2)
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}: {exc.read()[-500:].decode(errors='replace')}"
                return False
            except OSError as exc:
                last = str(exc)
                return False
            last = body[-200:].decode(errors="replace")
            return bool(healthy(body))

        self._until(f"{url} to answer healthy", process, probe, lambda: f" (last answer: {last})")

    def _until(self, what: str, process: _Process, check: Any, detail: Any = None) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.popen.poll() is not None:
                self.fail(f"{process.name} exited with code {process.popen.returncode}", process)
            if check():
                return
            if time.monotonic() > deadline:
                self.fail(f"{process.name}: timed out after {START_TIMEOUT:.0f} s waiting for "
                           + what + (detail() if detail else ""), process)
            time.sleep(0.2)

    def fail(self, message: str, process: _Process) -> None:
        errors = "".join(f"\n  {line}" for line in process.errors())
        pytest.fail(f"test cluster: {message}" + (f"\nits first errors:{errors}" if errors else "")
                    + f"\n--- {process.name} log ({process.log}) ---\n{process.tail(60)}", pytrace=False)

    def _exists(self, path: str) -> bool:
        try:
            self.request("GET", path)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise
        return True

    def node_ready(self, name: str) -> bool:
        """Ready, and the node lifecycle controller has lifted the not-ready taint that admission put on it."""
        node = self.request("GET", f"/api/v1/nodes/{name}")
        conditions = node.get("status", {}).get("conditions") or []
        taints = node.get("spec", {}).get("taints") or []
        return (any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
                and not any(t["key"].startswith("node.kubernetes.io/") for t in taints))

    def kubeconfig_for(self, name: str, path: Path) -> Path:
        """A kubeconfig (mode 0600) authenticating as token user ``name`` (one of ``users``)."""
        self._kubeconfig(path, {name: name}, name)
        return path

    def _kubeconfig(self, path: Path, users: dict[str, str], current: str) -> None:
        ca = base64.b64encode(self._ca).decode()
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": current,
            "clusters": [{"name": "test", "cluster": {"server": self.server, "certificate-authority-data": ca}}],
            "users": [{"name": context, "user": {"token": self._tokens[user]}} for context, user in users.items()],
            "contexts": [{"name": context, "context": {"cluster": "test", "user": context}} for context in users],
        }, indent=1))
        path.chmod(0o600)

    def _write_kubeconfigs(self) -> None:
        kubeconfig = self._kubeconfig
        kubeconfig(self.kubeconfig, {self.admin_context: "admin", self.limited_context: "limited"},
                   self.admin_context)
        for component in ("kube-controller-manager", "kube-scheduler", "kwok"):
            kubeconfig(self.workdir / f"{component}.kubeconfig", {component: component}, component)

    # -- shutdown ---------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stops every process (newest first); removes the etcd data (its write-ahead log alone preallocates
        64 MB) and the host-path volumes the cluster provisioned. The logs stay in `log_dir`."""
        volumes = []
        if self.server and self._ca:
            with contextlib.suppress(Exception):
                volumes = [pv["spec"]["hostPath"]["path"] for pv in
                           self.request("GET", "/api/v1/persistentvolumes")["items"]
                           if pv["spec"].get("hostPath", {}).get("path", "").startswith("/tmp/hostpath_pv/")]
        for process in reversed(self.processes):
            process.stop()
        if self.pod_stand_in:
            self.pod_stand_in.close()
        for path in [*volumes, self.workdir / "etcd"]:
            shutil.rmtree(path, ignore_errors=True)


def start_cluster(workdir: Path, nodes: dict[str, dict[str, str]] | None = None) -> TestCluster:
    """Starts a TestCluster in `workdir` (an empty folder) and returns it once every component is healthy, the fake
    nodes (``nodes``, default NODES) are Ready and the default ServiceAccount exists; on any failure, stops what it
    started and fails the test with the log tail of the component at fault."""
    cluster = TestCluster(workdir, nodes=nodes)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster
