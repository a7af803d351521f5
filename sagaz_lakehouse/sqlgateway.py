"""A client of Flink's SQL Gateway REST API (standard library only): sessions, statements, and bounded reads of
streaming results.

The API (Flink 1.20, ``/v1``): ``POST /sessions`` opens a session, ``GET /sessions/{s}`` returns its properties,
``POST /sessions/{s}/statements`` submits a statement and returns an operation handle, ``GET .../operations/{o}/
result/{token}?rowFormat=JSON`` fetches the next batch (``resultType`` NOT_READY, PAYLOAD or EOS, and
``nextResultUri``), ``DELETE .../operations/{o}/close`` closes an operation (cancelling its job), ``DELETE
/sessions/{s}`` closes the session. A failed statement answers HTTP 500 with ``{"errors": [...]}``: its "Caused
by" lines are what a user needs.

A streaming query never ends, so :meth:`Session.follow` bounds it: the rows are a changelog (``kind`` INSERT,
UPDATE_BEFORE, UPDATE_AFTER, DELETE) that it applies to a multiset, and it stops once the result has been quiet for
``quiet_seconds`` after the job started running (the catch-up read has produced everything it will without new
events), or after ``max_seconds`` in any case. What it returns is the result as of that moment.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sagaz_lakehouse.errors import LakehouseError, StackNotReachable

API = "/v1"
POLL_SECONDS = 0.5  # between fetches that returned nothing new
REQUEST_TIMEOUT = 60.0
ADDS, REMOVES = ("INSERT", "UPDATE_AFTER"), ("UPDATE_BEFORE", "DELETE")


class GatewayError(LakehouseError):
    """The gateway refused a statement or failed while running it."""


def causes(body: str) -> str:
    """The useful part of a gateway error: its ``Caused by`` lines (innermost last), else the first error."""
    try:
        errors = json.loads(body).get("errors", [])
    except (ValueError, AttributeError):
        errors = [body]
    text = "\n".join(str(e) for e in errors)
    found = [c.strip() for c in re.findall(r"Caused by: ([^\n]+)", text)]
    if found:
        return " ← ".join(dict.fromkeys(reversed(found[-4:])))
    return next((str(e) for e in errors if str(e) != "Internal server error."), text)[:2000]


@dataclass
class Stream:
    """What following a streaming query produced: the materialized rows and how the read ended."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    changes: int = 0  # changelog rows received
    stopped: str = ""  # why following stopped
    job_id: str = ""
    seconds: float = 0.0


