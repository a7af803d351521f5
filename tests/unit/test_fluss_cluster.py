"""Reading the coordinator's reason for a missing tablet server, and the messages built from it (fluss_cluster).

The membership itself comes from a real cluster (pyfluss get_server_nodes): the compose and Kubernetes end-to-end
tests run `up`, `create-tables` and `doctor` against real servers. Here: the log parsing and the wording, on the
coordinator log of the failure issue 22 reported (Fluss 0.9.1 with this project's log layout)."""

from __future__ import annotations

import pytest

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import fluss_cluster
from sagaz_lakehouse.fluss_cluster import Membership, TabletsMissing

REFUSED = """\
2026-12-01 10:00:01,100 INFO  o.a.f.s.c.CoordinatorServer                - Coordinator server started.
2026-12-01 10:00:03,512 ERROR o.a.f.s.c.c.f.r.l.MappingListenerManager   - Listener (org.apache.fluss.server.\
coordinator.event.watcher.TabletServerChangeWatcher$TabletServerChangeListener@5d3b58ca) threw an exception
java.lang.IllegalArgumentException: There is more than one endpoint with the same port, listeners: \
INTERNAL://10.213.1.11:9125,CLIENT://127.0.0.1:9125
\tat org.apache.fluss.cluster.Endpoint.fromListenersString(Endpoint.java:181) ~[fluss-server.jar:0.9.1-incubating]
\tat org.apache.fluss.server.zk.data.TabletServerRegistrationJsonSerde.deserialize(...)
2026-12-01 10:00:04,001 INFO  o.a.f.s.c.CoordinatorEventProcessor         - New tablet server callback for server 0
"""


@pytest.fixture
def compose_settings():
    return lakehouse.load_settings(None, {"target": "compose"}, environ={})


def test_the_refusal_is_quoted_and_pinned_on_the_server_whose_client_port_it_names(compose_settings):
    reason = fluss_cluster.refusal_reason(compose_settings, REFUSED, ("fluss-tablet-1",))
    assert reason.startswith("fluss-tablet-1: java.lang.IllegalArgumentException: There is more than one endpoint")
    assert "CLIENT://127.0.0.1:9125" in reason


def test_a_refusal_naming_no_missing_server_is_quoted_as_it_is(compose_settings):
    reason = fluss_cluster.refusal_reason(compose_settings, REFUSED, ("fluss-tablet-3",))
    assert reason.startswith("java.lang.IllegalArgumentException: ")


def test_no_refusal_in_the_log_gives_no_reason(compose_settings):
    quiet = "\n".join(line for line in REFUSED.splitlines() if "ERROR" not in line and "Exception" not in line)
    assert fluss_cluster.refusal_reason(compose_settings, quiet, ("fluss-tablet-1",)) == ""


def test_the_error_names_counts_missing_servers_reason_and_where_to_look(compose_settings):
    membership = Membership(("fluss-tablet-0", "fluss-tablet-1"), ("fluss-tablet-0",), coordinator=True,
                            reason=fluss_cluster.refusal_reason(compose_settings, REFUSED, ("fluss-tablet-1",)))
    error = TabletsMissing(membership, need=2, waited=15.2, purpose="cannot create sagaz.saga_events with 2 replicas")
    text = str(error)
    assert "cannot create sagaz.saga_events with 2 replicas: 1 of 2 tablet servers are registered" in text
    assert "after 15s, 2 needed (missing: fluss-tablet-1)" in text
    assert "the coordinator's reason: fluss-tablet-1: java.lang.IllegalArgumentException" in text
    assert "sagaz-lakehouse logs fluss-tablet-1" in error.hint and "logs fluss-coordinator" in error.hint
    assert error.exit_code == 1
    assert membership.summary() == ("1 coordinator, 1/2 tablet server(s) registered with the coordinator; "
                                    "missing: fluss-tablet-1")


def test_an_unreadable_coordinator_log_leaves_the_membership_unexplained(compose_settings):
    from sagaz_lakehouse.errors import StackNotReachable

    def unreachable(name: str) -> str:
        raise StackNotReachable("fluss-coordinator", "namespace x", "no pods")

    membership = Membership(("fluss-tablet-0",), (), coordinator=True)
    assert fluss_cluster.explain(compose_settings, membership, unreachable).reason == ""


NOT_SERVING = ("FlussError(code=-1): java.lang.IllegalStateException: CoordinatorEventProcessor is not initialized "
               "yet.")


class FlussError(Exception):
    """What pyfluss raises for an error the server answers (its class is in a compiled module)."""


