"""Helpers shared by the test suites (importable as `support`: tests/ is on sys.path via its conftest)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from running import RunningStack

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "sagaz_lakehouse"]


class SuiteStack(RunningStack):
    """A running stack (running.RunningStack) whose failed commands fail the test, with their output and no
    traceback."""

    def fail(self, message: str) -> NoReturn:
        pytest.fail(message, pytrace=False)

    def diagnosis(self, *args: str) -> str:
        """A local stack's own evidence: each log's last warnings and errors, and the tiering service's last steps
        (the stack's folder is purged when the module ends, so this is all a CI failure leaves)."""
        logs = self.run_dir / "logs"
        if not logs.is_dir():
            return ""
        excerpts = [f"--- {path.name}: last warnings, errors and tiering steps ---\n{excerpt}"
                    for path in sorted(logs.glob("*.log")) if (excerpt := log_excerpt(path))]
        # What the watchdog did (restarts, liveness verdicts) and the maintenance service's last runs, as they are.
        for path in (self.run_dir / "watchdog" / "watchdog.log", logs / "lake-maintenance.log"):
            if path.exists():
                excerpts.append(f"--- {path.name}: last lines ---\n{log_tail(path)}")
        return "\n".join(excerpts)


# What a failed command's diagnosis keeps from a local log: problems, and the tiering service's round trips (the
# enumerator in the JobManager, the committer in the TaskManager, the tiering manager in the coordinator).
LOG_EVIDENCE = ("WARN", "ERROR", "Exception", "TieringSourceEnumerator", "Committed snapshot", "LakeTableTiering",
                "switched from")
# The enumerator's idle polling (every 2 s): it would crowd out the rest.
LOG_POLLING = ("No available Tiering table found", "currentFinishedTables: {}")


def _last(lines: list[str], count: int, chars: int) -> str:
    """The last ``count`` lines, each cut at 400 characters, at most ``chars`` characters in all."""
    return "\n".join(line[:400] for line in lines[-count:])[-chars:]


def log_tail(path: Path, lines: int = 15, chars: int = 3000) -> str:
    return _last(path.read_text(errors="replace").splitlines(), lines, chars)


def log_excerpt(path: Path, lines: int = 25, chars: int = 4000) -> str:
    """The last ``lines`` lines of ``path`` that carry evidence (LOG_EVIDENCE), at most ``chars`` characters."""
    kept = [line for line in path.read_text(errors="replace").splitlines() if any(m in line for m in LOG_EVIDENCE)
            and not any(m in line for m in LOG_POLLING)]
    return _last(kept, lines, chars)


def cache_dir() -> Path:
    """The download/build cache shared with `make tools` (outside the clone)."""
    return Path(os.environ.get("SAGAZ_LAKEHOUSE_LOCAL__CACHE_DIR", "~/.cache/sagaz-lakehouse")).expanduser()


def tool(name: str) -> Path:
    """A binary installed by `make tools`; a missing one fails the test (never a silent skip)."""
    path = cache_dir() / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make tools` (scripts/install-tools.sh) first", pytrace=False)
    return path


def debian_program(script: str, *args: str) -> str:
    """The last line a scripts/ installer prints (a program's path), after it installed Debian's package when missing
    (chromium.sh, postgresql.sh); its failure fails the test with its output."""
    found = subprocess.run(["bash", str(REPO / "scripts" / script), *args], capture_output=True, text=True,
                           timeout=900)
    if found.returncode != 0:
        pytest.fail(f"scripts/{script} failed:\n{found.stderr[-3000:]}", pytrace=False)
    return found.stdout.strip().splitlines()[-1]


def log_files(run_dir: Path) -> list[Path]:
    """Every log a local stack wrote under ``run_dir``: the supervisor's logs/ and the servers' own *.log, *.out and
    *.err files (not the config folders, whose 0600 secret files are where a secret belongs)."""
    return [p for p in run_dir.rglob("*")
            if p.is_file() and (p.suffix in (".log", ".out", ".err") or p.parent.name == "logs")]


def cli(workdir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """The real command line, in ``workdir``, without credential variables from the caller's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGAZ_LAKEHOUSE_S3_")}
    return subprocess.run([*CLI, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)


def must(result: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    """Fail the test with both output streams unless the command succeeded."""
    if result.returncode != 0:
        pytest.fail(f"`{what}` exited {result.returncode}\n--- stdout ---\n{result.stdout[-4000:]}\n"
                    f"--- stderr ---\n{result.stderr[-6000:]}", pytrace=False)
    return result


def init_with_ports(workdir: Path, ports: dict[str, int]) -> Path:
    """`init` in ``workdir``, then move the stack to ``ports`` so suites never collide; returns the settings file."""
    import yaml

    missing = sorted(set(port_names()) - set(ports))
    if missing:  # a port left at its default would meet the same default of a stack running beside this one
        pytest.fail(f"the suite's ports miss {missing}: use support.suite_ports", pytrace=False)

    from sagaz_lakehouse import config

    must(cli(workdir, "init"), "init")
    settings_file = workdir / config.CONFIG_FILENAME
    values = yaml.safe_load(settings_file.read_text()) or {}  # init writes every default commented out
    values["ports"] = {**values.get("ports", {}), **ports}
    settings_file.write_text(yaml.safe_dump(values))
    return settings_file


def port_names() -> list[str]:
    """Every port setting of the stack (config.Ports), so a new port is covered by every helper below."""
    from sagaz_lakehouse import config

    return [f.name for f in dataclasses.fields(config.Ports)]


# Ports a test binds itself (control planes, artifact servers, the settings of a preflight test) come from
# 13000-16999, a quarter per pytest-xdist worker so two lanes never pick the same one, and below the kernel's
# ephemeral range (see SUITE_BASES) so nothing else takes one between the probe and the bind.
OWN_PORTS_BASE = 13000
OWN_PORTS_PER_WORKER = 1000
_next_own_port = 0


def _worker_slot() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # gw0, gw1, ...; unset outside pytest-xdist
    return int(worker.removeprefix("gw") or 0) % 4


def _nobody_listens(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", port))  # noqa: S104 - only asks whether the port is free on every address
        except OSError:
            return False
    return True


def free_ports(count: int, stride: int = 1) -> list[int]:
    """``count`` ports nobody listens on now, from this worker's own range, each with the ``stride - 1`` ports after
    it free too (room for instances). Consecutive calls hand out different ones until the range wraps, so a port
    just chosen is not chosen again while its server starts."""
    global _next_own_port
    base = OWN_PORTS_BASE + OWN_PORTS_PER_WORKER * _worker_slot()
    found: list[int] = []
    for _ in range(OWN_PORTS_PER_WORKER // stride):
        port = base + _next_own_port
        _next_own_port = (_next_own_port + stride) % (OWN_PORTS_PER_WORKER - stride + 1)
        if all(_nobody_listens(p) for p in range(port, port + stride)):
            found.append(port)
            if len(found) == count:
                return found
    raise RuntimeError(f"fewer than {count} free ports {stride} apart in {base}-{base + OWN_PORTS_PER_WORKER - 1}")


def free_port() -> int:
    return free_ports(1)[0]


def free_port_settings() -> dict[str, int]:
    """Every port of the stack on a free one. Tests that reach `up`'s port check use these: the defaults may be held
    by a stack of another suite running beside them, or by the user's own `make up`."""
    names = port_names()
    return dict(zip(names, free_ports(len(names), PORT_STRIDE), strict=True))  # instances use port + i


# Each suite's stack has a block of ports of its own, below the kernel's ephemeral range (32768-60999 on Linux, see
# /proc/sys/net/ipv4/ip_local_port_range): a port in that range can be taken at any moment by an outgoing connection
# or a random listener (Flink, Trino, a client) of the stack running in the other test lane.
PORT_STRIDE = 10  # room for instances: a fanned-out setting (tablet servers, task managers) uses port + i
PORT_BLOCK = 200  # per suite: 20 settings x 10, the last of which leaves room for suite_port
SUITE_BASES = {"listener": 11000, "local-stack": 11200, "compose": 11400, "kubernetes": 11600, "analytics": 11800,
               "faults": 12000, "observability": 12200, "external-store": 12400,
               "external-catalog": 12600, "topology": 12800}


def suite_ports(suite: str) -> dict[str, int]:
    """Every port of the stack for ``suite``: its block's base + 10 x the setting's position in config.Ports, e.g.
    11000 zookeeper, 11010 fluss_coordinator, 11020 fluss_tablet (11021 the second tablet server), ... No two suites
    meet, nor a stack on the defaults (a user's own `make up`), nor a port the kernel hands out."""
    base = SUITE_BASES[suite]
    names = port_names()
    assert len(names) * PORT_STRIDE <= PORT_BLOCK, "the port block is too small for config.Ports"
    assert names[-1] == SINGLE_LAST, "suite_port shares the last setting's slot: it must have one instance"
    return {name: base + PORT_STRIDE * i for i, name in enumerate(names)}


FLUSS_LAYOUT = ("fluss_internal", "fluss_coordinator", "fluss_tablet")


def fluss_ports_as_by_default(ports: dict[str, int], tablet_servers: int = 2) -> tuple[dict[str, int], str]:
    """``ports`` with Fluss's listeners laid out as the defaults lay them out (issue 22: only the defaults showed
    tablet 1's client port colliding with the internal listener): the default ports themselves when they are free
    on this host, else the same pattern moved to the suite's block (the internal port, the coordinator's and each
    tablet server's client ports keeping the defaults' distances). Returns the ports and which layout was used."""
    from sagaz_lakehouse import config

    defaults = config.Ports()
    client_ports = [defaults.fluss_coordinator + i for i in range(tablet_servers + 1)]
    if all(_nobody_listens(port) for port in client_ports):
        return {**ports, **{name: getattr(defaults, name) for name in FLUSS_LAYOUT}}, "the default Fluss ports"
    shift = ports["fluss_coordinator"] - defaults.fluss_coordinator
    moved = {name: getattr(defaults, name) + shift for name in FLUSS_LAYOUT}
    return {**ports, **moved}, f"the default Fluss ports' pattern, moved by {shift} (the defaults are taken)"


# The last port setting has one instance: the upper half of its slot is free for suite_port.
SINGLE_LAST = "catalog_db"


def suite_port(suite: str) -> int:
    """One more port in ``suite``'s block, after its stack's (for a process the test itself starts)."""
    return SUITE_BASES[suite] + PORT_BLOCK - PORT_STRIDE // 2


def operator_keystore(hosts: tuple[str, ...] = ("127.0.0.1",), valid_days: int = 30,
                      common_name: str = "operator test CA") -> tuple[str, str]:
    """A keystore as an operator would supply it (secrets.trino_tls): a leaf key and certificate for ``hosts``,
    signed by a CA of their own, whose certificate ends the chain. Returns (keystore PEM, the CA's certificate)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key, issuer: str, signer, ca: bool, names: list[x509.GeneralName]):
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=valid_days))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate(common_name, ca_key, common_name, ca_key, True, [])
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    leaf = certificate("trino", leaf_key, common_name, ca_key, False, names)
    pem = serialization.Encoding.PEM
    key_pem = leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    ca_pem = ca.public_bytes(pem).decode()
    return key_pem + leaf.public_bytes(pem).decode() + ca_pem, ca_pem


# Fluss's records in its ZooKeeper (ZkData, v0.9.1-incubating), under zookeeper.path.root, which the stack leaves at
# its default (ConfigOptions.ZOOKEEPER_ROOT): a tablet server's registration /tabletservers/ids/<id> (field "rack",
# TabletServerRegistrationJsonSerde), a table's /metadata/databases/<db>/tables/<table> ("table_id") and its
# assignment /tabletservers/tables/<table_id> ("buckets": bucket -> replica server ids, TableAssignmentJsonSerde).
FLUSS_ZOOKEEPER_ROOT = "/fluss"


@contextlib.contextmanager
def fluss_records(zookeeper: str) -> Iterator[Callable[[str], Any]]:
    """A reader of Fluss's records in the ZooKeeper at ``zookeeper`` (host:port): a path under the root -> the
    record's JSON, or the node's children for a path ending in "/"."""
    from kazoo.client import KazooClient

    client = KazooClient(hosts=zookeeper, timeout=10)
    client.start(timeout=30)

    def read(path: str) -> Any:
        if path.endswith("/"):
            return client.get_children(f"{FLUSS_ZOOKEEPER_ROOT}{path.rstrip('/')}")
        return json.loads(client.get(f"{FLUSS_ZOOKEEPER_ROOT}{path}")[0])

    try:
        yield read
    finally:
        client.stop()
        client.close()
