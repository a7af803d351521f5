"""The shell inside the manifests, run for real with stand-ins for the images' programs (bash, no cluster): the
instance prelude, the exec probes, and the jar-fetching init container."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from manifest_helpers import Rendered, env, properties, render_variant

from sagaz_lakehouse import addresses
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components import build_stack, fluss
from sagaz_lakehouse.stack import View

ORDINALS = [0, 1, 2, 10]  # 10: a two-digit ordinal (the index is everything after the name's last '-')


def fake_program(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)
    return path


def run(command: list[str], env: dict[str, str], bin_dir: Path) -> subprocess.CompletedProcess:
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", **env}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    return render_variant({"replicas.tablet_servers": 3, "replicas.flink_taskmanagers": 2})


# ------------------------------------------------------------------------------------------------ the prelude


def start_instance(tmp_path: Path, container: dict, pod_name: str, pod_ip: str, extra_args: tuple[str, ...] = ()
                   ) -> tuple[dict[str, str], list[str]]:
    """Runs the container's real command (the bash prelude) with the image's entrypoint replaced by a stand-in that
    records its environment and arguments; the environment is the container's own literal values plus what the
    kubelet would fill in (the pod's name and IP, the credentials from the Secret)."""
    entrypoint = fake_program(tmp_path, "entrypoint",
                              f'env -0 > {tmp_path}/env; printf "%s\\0" "$@" > {tmp_path}/args\n')
    values = {name: value for name, value in env(container).items() if isinstance(value, str)}
    values.update(POD_NAME=pod_name, POD_IP=pod_ip, S3_ACCESS_KEY="${S3_ACCESS_KEY}",
                  S3_SECRET_KEY="${S3_SECRET_KEY}")
    assert container["args"][0].startswith("/"), container["args"]  # the image's entrypoint, by absolute path
    args = [str(entrypoint), *container["args"][1:], *extra_args]
    out = run([*container["command"], *args], values, tmp_path)
    assert out.returncode == 0, out.stderr
    seen = dict(item.split("=", 1) for item in (tmp_path / "env").read_text().split("\0") if item)
    return seen, (tmp_path / "args").read_text().split("\0")[:-1]


@pytest.mark.parametrize("ordinal", ORDINALS)
def test_prelude_gives_each_tablet_its_own_properties(tmp_path, rendered, ordinal):
    settings = rendered.settings
    container = rendered.main(s.TABLET)
    pod, ip = f"{s.TABLET}-{ordinal}", f"10.0.0.{ordinal + 7}"
    seen, args = start_instance(tmp_path, container, pod, ip)
    assert args == ["tabletServer"]
    props = properties(seen["FLUSS_PROPERTIES"], ":")
    # Exactly what the model gives this instance when its values are concrete (as on compose and local).
    component = build_stack(settings, View.INTERNAL).get(s.TABLET)
    concrete = s.concrete_instance(component, pod, host=ip, data=component.data_dir, conf=component.conf_dir,
                                   address=f"{pod}.{s.TABLET}-headless")
    assert props == fluss.server_properties(settings, View.INTERNAL, s.TABLET, concrete)
    assert props["tablet-server.id"] == str(ordinal)
    assert props["bind.listeners"] == (f"INTERNAL://{ip}:{settings.ports.fluss_internal}, "
                                       f"CLIENT://{addresses.ANY_ADDRESS}:{addresses.FLUSS_CLIENT_PORT}")
    # Where `kubectl port-forward pod/fluss-tablet-i` puts it on the host (KubernetesDriver.forwards).
    assert props["advertised.listeners"] == (f"CLIENT://127.0.0.1:{settings.ports.fluss_tablet + ordinal}, "
                                             f"INTERNAL://{pod}.{s.TABLET}-headless:{settings.ports.fluss_internal}")
    assert "${INSTANCE_" not in seen["FLUSS_PROPERTIES"]
    # The credential placeholders are left for the image's envsubst.
    assert props["s3.secret-key"] == "${S3_SECRET_KEY}" and props["s3.access-key"] == "${S3_ACCESS_KEY}"
    assert (seen["INSTANCE_NAME"], seen["INSTANCE_INDEX"], seen["INSTANCE_HOST"]) == (pod, str(ordinal), ip)


def test_prelude_binds_the_coordinator_to_its_pod_ip(tmp_path, rendered):
    settings = rendered.settings
    seen, args = start_instance(tmp_path, rendered.main(s.COORDINATOR), f"{s.COORDINATOR}-0", "10.1.2.3")
    assert args == ["coordinatorServer"]
    props = properties(seen["FLUSS_PROPERTIES"], ":")
    internal = settings.ports.fluss_internal
    assert props["bind.listeners"] == f"INTERNAL://10.1.2.3:{internal}, CLIENT://0.0.0.0:9123"
    assert props["advertised.listeners"] == (f"CLIENT://127.0.0.1:{settings.ports.fluss_coordinator}, "
                                             f"INTERNAL://{s.COORDINATOR}-0.{s.COORDINATOR}-headless:{internal}")
    assert "tablet-server.id" not in props and "${INSTANCE_" not in seen["FLUSS_PROPERTIES"]


@pytest.mark.parametrize("ordinal", ORDINALS)
def test_prelude_names_each_taskmanager_after_its_pod(tmp_path, rendered, ordinal):
    container = rendered.main(s.TASKMANAGER)
    pod = f"{s.TASKMANAGER}-{ordinal}"
    seen, args = start_instance(tmp_path, container, pod, "10.9.9.9")
    assert args == ["start-foreground", f"-Dtaskmanager.resource-id={pod}"]
    assert seen["AWS_REGION"] == env(container)["AWS_REGION"]  # the environment is nothing instance-specific


def test_prelude_substitutes_without_evaluating(tmp_path, rendered):
    """Values are replaced as text: no command substitution, globbing or word splitting of what they hold."""
    (tmp_path / "marker").write_text("")
    tricky = ("$(touch pwned) `touch pwned` * ${INSTANCE_INDEX}", "a  b", "")
    _, args = start_instance(tmp_path, rendered.main(s.TASKMANAGER), f"{s.TASKMANAGER}-1", "10.0.0.1", tricky)
    assert args[2:] == ["$(touch pwned) `touch pwned` * 1", "a  b", ""]
    assert not list(Path.cwd().glob("pwned")) and not (tmp_path / "pwned").exists()


def test_prelude_fails_without_the_pod_name(tmp_path, rendered):
    container = rendered.main(s.TABLET)
    out = run([*container["command"], "true"], {"POD_IP": "10.0.0.1", "FLUSS_PROPERTIES": "x: y"}, tmp_path)
    assert out.returncode != 0 and "POD_NAME" in out.stderr


# ------------------------------------------------------------------------------------------- the exec probes


def probe(rendered: Rendered, name: str) -> list[str]:
    container = rendered.main(name)
    actions = [container[kind]["exec"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")]
    assert actions[0] == actions[1] == actions[2]
    return container["readinessProbe"]["exec"]["command"]


TASKMANAGERS = ('{"taskmanagers":[{"id":"%s","path":"pekko.tcp://flink@10.0.0.5:6122/user/rpc/taskmanager_0",'
                '"dataPort":38891,"slotsNumber":2,"freeSlots":2}]}')


@pytest.mark.parametrize(("listed", "ready"), [
    ("flink-taskmanager-1", True),
    ("flink-taskmanager-10", False),  # another TaskManager whose name starts like ours
    ("flink-taskmanager-0", False),
])
def test_taskmanager_is_ready_once_the_jobmanager_lists_it(tmp_path, rendered, listed, ready):
    settings = rendered.settings
    (tmp_path / "answer").write_text(TASKMANAGERS % listed)
    # wget -q -O - URL → the canned /taskmanagers answer, only for the JobManager's address.
    url = f"http://{s.JOBMANAGER}:{settings.ports.flink_rest}/taskmanagers"
    fake_program(tmp_path, "wget", f'[ "$4" = "{url}" ] && cat {tmp_path}/answer\n')
    out = run(probe(rendered, s.TASKMANAGER), {"POD_NAME": "flink-taskmanager-1"}, tmp_path)
    assert (out.returncode == 0) is ready, out.stderr


def test_taskmanager_is_not_ready_while_the_jobmanager_does_not_answer(tmp_path, rendered):
    fake_program(tmp_path, "wget", "exit 4\n")
    out = run(probe(rendered, s.TASKMANAGER), {"POD_NAME": "flink-taskmanager-1"}, tmp_path)
    assert out.returncode != 0


@pytest.mark.parametrize(("answer", "ready"), [
    ('{"nodeVersion":{"version":"476"},"environment":"sagaz_lakehouse","coordinator":true,"starting":false,'
     '"uptime":"1.00m"}', True),
    ('{"nodeVersion":{"version":"476"},"environment":"sagaz_lakehouse","coordinator":true,"starting":true,'
     '"uptime":"5.00s"}', False),
    (None, False),  # not answering yet
])
def test_trino_is_ready_once_it_no_longer_reports_starting(tmp_path, answer, ready):
    rendered = render_variant({"replicas.trino_workers": 1})
    url = f"http://127.0.0.1:{rendered.settings.ports.trino}/v1/info"
    body = f"cat {tmp_path}/answer" if answer is not None else "echo 'curl: (7) connection refused' >&2; exit 7"
    if answer is not None:
        (tmp_path / "answer").write_text(answer)
    fake_program(tmp_path, "curl", f'[ "${{@: -1}}" = "{url}" ] || exit 3\n{body}\n')
    for name in (s.TRINO, s.TRINO_WORKER):
        out = run(probe(rendered, name), {}, tmp_path)
        assert (out.returncode == 0) is ready, (name, out.stderr)


@contextlib.contextmanager
def four_letter_server(answer: bytes) -> Iterator[tuple[int, list[bytes]]]:
    """A stand-in ZooKeeper: reads one four-letter word, answers, closes (as ZooKeeper does)."""
    server = socket.create_server(("127.0.0.1", 0))
    asked: list[bytes] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = server.accept()
            with conn:
                asked.append(conn.recv(4))
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], asked
    finally:
        server.close()
        thread.join(5)


@pytest.mark.parametrize(("answer", "ready"), [
    (b"Zookeeper version: 3.9.2\nLatency min/avg/max: 0/0.0/0\nMode: standalone\nNode count: 5\n", True),
    (b"This ZooKeeper instance is not currently serving requests\n", False),
])
def test_zookeeper_is_ready_when_srvr_reports_a_mode(tmp_path, rendered, answer, ready):
    command = probe(rendered, s.ZOOKEEPER)
    client = f"/dev/tcp/127.0.0.1/{rendered.settings.ports.zookeeper}"
    assert client in command[-1]
    with four_letter_server(answer) as (port, asked):
        # The same command, pointed at the stand-in's free port (never the real ZooKeeper port).
        out = run([*command[:-1], command[-1].replace(client, f"/dev/tcp/127.0.0.1/{port}")], {}, tmp_path)
    assert asked == [b"srvr"]
    assert (out.returncode == 0) is ready, out.stderr


# ------------------------------------------------------------------------------------------------- fetch-jars


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