def answers(monkeypatch, compose_settings, replies):
    """fluss_cluster.observe answers from ``replies`` in turn (an exception is raised), without waiting between."""
    monkeypatch.setattr(fluss_cluster, "POLL_SECONDS", 0.0)
    calls = iter(replies)

    def observe(settings, endpoints):
        reply = next(calls)
        if isinstance(reply, Exception):
            raise reply
        return Membership(("fluss-tablet-0", "fluss-tablet-1"), reply, coordinator=True)

    monkeypatch.setattr(fluss_cluster, "observe", observe)


def test_a_coordinator_not_serving_yet_is_waited_for(monkeypatch, compose_settings):
    """After a crash of the whole stack the coordinator waits for its old ZooKeeper session to expire and answers
    'not initialized yet' meanwhile (seen in the fault test): `up` waits instead of failing."""
    answers(monkeypatch, compose_settings, [FlussError(NOT_SERVING), FlussError(NOT_SERVING),
                                            ("fluss-tablet-0",), ("fluss-tablet-0", "fluss-tablet-1")])
    membership = fluss_cluster.wait_for_tablets(compose_settings, None, need=2, purpose="up")
    assert membership.missing == ()


def test_a_coordinator_still_not_serving_at_the_timeout_is_named(monkeypatch, compose_settings):
    answers(monkeypatch, compose_settings, [FlussError(NOT_SERVING)] * 1000)
    with pytest.raises(TabletsMissing) as error:
        fluss_cluster.wait_for_tablets(compose_settings, None, need=2, purpose="the stack is not complete",
                                       timeout=0.05)
    text = str(error.value)
    assert "0 of 2 tablet servers are registered" in text
    assert "the coordinator is not serving yet: FlussError: " in text and "not initialized yet" in text


def test_any_other_error_of_the_coordinator_is_raised_at_once(monkeypatch, compose_settings):
    answers(monkeypatch, compose_settings, [FlussError("SASL authentication failed"), ("fluss-tablet-0",)])
    with pytest.raises(FlussError, match="SASL"):
        fluss_cluster.wait_for_tablets(compose_settings, None, need=2, purpose="up")


# A tablet server started while ZooKeeper still held its previous registration (Fluss 0.9.1: ServerBase's 3 s retry,
# TabletServer.registerTabletServer's warning, ZooKeeperClient.registerTabletServer's success line).
WAITING = """\
2026-12-07 01:00:01,100 INFO  o.a.f.s.t.TabletServer                     - Starting Tablet Server.
2026-12-07 01:00:04,200 WARN  o.a.f.s.t.TabletServer                     - Tablet server id 0 already registered in \
Zookeeper. retrying register after 3000 ms....
2026-12-07 01:00:07,201 WARN  o.a.f.s.t.TabletServer                     - Tablet server id 0 already registered in \
Zookeeper. retrying register after 3000 ms....
"""
REGISTERED = WAITING + ("2026-12-07 01:00:10,305 INFO  o.a.f.s.z.ZooKeeperClient                  - Registered tablet "
                        "server 0 at path /tabletservers/ids/0 with registration TabletServerRegistration{...}.\n")


def test_a_log_ending_in_registration_retries_is_waiting_and_one_with_a_later_success_is_not():
    assert fluss_cluster.waiting_to_register(WAITING)
    assert not fluss_cluster.waiting_to_register(REGISTERED)
    assert not fluss_cluster.waiting_to_register("")  # no word on it (a long-running server's tail): trusted
    # An appended log (the local target): the new process's retries after the old one's success still count.
    assert fluss_cluster.waiting_to_register(REGISTERED + WAITING)


def test_a_listed_server_still_waiting_to_register_is_no_member(compose_settings):
    membership = Membership(("fluss-tablet-0", "fluss-tablet-1"), ("fluss-tablet-0", "fluss-tablet-1"),
                            coordinator=True)
    logs = {"fluss-tablet-0": WAITING, "fluss-tablet-1": REGISTERED}
    found = fluss_cluster.current(membership, logs.__getitem__)
    assert found.registered == ("fluss-tablet-1",) and found.missing == ("fluss-tablet-0",)
    assert found.waiting == ("fluss-tablet-0",)
    assert "fluss-tablet-0: waiting for its previous registration to expire" in found.summary()
    assert fluss_cluster.current(membership, None) == membership


def test_up_waits_past_its_timeout_for_a_stale_registration_to_give_way(monkeypatch, compose_settings):
    """The coordinator lists both servers all along (one of them from before a restart): `up` returns only once
    the server's own log shows its registration, even after its usual timeout."""
    answers(monkeypatch, compose_settings, [("fluss-tablet-0", "fluss-tablet-1")] * 1000)
    logs = iter([WAITING, WAITING, WAITING, REGISTERED])
    seen = []

    def server_log(name: str) -> str:
        seen.append(name)
        return next(logs) if name == "fluss-tablet-0" else REGISTERED

    membership = fluss_cluster.wait_for_tablets(compose_settings, None, need=2, purpose="up", server_log=server_log,
                                                timeout=0)
    assert membership.registered == ("fluss-tablet-0", "fluss-tablet-1") and membership.waiting == ()
    assert seen.count("fluss-tablet-0") == 4


