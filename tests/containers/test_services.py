"""Every long-running service of the current compose rendering, started one at a time in dependency order on the
stand-in images with exactly the environment, command, mounts and memory limit the rendered compose.yaml gives it,
must become healthy by its own compose healthcheck; then the tiering job submission must succeed.

Services start with `--no-deps` so that each test judges one service (its dependencies were started by the tests
before it). create-bucket is left out: it still runs the quay.io/minio/mc image, which sagaz-lakehouse is dropping
(no stand-in is built for it); the services here do not need the bucket to become healthy.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request

import pytest
from conftest import PORTS

from sagaz_lakehouse.components.tasks import TIERING_JOB_NAME

pytestmark = pytest.mark.containers

SERVICES = ["zookeeper", "minio", "rest-catalog", "fluss-coordinator", "fluss-tablet-0", "flink-jobmanager",
            "flink-taskmanager", "trino"]
ONE_SHOT = {"create-bucket", "submit-tiering"}
WAIT = 300  # seconds; Trino's own budget is 30 s start period + 60 retries x 5 s


def test_the_rendering_has_exactly_these_services(project):
    assert set(project.document["services"]) - ONE_SHOT == set(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_service_becomes_healthy(project, service):
    result = project.compose("up", "-d", "--wait", "--wait-timeout", str(WAIT), "--no-deps", service,
                             timeout=WAIT + 120)
    if result.returncode != 0:
        pytest.fail(f"{service} did not become healthy (`compose up --wait` exited {result.returncode}: "
                    f"{result.stderr.strip()[-800:]})\n{project.diagnosis(service)}", pytrace=False)
    state = project.compose("ps", "--format", "{{.Health}}", service).stdout.strip()
    assert state == "healthy", project.diagnosis(service)


def test_published_endpoints_answer_on_loopback(project):
    def http(port: int, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.read()

    assert b"endpoints" in http(PORTS["rest_catalog"], "/v1/config")
    assert b'"starting":false' in http(PORTS["trino"], "/v1/info").replace(b" ", b"")
    assert b'"taskmanagers":1' in http(PORTS["flink_rest"], "/overview")
    http(PORTS["minio"], "/minio/health/ready")
    for port in (PORTS["fluss_coordinator"], PORTS["fluss_tablet"]):
        socket.create_connection(("127.0.0.1", port), timeout=10).close()


def test_submit_tiering_starts_the_tiering_job(project):
    result = project.compose("up", "--no-deps", "--exit-code-from", "submit-tiering", "submit-tiering", timeout=600)
    if result.returncode != 0:
        pytest.fail(f"submit-tiering exited {result.returncode}\n{result.stdout[-3000:]}\n"
                    f"{project.diagnosis('flink-jobmanager')}", pytrace=False)
    deadline = time.monotonic() + 120
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORTS['flink_rest']}/jobs/overview",
                                    timeout=10) as response:
            states = {j["name"]: j["state"] for j in json.load(response)["jobs"]}
        if states.get(TIERING_JOB_NAME) == "RUNNING":
            return
        if time.monotonic() > deadline:
            pytest.fail(f"tiering job not RUNNING after 120 s: {states}\n"
                        f"{project.diagnosis('flink-taskmanager')}", pytrace=False)
        time.sleep(2)
