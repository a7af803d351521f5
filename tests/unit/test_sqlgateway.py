"""The SQL Gateway client against a loopback stand-in of Flink's REST API: sessions, the fluss catalog, changelog
materialization, the bounds of a streaming read, errors, and that every operation and session is closed."""

from __future__ import annotations

import http.server
import json
import threading
from datetime import datetime
from typing import Any

import pytest

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import analytics, sqlgateway
from sagaz_lakehouse.addresses import Endpoints
from sagaz_lakehouse.components.flink import FLUSS_BOOTSTRAP_PROPERTY
from sagaz_lakehouse.errors import StackNotReachable

COLUMNS = [{"name": "name", "logicalType": {"type": "VARCHAR"}}, {"name": "n", "logicalType": {"type": "BIGINT"}}]


class FakeGateway:
    """Answers like the gateway: a query's result is ``batches`` (lists of (kind, fields)) and then, if the stream
    does not end, empty payloads forever. Records every request."""

    def __init__(self, batches: list[list[tuple[str, list[Any]]]], columns: list[dict[str, Any]] | None = None,
                 ends: bool = False, fail_with: str = "", job_state: str = "RUNNING") -> None:
        self.batches, self.columns, self.ends, self.fail_with = batches, columns or COLUMNS, ends, fail_with
        self.job_state = job_state
        self.requests: list[tuple[str, str, Any]] = []
        self.statements: list[str] = []
        self.session_properties: dict[str, str] = {}
        gateway = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def handle_any(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                gateway.requests.append((method, self.path, body))
                status, answer = gateway.answer(method, self.path, body)
                self.reply(status, answer)

            def do_GET(self) -> None:
                self.handle_any("GET")

            def do_POST(self) -> None:
                self.handle_any("POST")

            def do_DELETE(self) -> None:
                self.handle_any("DELETE")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = path.split("?")[0].strip("/").split("/")
        if parts[:2] == ["jobs", "job-1"]:
            return 200, {"state": self.job_state, "vertices": [{"status": self.job_state}]}
        if method == "POST" and parts == ["v1", "sessions"]:
            self.session_properties = {**body["properties"], FLUSS_BOOTSTRAP_PROPERTY: "fluss-coordinator:9125"}
            return 200, {"sessionHandle": "s1"}
        if method == "GET" and parts == ["v1", "sessions", "s1"]:
            return 200, {"properties": self.session_properties}
        if method == "POST" and parts[-1] == "statements":
            self.statements.append(body["statement"])
            return 200, {"operationHandle": f"op{len(self.statements)}"}
        if method == "GET" and "result" in parts:
            operation, token = parts[4], int(parts[6])
            nxt = f"/v1/sessions/s1/operations/{operation}/result/{token + 1}?rowFormat=JSON"
            if self.statements[int(operation[2:]) - 1].startswith("CREATE CATALOG"):
                if token == 0:
                    return 200, {"resultType": "PAYLOAD", "results": {"columns": [{"name": "result",
                                 "logicalType": {"type": "VARCHAR"}}], "data": [{"kind": "INSERT",
                                                                                "fields": ["OK"]}]},
                                 "nextResultUri": nxt}
                return 200, {"resultType": "EOS", "results": {"data": []}}
            if self.fail_with:
                return 500, {"errors": ["Internal server error.", "<Exception on server side:\norg.x.Y: outer\n"
                                        f"Caused by: {self.fail_with}\n\tat a.b.C>"]}
            if token < len(self.batches):
                data = [{"kind": kind, "fields": fields} for kind, fields in self.batches[token]]
                return 200, {"resultType": "PAYLOAD", "jobID": "job-1",
                             "results": {"columns": self.columns, "data": data}, "nextResultUri": nxt}
            if self.ends:
                return 200, {"resultType": "EOS", "jobID": "job-1", "results": {"data": []}}
            return 200, {"resultType": "PAYLOAD", "jobID": "job-1", "results": {"columns": self.columns, "data": []},
                         "nextResultUri": nxt}
        if method == "DELETE":
            return 200, {"status": "CLOSED"}
        return 404, {"errors": [f"no route {method} {path}"]}

    def closed(self) -> list[str]:
        return [path for method, path, _ in self.requests if method == "DELETE"]

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def fake(request):
    gateways: list[FakeGateway] = []

    def make(*args: Any, **kwargs: Any) -> FakeGateway:
        gateways.append(FakeGateway(*args, **kwargs))
        return gateways[-1]

    yield make
    for gateway in gateways:
        gateway.stop()


def follow(gateway: FakeGateway, running: bool = True, **bounds: float) -> sqlgateway.Stream:
    with sqlgateway.Gateway(gateway.url).session() as session:
        return session.follow("SELECT ...", job_running=lambda _job: running,
                              **{"max_seconds": 30.0, "quiet_seconds": 0.3, **bounds})


def test_the_changelog_is_applied_and_the_read_stops_once_quiet(fake):
    gateway = fake([[("INSERT", ["a", 1])],
                    [("INSERT", ["b", 2]), ("UPDATE_BEFORE", ["a", 1]), ("UPDATE_AFTER", ["a", 3])],
                    [("DELETE", ["b", 2]), ("INSERT", ["c", 1]), ("INSERT", ["c", 1])]])
    stream = follow(gateway)
    assert sorted(stream.rows) == [("a", 3), ("c", 1), ("c", 1)]  # a multiset: equal rows stay distinct
    assert stream.columns == ["name", "n"] and stream.changes == 7 and stream.job_id == "job-1"
    assert stream.stopped == "no change for 0.3s"
    assert gateway.closed() == ["/v1/sessions/s1/operations/op1/close", "/v1/sessions/s1"]


def test_quiet_time_counts_only_once_the_job_runs(fake):
    """A job still waiting for a slot shows no rows: that is not an empty answer, so max_seconds ends it."""
    stream = follow(fake([]), running=False, max_seconds=1.0)
    assert stream.stopped == "max_seconds (1s) reached" and stream.rows == []


def test_a_bounded_statement_ends_by_itself(fake):
    stream = follow(fake([[("INSERT", ["a", 1])]], ends=True))
    assert stream.stopped == "end of stream" and stream.rows == [("a", 1)]


def test_gateway_errors_show_their_cause_and_still_close_everything(fake):
    gateway = fake([], fail_with="java.lang.IllegalStateException: the real reason")
    with pytest.raises(sqlgateway.GatewayError) as excinfo:
        follow(gateway)
    assert "java.lang.IllegalStateException: the real reason" in excinfo.value.message
    assert "logs flink-sql-gateway" in excinfo.value.hint
    assert gateway.closed() == ["/v1/sessions/s1/operations/op1/close", "/v1/sessions/s1"]


def test_an_unreachable_gateway_says_so():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StackNotReachable, match="Flink SQL Gateway is not reachable"):
        sqlgateway.Gateway(f"http://127.0.0.1:{port}").request("GET", "/v1/info")