class Session:
    def __init__(self, base: str, handle: str, request: Callable[..., Any]) -> None:
        self.base, self.handle, self._request = base, handle, request

    @property
    def path(self) -> str:
        return f"{API}/sessions/{self.handle}"

    def properties(self) -> dict[str, str]:
        return dict(self._request("GET", self.path).get("properties", {}))

    def execute(self, statement: str, timeout: float = REQUEST_TIMEOUT) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a statement that ends by itself (DDL, SET, a bounded query) and return all its rows."""
        operation = self.submit(statement)
        try:
            return self._drain(operation, deadline=time.monotonic() + timeout)
        finally:
            self.close_operation(operation)

    def submit(self, statement: str) -> str:
        return str(self._request("POST", f"{self.path}/statements", {"statement": statement})["operationHandle"])

    def close_operation(self, operation: str) -> None:
        """Close it (a running job is cancelled); a failure here must not hide the answer."""
        with suppress(LakehouseError, OSError):
            self._request("DELETE", f"{self.path}/operations/{operation}/close")

    def follow(self, statement: str, *, max_seconds: float, quiet_seconds: float,
               job_running: Callable[[str], bool]) -> Stream:
        """Run a streaming query and materialize its changelog until it is quiet or ``max_seconds`` passed.

        ``job_running(job_id)`` tells whether the job's tasks are all running: quiet time counts only from then,
        so a job still waiting for a slot or starting its source is not mistaken for an empty result."""
        started = time.monotonic()
        operation = self.submit(statement)
        table: Counter[tuple[Any, ...]] = Counter()
        stream = Stream([], [], stopped="end of stream")
        types: list[str] = []
        running_since: float | None = None
        last_change = started
        try:
            for answer in self.pages(operation):
                stream.job_id = answer.get("jobID") or stream.job_id
                results = answer.get("results") or {}
                if results.get("columns"):
                    stream.columns, types = _columns(results)
                data = results.get("data") or []
                for row in data:
                    key = tuple(_hashable(v) for v in row["fields"])
                    if row["kind"] in ADDS:
                        table[key] += 1
                    elif row["kind"] in REMOVES:
                        table[key] -= 1
                        if table[key] <= 0:
                            del table[key]
                if data:
                    stream.changes += len(data)
                    last_change = time.monotonic()
                if running_since is None and stream.job_id and job_running(stream.job_id):
                    running_since = time.monotonic()
                now = time.monotonic()
                if now - started >= max_seconds:
                    stream.stopped = f"max_seconds ({max_seconds:g}s) reached"
                    break
                if running_since is not None and now - max(last_change, running_since) >= quiet_seconds:
                    stream.stopped = f"no change for {quiet_seconds:g}s"
                    break
                if not data:
                    time.sleep(POLL_SECONDS)
        finally:
            self.close_operation(operation)
        stream.rows = [_typed(row, types) for row, count in table.items() for _ in range(count)]
        stream.seconds = round(time.monotonic() - started, 2)
        return stream

    def _drain(self, operation: str, deadline: float) -> tuple[list[str], list[tuple[Any, ...]]]:
        columns: list[str] = []
        rows: list[tuple[Any, ...]] = []
        for answer in self.pages(operation):
            results = answer.get("results") or {}
            if results.get("columns"):
                columns = _columns(results)[0]
            rows += [tuple(r["fields"]) for r in results.get("data") or [] if r["kind"] in ADDS]
            if time.monotonic() > deadline:
                raise GatewayError("the statement did not finish in time",
                                   "see `sagaz-lakehouse logs flink-sql-gateway`")
            if answer.get("resultType") == "NOT_READY":
                time.sleep(POLL_SECONDS)
        return columns, rows

    def pages(self, operation: str) -> Iterator[dict[str, Any]]:
        """Every answer of an operation's result, following nextResultUri, until end of stream; the next is fetched
        only when asked for, so a caller paces a streaming query's fetches."""
        uri: str | None = f"{self.path}/operations/{operation}/result/0?rowFormat=JSON"
        while uri is not None:
            answer = self._request("GET", uri)
            yield answer
            if answer.get("resultType") == "EOS":
                return
            uri = answer.get("nextResultUri")


def _columns(results: dict[str, Any]) -> tuple[list[str], list[str]]:
    return [c["name"] for c in results["columns"]], [c["logicalType"]["type"] for c in results["columns"]]


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def _typed(row: tuple[Any, ...], types: list[str]) -> tuple[Any, ...]:
    """JSON values as Python values of their column types: timestamps (ISO text) as datetime, arrays as lists."""
    def value(v: Any, kind: str) -> Any:
        if v is None:
            return None
        if kind.startswith("TIMESTAMP"):
            return datetime.fromisoformat(v)
        return list(v) if isinstance(v, tuple) else v

    return tuple(value(v, kind) for v, kind in zip(row, types or [""] * len(row), strict=True))


class Gateway:
    def __init__(self, base: str, timeout: float = REQUEST_TIMEOUT) -> None:
        self.base, self.timeout = base.rstrip("/"), timeout

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,  # noqa: S310 - our endpoint
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = causes(exc.read().decode(errors="replace"))
            raise GatewayError(f"Flink SQL Gateway: {detail}",
                               "see `sagaz-lakehouse logs flink-sql-gateway` and the JobManager's log") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise StackNotReachable("Flink SQL Gateway", self.base, str(getattr(exc, "reason", exc))) from None

    @contextmanager
    def session(self, properties: dict[str, str] | None = None) -> Iterator[Session]:
        answer = self.request("POST", f"{API}/sessions", {"properties": properties or {}})
        session = Session(self.base, answer["sessionHandle"], self.request)
        try:
            yield session
        finally:
            with suppress(LakehouseError, OSError):
                self.request("DELETE", session.path)
