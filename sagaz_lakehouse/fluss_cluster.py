"""Which tablet servers the Fluss coordinator has accepted into the cluster, and why one is missing.

A tablet server that runs and answers on its port is not necessarily a member: it registers in ZooKeeper, and the
coordinator's ``TabletServerChangeWatcher`` decodes the registration before it counts the server. When decoding
fails (two listeners on one port, issue 22) the coordinator logs the exception and goes on without the server, so a
table needing more replicas than the members cannot be created (``INVALID_REPLICATION_FACTOR``, error 17). ``up``,
``create-tables`` and ``doctor`` therefore ask the cluster itself (pyfluss ``get_server_nodes``, what clients see)
and, for a server it lacks, quote the coordinator's reason from its log.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from sagaz_lakehouse import clients
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.addresses import Endpoints
from sagaz_lakehouse.config import Settings
from sagaz_lakehouse.errors import LakehouseError
from sagaz_lakehouse.targets.base import Driver, target_of

REGISTRATION_TIMEOUT = 60.0  # seconds `up` and `create-tables` wait for every tablet server to be a member
# How much longer to wait for a server whose previous registration is still listed: until ZooKeeper expires that
# session (Fluss's zookeeper.client.session-timeout, 60 s by default and here) and the server's next retry.
STALE_EXPIRY = 75.0
EXPLAINED_AFTER = 15.0  # a server still missing this long after a refusal was logged is taken as refused
POLL_SECONDS = 2.0
SERVER_LOG_LINES = 400
# The coordinator's error about a tablet server's registration, and the exception line that follows it.
REFUSAL = re.compile(r"\b(ERROR|WARN)\b.*TabletServer", re.IGNORECASE)
EXCEPTION = re.compile(r"^\s*(?:Caused by: )?([\w$.]+(?:Exception|Error))(?::\s*(.*))?$")
ADVERTISED_CLIENT = re.compile(r"CLIENT://[^,\s]+:(\d+)")

# What the coordinator answers while it is not serving yet: after a crash it waits for its old ZooKeeper session to
# expire before it registers, answering every request with "CoordinatorEventProcessor is not initialized yet".
STARTING = re.compile(r"not initialized yet|Connection refused", re.IGNORECASE)

# A tablet server started while ZooKeeper still holds its previous registration (the old session has not expired:
# the process was killed, or ZooKeeper came back from its disk) retries every few seconds until it can register
# (TabletServer.registerTabletServer); meanwhile the coordinator lists the old registration as a member. The server's
# own log tells which of the two it last did (ZooKeeperClient.registerTabletServer logs the success).
WAITING_TO_REGISTER = re.compile(r"Tablet server id \d+ already registered in Zookeeper")
REGISTERED = re.compile(r"Registered tablet server \d+ at path")

# After a tablet server or the coordinator restarts, or a table is created, buckets have no leader until the
# coordinator has seen the servers register and elected one (seconds; longer on a loaded node). Within this window a
# missing leader is recovery, not a finding; after it, a problem to name (lake_health, tables.wait_for_leaders).
LEADER_ELECTION_S = 60.0

# A Fluss server's log tail, by instance name (the coordinator's, or a tablet server's); from the target's driver.
ServerLog = Callable[[str], str]


@dataclass(frozen=True)
class Membership:
    """The tablet servers the stack runs (``expected``) against those the cluster lists (``registered``)."""

    expected: tuple[str, ...]
    registered: tuple[str, ...]
    coordinator: bool
    reason: str = ""  # the coordinator's logged refusal, when a server is missing and it logged one
    # Listed by the coordinator, but the server's log shows it still waiting to register: the listing is its
    # previous registration, which ZooKeeper drops when the old session expires.
    waiting: tuple[str, ...] = ()

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(name for name in self.expected if name not in self.registered)

    def summary(self) -> str:
        text = (f"{int(self.coordinator)} coordinator, {len(self.registered)}/{len(self.expected)} tablet server(s) "
                "registered with the coordinator")
        text += f"; missing: {', '.join(self.missing)}" if self.missing else ""
        if self.waiting:
            text += (f" ({', '.join(self.waiting)}: waiting for its previous registration to expire with its old "
                     "ZooKeeper session)")
        return text


def tablet_component(settings: Settings) -> s.Component:
    return target_of(settings).stack(settings).get(s.TABLET)


def expected_tablets(settings: Settings) -> tuple[str, ...]:
    return tuple(tablet_component(settings).instance_names())


def observe(settings: Settings, endpoints: Endpoints) -> Membership:
    """The cluster's members as a client sees them. Tablet server ids are the instance ordinals on every target
    (``tablet-server.id``), so id i is ``fluss-tablet-i``."""

    async def nodes() -> list[object]:
        async with clients.fluss_connection(endpoints) as connection:
            return list(await connection.get_admin().get_server_nodes())

    found = asyncio.run(nodes())
    kinds = [(str(getattr(n, "server_type", "")).lower(), getattr(n, "id", -1)) for n in found]
    tablet = tablet_component(settings)
    tablets = tuple(sorted(tablet.instance_name(node_id) for kind, node_id in kinds if "tablet" in kind))
    return Membership(tuple(tablet.instance_names()), tablets, any("coordinator" in kind for kind, _ in kinds))


def refusal_reason(settings: Settings, coordinator_log: str, missing: tuple[str, ...]) -> str:
    """The last refusal the coordinator logged: its exception (class and message), naming the server when the
    message shows the client port that server advertises. Empty when the log has none."""
    lines = coordinator_log.splitlines()
    reason = ""
    for index, line in enumerate(lines):
        if not REFUSAL.search(line):
            continue
        exception = next((m for m in (EXCEPTION.match(x) for x in lines[index + 1:index + 4]) if m), None)
        reason = (f"{exception.group(1)}: {exception.group(2) or ''}".rstrip(": ") if exception
                  else line.strip())
    if not reason:
        return ""
    owners = {entry.number: entry.instance for entry in target_of(settings).stack(settings).host_ports()
              if entry.port.advertised}
    named = [owners[int(port)] for port in ADVERTISED_CLIENT.findall(reason) if owners.get(int(port)) in missing]
    return f"{named[0]}: {reason}" if named else reason


def waiting_to_register(log: str) -> bool:
    """Whether a tablet server's log shows it retrying its registration, with no success after the last retry."""
    last = ""
    for line in log.splitlines():
        if WAITING_TO_REGISTER.search(line):
            last = "waiting"
        elif REGISTERED.search(line):
            last = "registered"
    return last == "waiting"