def test_a_flink_query_creates_the_fluss_catalog_from_the_gateways_own_address(fake):
    columns = [{"name": "minute", "logicalType": {"type": "TIMESTAMP_WITHOUT_TIME_ZONE"}}] + [
        {"name": n, "logicalType": {"type": "VARCHAR"}} for n in ("saga_name", "step_name", "error_type")] + [
        {"name": n, "logicalType": {"type": "BIGINT"}} for n in ("failures", "sagas")]
    gateway = fake([[("INSERT", ["2026-03-01T12:01:00", "order", "pay", "E", 1, 1]),
                     ("INSERT", ["2026-03-01T12:00:00", "order", "ship", "E", 2, 2]),
                     ("INSERT", ["2026-03-01T12:01:00", "order", "ship", "E", 5, 4])]], columns=columns)
    endpoints = Endpoints("", "", "", "", gateway.url, "", gateway.url)
    settings = lakehouse.load_settings(None, {}, environ={})
    result = analytics.run(settings, endpoints, "failures_recent", {"max_seconds": "20", "quiet_seconds": "1"})
    assert gateway.statements[0] == ("CREATE CATALOG fluss WITH ('type' = 'fluss', "
                                     "'bootstrap.servers' = 'fluss-coordinator:9125')")
    assert gateway.statements[1] == result.notes["sql"] and "fluss.sagaz.saga_events" in gateway.statements[1]
    assert gateway.session_properties["execution.runtime-mode"] == "streaming"
    assert result.notes["stopped"] == "no change for 1s"
    # typed (timestamps as datetime) and in the query's declared order: minute, then failures descending
    assert [(r[0], r[4]) for r in result.rows] == [(datetime(2026, 3, 1, 12, 0), 2), (datetime(2026, 3, 1, 12, 1), 5),
                                                   (datetime(2026, 3, 1, 12, 1), 1)]
