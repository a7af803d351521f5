"""The shell scripts inside the manifests, run with stand-ins for the images' programs (bash, no cluster)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from manifest_helpers import containers, properties, render_variant, settings_for

from sagaz_lakehouse import stack as s
from sagaz_lakehouse import wiring
from sagaz_lakehouse.targets import kubernetes as k8s

pytestmark = pytest.mark.unit


def fake_program(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)


def run(command: list[str], env: dict[str, str], bin_dir: Path) -> subprocess.CompletedProcess:
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", **env}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("replicas", [1, 3])
def test_tablet_start_script_matches_wiring_for_every_ordinal(tmp_path, replicas):
    settings = settings_for(**{"replicas.tablet_servers": replicas})
    # The image's entrypoint is replaced by one that prints what it would append to server.yaml.
    script = k8s.fluss_start_script(settings, tablet=True).replace(
        "exec /docker-entrypoint.sh", f"exec {tmp_path}/entrypoint")
    fake_program(tmp_path, "entrypoint", 'printf "%s\\n" "$FLUSS_PROPERTIES"; echo "ARGS: $*"\n')
    for i in range(replicas):
        out = run(["bash", "-c", script], {"POD_NAME": f"{s.TABLET}-{i}", "POD_IP": f"10.0.0.{i + 7}",
                                           "FLUSS_PROPERTIES": "zookeeper.address: zookeeper:2181"}, tmp_path)
        assert out.returncode == 0, out.stderr
        props = properties(out.stdout.replace("ARGS:", "ARGS="), ":")
        wired = wiring.fluss_tablet_properties(settings, i)
        assert props["tablet-server.id"] == wired["tablet-server.id"] == str(i)
        assert props["advertised.listeners"] == wired["advertised.listeners"]
        assert props["bind.listeners"] == (f"INTERNAL://10.0.0.{i + 7}:{s.INTERNAL_FLUSS_PEER_PORT}, "
                                           f"CLIENT://10.0.0.{i + 7}:{s.INTERNAL_FLUSS_PORT}")
        assert props["zookeeper.address"] == "zookeeper:2181"  # the ConfigMap's part is kept
        assert "ARGS= tabletServer" in out.stdout.replace("ARGS:", "ARGS=")


def test_coordinator_start_script_binds_pod_ip(tmp_path):
    script = k8s.fluss_start_script(settings_for(), tablet=False).replace(
        "exec /docker-entrypoint.sh", f"exec {tmp_path}/entrypoint")
    fake_program(tmp_path, "entrypoint", 'printf "%s\\n" "$FLUSS_PROPERTIES"; echo "ARGS: $*"\n')
    out = run(["bash", "-c", script], {"POD_NAME": "fluss-coordinator-0", "POD_IP": "10.1.2.3",
                                       "FLUSS_PROPERTIES": "advertised.listeners: CLIENT://127.0.0.1:9123"}, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "bind.listeners: INTERNAL://10.1.2.3:9125, CLIENT://10.1.2.3:9123" in out.stdout
    assert "tablet-server.id" not in out.stdout and "coordinatorServer" in out.stdout


OVERVIEW = '{"jobs":[{"jid":"a1","name":"%s","start-time":1,"end-time":-1,"duration":5,"state":"%s",' \
           '"last-modification":2,"tasks":{"total":2,"running":2}}]}'


def submit_command(tmp_path: Path, overview: str) -> subprocess.CompletedProcess:
    job = next(containers(render_variant({}).get("Job", s.SUBMIT_TIERING), init=False))
    (tmp_path / "overview.json").write_text(overview)
    # wget -q -O FILE URL → copy the canned /jobs/overview answer; flink → record its arguments.
    fake_program(tmp_path, "wget", f'cp {tmp_path}/overview.json "$3"\n')
    fake_program(tmp_path, "flink", f'printf "%s\\n" "$@" > {tmp_path}/flink-args\n')
    return run([*job["command"], *job["args"]], {"TMPDIR": str(tmp_path)}, tmp_path)


def test_submit_skips_when_the_tiering_job_runs(tmp_path):
    out = submit_command(tmp_path, OVERVIEW % (wiring.TIERING_JOB_NAME, "RUNNING"))
    assert out.returncode == 0, out.stderr
    assert "already active" in out.stdout and not (tmp_path / "flink-args").exists()


@pytest.mark.parametrize("overview", [
    '{"jobs":[]}',
    OVERVIEW % (wiring.TIERING_JOB_NAME, "FAILED"),
    OVERVIEW % ("some other job", "RUNNING"),
])
def test_submit_runs_flink_otherwise(tmp_path, overview):
    out = submit_command(tmp_path, overview)
    assert out.returncode == 0, out.stderr
    args = (tmp_path / "flink-args").read_text().splitlines()
    assert args[:2] == ["run", "--detached"] and wiring.TIERING_MAIN_CLASS in args
    assert args[args.index(wiring.TIERING_MAIN_CLASS) + 2:] == wiring.tiering_job_arguments(settings_for())


def fetch_command(tmp_path: Path, sha: str) -> subprocess.CompletedProcess:
    init = render_variant({}).get("StatefulSet", s.COORDINATOR)["spec"]["template"]["spec"]["initContainers"][0]
    (tmp_path / "jar").write_bytes(b"jar bytes")
    fake_program(tmp_path, "wget", f'cp {tmp_path}/jar "$3"\n')
    out_dir = tmp_path / "artifacts"
    out_dir.mkdir(exist_ok=True)
    args = [str(out_dir), "https://example.invalid/x.jar", sha, "x.jar"]
    return run([*init["command"], *args], {}, tmp_path)


def test_fetch_jars_keeps_a_verified_download(tmp_path):
    out = fetch_command(tmp_path, hashlib.sha256(b"jar bytes").hexdigest())
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "artifacts" / "x.jar").read_bytes() == b"jar bytes"


def test_fetch_jars_fails_on_a_digest_mismatch(tmp_path):
    out = fetch_command(tmp_path, "0" * 64)
    assert out.returncode != 0 and "sha256 mismatch" in out.stderr
    assert not (tmp_path / "artifacts" / "x.jar").exists()