def current(membership: Membership, server_log: ServerLog | None) -> Membership:
    """``membership`` without the listed servers whose own log shows them still waiting to register (their
    listing is a stale registration); unchanged without logs, or when a log cannot be read."""
    if server_log is None:
        return membership
    waiting = []
    for name in membership.registered:
        try:
            if waiting_to_register(server_log(name)):
                waiting.append(name)
        except LakehouseError:  # the log is evidence, not a requirement
            continue
    if not waiting:
        return membership
    from dataclasses import replace

    return replace(membership, registered=tuple(n for n in membership.registered if n not in waiting),
                   waiting=tuple(waiting))


def explain(settings: Settings, membership: Membership, server_log: ServerLog | None) -> Membership:
    """``membership`` with the coordinator's reason for its missing servers, where the log gives one."""
    if not membership.missing or server_log is None:
        return membership
    try:
        log = server_log(s.COORDINATOR)
    except LakehouseError:  # the log is evidence, not a requirement
        return membership
    from dataclasses import replace

    return replace(membership, reason=refusal_reason(settings, log, membership.missing))


class TabletsMissing(LakehouseError):
    """Fewer tablet servers are members of the cluster than needed, after a bounded wait."""

    def __init__(self, membership: Membership, need: int, waited: float, purpose: str, unanswered: str = "") -> None:
        self.membership = membership
        message = (f"{purpose}: {len(membership.registered)} of {len(membership.expected)} tablet servers are "
                   f"registered with the Fluss coordinator after {waited:.0f}s, {need} needed "
                   f"(missing: {', '.join(membership.missing) or 'none'})")
        if unanswered:
            message += f"\n  the coordinator is not serving yet: {unanswered}"
        if membership.reason:
            message += f"\n  the coordinator's reason: {membership.reason}"
        first = membership.missing[0] if membership.missing else s.TABLET
        super().__init__(message, f"see `sagaz-lakehouse logs {s.COORDINATOR}` and `sagaz-lakehouse logs {first}`; "
                                  "a server refused for its configuration stays refused until `up` fixes it")


def wait_for_tablets(settings: Settings, endpoints: Endpoints, *, need: int, purpose: str,
                     server_log: ServerLog | None = None, timeout: float = REGISTRATION_TIMEOUT,
                     progress: Callable[[str], None] | None = None) -> Membership:
    """Until at least ``need`` tablet servers are members; TabletsMissing names the missing ones and quotes the
    coordinator once ``timeout`` passed, or earlier once the coordinator's log explains a missing server. A
    coordinator that is not serving yet (STARTING) counts as no member, for at most ``timeout``. A listed server
    whose log (``server_log``) shows it still waiting to register is no member either; the wait then gets
    STALE_EXPIRY more, for ZooKeeper to drop the previous registration."""
    started = time.monotonic()
    announced = False
    grace = 0.0
    while True:
        unanswered = ""
        try:
            membership = observe(settings, endpoints)
        except Exception as exc:
            if not STARTING.search(str(exc)):
                raise
            unanswered = f"{type(exc).__name__}: {str(exc)[:300]}"
            membership = Membership(expected_tablets(settings), (), coordinator=False)
        if len(membership.registered) >= need:
            membership = current(membership, server_log)
            if len(membership.registered) >= need:
                return membership
        grace = STALE_EXPIRY if membership.waiting else grace  # once seen, until the stale listing has gone
        waited = time.monotonic() - started
        if waited >= timeout + grace:
            raise TabletsMissing(explain(settings, membership, server_log), need, waited, purpose, unanswered)
        if waited >= EXPLAINED_AFTER and not unanswered:
            explained = explain(settings, membership, server_log)
            if explained.reason:
                raise TabletsMissing(explained, need, waited, purpose)
        if progress and not announced:
            announced = True
            progress(f"waiting for the Fluss coordinator to register {', '.join(membership.missing)} "
                     f"({'it is not serving yet' if unanswered else membership.summary()}; up to {timeout:.0f}s)")
        time.sleep(POLL_SECONDS)


def confirm_members(settings: Settings, driver: Driver, progress: Callable[[str], None]) -> Membership:
    """After `up`: every tablet server the stack runs is a member of the cluster (on every target: through the
    endpoints the target gives this host, port-forwards on Kubernetes)."""
    with driver.client_endpoints() as endpoints:
        return wait_for_tablets(settings, endpoints, need=settings.replicas.tablet_servers,
                                purpose="the stack is not complete",
                                server_log=lambda name: driver.logs(name, SERVER_LOG_LINES),
                                progress=progress)
