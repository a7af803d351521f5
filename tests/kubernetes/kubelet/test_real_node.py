"""Smoke test of the real single-node cluster (tests/kubernetes/node.py) itself: a non-root pod writes to a provisioned
local volume and serves it; another pod finds it by its Service's DNS name through CoreDNS and reaches it through
kube-proxy's ClusterIP rules; logs and port-forwards come from the real kubelet through the API server."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from node import NODE_NAME

from sagaz_lakehouse import versions

NAMESPACE = "smoke-real-node"
IMAGE = versions.PYTHON.image
TIMEOUT = 180


def wait_for(what: str, check: Any, cluster: Any, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}\n{pods_state(cluster)}\n"
                        f"{cluster.log_tail(30)}", pytrace=False)
        time.sleep(1)
    return result


def pods_state(cluster: Any) -> str:
    pods = cluster.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods")["items"]
    events = cluster.request("GET", f"/api/v1/namespaces/{NAMESPACE}/events")["items"]
    return ("--- pods ---\n" + "\n".join(f"{p['metadata']['name']}: {json.dumps(p.get('status', {}))[:1500]}"
                                         for p in pods)
            + "\n--- events ---\n" + "\n".join(f"{e.get('reason')}: {e.get('message')}" for e in events[-20:]))


def pod(name: str, script: str, **spec: Any) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                                         "runAsNonRoot": True},
                     "containers": [{"name": name, "image": IMAGE, "command": ["python3", "-c", script],
                                     "imagePullPolicy": "Never", **spec.pop("container", {})}],
                     **spec}}


SERVER = """
import http.server, os, socketserver
with open('/data/greeting', 'w') as f:
    f.write('hello from a local volume\\n')
os.chdir('/data')
print('serving /data', flush=True)
http.server.ThreadingHTTPServer(('', 8080), http.server.SimpleHTTPRequestHandler).serve_forever()
"""
CLIENT = """
import socket, time, urllib.request
name = 'web.smoke-real-node.svc.cluster.local'
print('resolved', name, 'to', socket.gethostbyname(name), flush=True)
for attempt in range(60):  # kube-proxy programs a Service's endpoints shortly after the pod is Ready
    try:
        answer = urllib.request.urlopen('http://web/greeting', timeout=10).read().decode().strip()
        break
    except OSError as exc:
        error = exc
        time.sleep(1)
else:
    raise SystemExit(f'the Service did not answer within a minute: {error}')
print(answer, flush=True)
try:
    socket.gethostbyname('pypi.org')
    print('outside name resolved')
except OSError:
    print('outside name not resolved')
"""


def phase(cluster: Any, name: str) -> str:
    return cluster.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}").get("status", {}).get("phase", "")


def test_pods_run_with_volumes_dns_services_logs_and_port_forwards(real_cluster):
    cluster = real_cluster
    cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
    base = f"/api/v1/namespaces/{NAMESPACE}"
    try:
        cluster.request("POST", f"{base}/persistentvolumeclaims", {
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
        cluster.request("POST", f"{base}/pods", pod(
            "web", SERVER, container={"ports": [{"containerPort": 8080}],
                                      "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                                      "readinessProbe": {"httpGet": {"path": "/greeting", "port": 8080},
                                                         "periodSeconds": 1}},
            volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]))
        cluster.request("POST", f"{base}/services", {
            "metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80,
                                                                                         "targetPort": 8080}]}})
        wait_for("pod web to be Ready", lambda: any(
            c["type"] == "Ready" and c["status"] == "True" for c in
            cluster.request("GET", f"{base}/pods/web").get("status", {}).get("conditions", [])), cluster)
        web = cluster.request("GET", f"{base}/pods/web")
        assert web["spec"]["nodeName"] == NODE_NAME
        assert web["status"]["containerStatuses"][0]["containerID"].startswith("containerd://")
        assert web["status"]["podIP"].startswith("10.214.0.")

        cluster.request("POST", f"{base}/pods", pod("client", CLIENT, restartPolicy="Never"))
        wait_for("pod client to finish", lambda: phase(cluster, "client") in ("Succeeded", "Failed"), cluster)
        from kubernetes import client as kube

        api = kube.CoreV1Api(cluster.control_plane.api_client())
        log = api.read_namespaced_pod_log("client", NAMESPACE)
        assert phase(cluster, "client") == "Succeeded", log + pods_state(cluster)
        lines = log.splitlines()
        assert lines[0].startswith("resolved web.smoke-real-node.svc.cluster.local to 10.215."), log
        assert lines[1:] == ["hello from a local volume", "outside name not resolved"], log
        assert api.read_namespaced_pod_log("web", NAMESPACE).splitlines()[0] == "serving /data"

        # A port-forward through the API server to the kubelet, as the driver opens them.
        from sagaz_lakehouse.targets.kubernetes.portforward import pod_opener

        stream, close = pod_opener(api, NAMESPACE)("web", 8080)
        try:
            stream.sendall(b"GET /greeting HTTP/1.0\r\n\r\n")
            answer = b""
            while chunk := stream.recv(65536):
                answer += chunk
        finally:
            close()
        assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"hello from a local volume\n"), answer
    finally:
        cluster.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}")
        wait_for("the namespace to go", lambda: NAMESPACE not in {
            n["metadata"]["name"] for n in cluster.request("GET", "/api/v1/namespaces")["items"]}, cluster)
    wait_for("the volume to be reclaimed", lambda: not cluster.request("GET", "/api/v1/persistentvolumes")["items"],
             cluster, timeout=60)
