"""The CLI's Trino client against a stand-in of Trino's client protocol (POST /v1/statement, then nextUri; the
error object of a failed query as Trino's QueryError serialises it): a statement that meets Trino's NO_NODES_AVAILABLE
of the seconds after start-up is run again; any other query error is raised at once."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest
import trino

from sagaz_lakehouse import clients
from sagaz_lakehouse.addresses import Endpoints

NO_NODES = {"message": "No nodes available to run query", "errorCode": 65536, "errorName": "NO_NODES_AVAILABLE",
            "errorType": "INTERNAL_ERROR"}
SYNTAX = {"message": "line 1:1: mismatched input 'SELEC'", "errorCode": 1, "errorName": "SYNTAX_ERROR",
          "errorType": "USER_ERROR"}


class StandIn(http.server.BaseHTTPRequestHandler):
    errors: ClassVar[list[dict]] = []  # the error each POST answers, in turn; then rows
    statements: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        sql = self.rfile.read(int(self.headers["Content-Length"])).decode()
        StandIn.statements.append(sql)
        number = len(StandIn.statements)
        body: dict = {"id": f"q{number}", "infoUri": f"http://x/q{number}", "stats": {"state": "FINISHED"}}
        if StandIn.errors:
            body |= {"stats": {"state": "FAILED"}, "error": StandIn.errors.pop(0)}
        else:
            body |= {"columns": [{"name": "_col0", "type": "integer",
                                  "typeSignature": {"rawType": "integer", "arguments": []}}], "data": [[1]]}
        answer = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def trino_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[Endpoints]:
    monkeypatch.setattr(clients, "TRINO_NODES_WAIT", 5.0)
    StandIn.statements = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    yield Endpoints("", "", "", "", "", url, "")
    server.shutdown()
    server.server_close()


def test_a_statement_that_meets_no_nodes_is_run_again(trino_endpoint: Endpoints) -> None:
    StandIn.errors = [NO_NODES, NO_NODES]
    assert clients.trino_query(trino_endpoint, "SELECT 1") == [(1,)]
    assert StandIn.statements == ["SELECT 1"] * 3


def test_other_errors_and_no_nodes_past_the_wait_are_raised(trino_endpoint: Endpoints,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    StandIn.errors = [SYNTAX]
    with pytest.raises(trino.exceptions.TrinoUserError, match="mismatched input"):
        clients.trino_query(trino_endpoint, "SELEC 1")
    assert len(StandIn.statements) == 1
    monkeypatch.setattr(clients, "TRINO_NODES_WAIT", 0.0)
    StandIn.errors = [NO_NODES, NO_NODES]
    with pytest.raises(trino.exceptions.TrinoQueryError, match="No nodes available"):
        clients.trino_query(trino_endpoint, "SELECT 1")
    assert len(StandIn.statements) == 2