def test_a_stale_registration_that_never_gives_way_is_named(monkeypatch, compose_settings):
    answers(monkeypatch, compose_settings, [("fluss-tablet-0", "fluss-tablet-1")] * 100000)
    monkeypatch.setattr(fluss_cluster, "STALE_EXPIRY", 0.05)
    with pytest.raises(TabletsMissing) as error:
        fluss_cluster.wait_for_tablets(compose_settings, None, need=2, purpose="the stack is not complete",
                                       server_log=lambda name: WAITING, timeout=0)
    assert "0 of 2 tablet servers are registered" in str(error.value)
    assert error.value.membership.waiting == ("fluss-tablet-0", "fluss-tablet-1")


class LeaderlessAdmin:
    """list_offsets as pyfluss answers it for a table whose buckets have no leader yet, ``leaderless`` times."""

    def __init__(self, leaderless: int, error: str = "FlussError: No leader found for table bucket 3") -> None:
        self.leaderless, self.error, self.calls = leaderless, error, 0

    async def list_offsets(self, path, buckets, spec):
        self.calls += 1
        if self.calls <= self.leaderless:
            raise RuntimeError(self.error)
        return {b: 0 for b in buckets}


def test_create_tables_waits_for_the_buckets_leaders_and_names_a_table_that_never_gets_them():
    """Seen once in CI: the coordinator registered a new table's assignment but elected no leader, and a writer then
    retried forever. create-tables now waits for the leaders, bounded, and says what to do."""
    import asyncio

    from sagaz_lakehouse import tables
    from sagaz_lakehouse.errors import LakehouseError

    said: list[str] = []
    admin = LeaderlessAdmin(2)
    asyncio.run(tables.wait_for_leaders(admin, "sagaz.saga_events", 8, said.append, created=True, pause=0))
    assert admin.calls == 3 and said == ["waiting for the Fluss coordinator to elect the leaders of "
                                         "sagaz.saga_events's buckets"]
    with pytest.raises(LakehouseError) as error:
        asyncio.run(tables.wait_for_leaders(LeaderlessAdmin(10**9), "sagaz.saga_events", 8, said.append,
                                            created=True, timeout=0.05, pause=0))
    assert "elected no leader" in error.value.message and "No leader found" in error.value.message
    assert "down" in error.value.hint and "create-tables again" in error.value.hint
    # Right after creation a server may not know the table yet (seen in CI: code 21), or a leader may move (code 12):
    # waited for as well.
    unknown = LeaderlessAdmin(3, "FlussError(code=21): Unknown table or bucket: TableBucket{tableId=0, bucket=7}")
    asyncio.run(tables.wait_for_leaders(unknown, "t", 8, said.append, created=False, pause=0))
    assert unknown.calls == 4


def test_create_tables_restarts_the_coordinator_once_when_it_missed_the_new_table(monkeypatch, compose_settings):
    """apache/fluss#2710: the coordinator may miss a new table (no leader ever); one that starts elects the leaders of
    every table it finds. create-tables restarts it once through the target, then checks the leaders again; a second
    miss, or no way to restart, is the error that names the table."""
    from sagaz_lakehouse import tables

    attempts: list[str] = []

    async def create(settings, endpoints, log):
        attempts.append("create")
        if len(attempts) == 1:
            raise tables.LeadersNotElected("sagaz.saga_events: the Fluss coordinator elected no leader (x)", "h",
                                           created=True)
        return {"database": "sagaz", "table": tables.TABLE, "created": False}

    monkeypatch.setattr(tables, "_create_in_fluss", create)
    monkeypatch.setattr(tables, "wait_for_iceberg_table", lambda *a: "sagaz.saga_events")
    monkeypatch.setattr(fluss_cluster, "wait_for_tablets", lambda *a, need, **k: attempts.append(f"serving {need}"))
    said: list[str] = []
    result = tables.create_tables(compose_settings, None, None, log=said.append,
                                  restart_coordinator=lambda: attempts.append("restart"))
    # a restarted coordinator answers on its port before it serves ("not initialized yet", seen in CI): waited for
    assert attempts == ["create", "restart", f"serving {compose_settings.replication_factor}", "create"]
    assert result["created"] is True and result["coordinator_restarted"] is True
    assert any("apache/fluss#2710" in line and "restarting the coordinator" in line for line in said), said
    attempts.clear()
    with pytest.raises(tables.LeadersNotElected):
        tables.create_tables(compose_settings, None, None)  # the target cannot restart it: the error as before
    assert attempts == ["create"]
