"""The query packs: SQL files shipped in the package, each with a header that says what it answers and how to call it.

``trino/*.sql`` is the historical pack (Trino over the Iceberg copy), ``flink/*.sql`` the real-time pack (Flink SQL
over Fluss, through the SQL Gateway). ``spark/*.sql`` is the historical pack again in Spark SQL, one file per Trino
query with the same name, header and parameters (``query NAME --engine spark``): the dialects differ in quoting
(``"timestamp"`` against backticks), Iceberg's metadata tables and hidden columns (``"saga_events$files"``,
``"$path"`` against ``saga_events.files``, ``_file``), time travel syntax, ``IF`` with two arguments and where NULLs
sort, so each engine has its own file rather than a rewrite by pattern. A file starts with its header, comment
lines of the form::

    -- title: SLA compliance per saga
    -- description: For each saga definition, ...
    --   (a line starting with "--" and two spaces continues the field above)
    -- param: since (duration, default 24h): only sagas that ended in this window
    -- param: bucket (choice minute|hour|day, default minute): ...
    -- sort: minute, step_name          (Flink only: the order rows are shown in; a stream has none)

and the statement follows. ``{name}`` in the statement is replaced by the parameter's value as a SQL literal of
its type, ``{database}`` by the lake database; ``{name:format}`` asks for another rendering (see ``Param.render``).
Values are checked against their type before anything is rendered, so no text from the command line reaches the
SQL unquoted. Every statement that reads ``saga_events`` leaves out the doctor's probe events (a unit test holds
each file to that).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any

from sagaz_lakehouse.errors import UsageError

ENGINES = ("trino", "flink")
# Engines that run another pack's queries from files of their own: engine → the pack whose queries it runs.
DIALECTS = {"spark": "trino"}
TYPES = ("int", "number", "duration", "pattern", "choice", "as_of")
# Parameters the Flink runner consumes itself (how long to follow the stream); they never reach the SQL.
RUNNER_PARAMS = {"flink": ("max_seconds", "quiet_seconds")}
# How far before a Flink query's window its Fluss log read starts: the log is positioned by the servers' commit
# time, the window by the application's event time, and the two clocks may differ.
STARTUP_SLACK = timedelta(minutes=1)
PLACEHOLDER = re.compile(r"\{([a-z][a-z_0-9]*)(?::([a-z_]+))?\}")
HEADER = re.compile(r"^-- (title|description|param|sort): ?(.*)$")
PARAM = re.compile(r"^([a-z_0-9]+) \((int|number|duration|pattern|as_of|choice ([a-z_|]+))(?:, default (\S*))?\): "
                   r"(.+)$")
NUMBER = re.compile(r"^\d{1,9}(\.\d{1,9})?$")
DURATION = re.compile(r"^(\d+)\s*(s|m|min|h|d)$")
UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # one of TYPES
    default: str | None  # None: the caller must give it
    doc: str
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        kind = f"one of {'|'.join(self.choices)}" if self.kind == "choice" else self.kind
        default = "required" if self.default is None else f"default {self.default or 'empty'}"
        return f"{self.name} ({kind}, {default}): {self.doc}"

    def parse(self, text: str, now: datetime) -> Any:
        """The value of ``text`` for this type; ValueError says what was expected."""
        text = text.strip()
        if self.kind == "int":
            if not re.fullmatch(r"\d{1,12}", text):
                raise ValueError("expected a whole number >= 0")
            return int(text)
        if self.kind == "number":
            if not NUMBER.fullmatch(text):
                raise ValueError("expected a number >= 0 like 3 or 0.25")
            return Decimal(text)
        if self.kind == "duration":
            return now - parse_duration(text)
        if self.kind == "pattern":
            if len(text) > 200 or not text.isprintable():
                raise ValueError("expected a LIKE pattern of printable characters (at most 200)")
            return text
        if self.kind == "choice":
            if text not in self.choices:
                raise ValueError(f"expected one of {', '.join(self.choices)}")
            return text
        # as_of: an Iceberg snapshot id, a duration ago, or an ISO timestamp (UTC)
        if re.fullmatch(r"\d{6,20}", text):
            return int(text)
        if DURATION.fullmatch(text):
            return now - parse_duration(text)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError("expected a snapshot id, a duration ago (10m) or an ISO timestamp in UTC") from None
        return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment

    def render(self, value: Any, fmt: str | None, engine: str = "trino") -> str:
        """``value`` as SQL for ``engine``. Formats: ``startup_ms`` (a duration's cutoff as epoch milliseconds,
        STARTUP_SLACK early: Fluss's ``scan.startup.timestamp``). A number is a DOUBLE literal (``0.25e0``) in
        every dialect, so arithmetic with it never truncates."""
        if fmt == "startup_ms":
            if self.kind != "duration":
                raise UsageError(f"{{{self.name}:startup_ms}} needs a duration parameter", "fix the query file")
            return str(int((value - STARTUP_SLACK).replace(tzinfo=UTC).timestamp() * 1000))
        if fmt is not None:
            raise UsageError(f"unknown format {{{self.name}:{fmt}}}", "formats: startup_ms")
        if self.kind == "int":
            return str(value)
        if self.kind == "number":
            return f"{value}e0"
        if self.kind == "duration":
            return timestamp_literal(value)
        if self.kind in ("pattern", "choice"):
            return "'" + str(value).replace("'", "''") + "'"
        if engine == "spark":  # Spark SQL's time travel (the session's time zone is UTC)
            return f"VERSION AS OF {value}" if isinstance(value, int) else \
                f"TIMESTAMP AS OF '{value:%Y-%m-%d %H:%M:%S.%f}'"
        if isinstance(value, int):
            return f"FOR VERSION AS OF {value}"
        return f"FOR TIMESTAMP AS OF TIMESTAMP '{value:%Y-%m-%d %H:%M:%S.%f} UTC'"


def parse_duration(text: str) -> timedelta:
    match = DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError("expected a duration like 90s, 5m, 24h or 7d")
    return timedelta(seconds=int(match.group(1)) * UNITS[match.group(2)])


def timestamp_literal(moment: datetime) -> str:
    """A naive UTC moment as a SQL TIMESTAMP literal (the column ``timestamp`` is naive UTC)."""
    return f"TIMESTAMP '{moment:%Y-%m-%d %H:%M:%S.%f}'"


@dataclass(frozen=True)
class Query:
    name: str
    engine: str  # trino | flink
    title: str
    description: str
    params: tuple[Param, ...]
    sql: str
    sort: tuple[str, ...] = ()
    source: str = ""  # the file, for messages

    def param(self, name: str) -> Param:
        for param in self.params:
            if param.name == name:
                return param
        raise KeyError(name)

    def usage(self) -> str:
        lines = [f"{self.name} ({self.engine}): {self.title}"]
        lines += [f"  --param {p.describe()}" for p in self.params] or ["  (no parameters)"]
        return "\n".join(lines)

    def values(self, given: dict[str, str], now: datetime | None = None) -> dict[str, Any]:
        """Every parameter's value: given ones checked against their type, the rest from their defaults. Problems
        are reported together, each with what was expected, and the valid parameters listed."""
        now = now or utc_now()
        known = {p.name for p in self.params}
        problems = []
        for name in given:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                problems.append(f"unknown parameter '{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        values: dict[str, Any] = {}
        for param in self.params:
            text = given.get(param.name, param.default)
            if text is None:
                problems.append(f"parameter '{param.name}' is required")
                continue
            try:
                values[param.name] = param.parse(text, now)
            except ValueError as exc:
                problems.append(f"{param.name}={text!r}: {exc}")
        if problems:
            raise UsageError(f"query {self.name}: " + "; ".join(problems), "valid parameters:\n" + self.usage())
        return values

    def render(self, values: dict[str, Any], database: str) -> str:
        """The statement with every placeholder replaced (``values`` from :meth:`values`)."""

        def replace(match: re.Match[str]) -> str:
            name, fmt = match.group(1), match.group(2)
            if name == "database":
                return database
            return self.param(name).render(values[name], fmt, self.engine)

        return PLACEHOLDER.sub(replace, self.sql)


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def parse_file(name: str, engine: str, text: str, source: str = "") -> Query:
    """One query file → Query; ValueError for a malformed header."""
    fields: dict[str, list[str]] = {"title": [], "description": [], "sort": []}
    params: list[Param] = []
    lines = text.splitlines()
    body_start = len(lines)
    last: str | None = None
    for index, line in enumerate(lines):
        if line.startswith("--  ") and last is not None:
            continuation = line[2:].strip()
            if last == "param":
                previous = params[-1]
                params[-1] = Param(previous.name, previous.kind, previous.default,
                                   f"{previous.doc} {continuation}", previous.choices)
            else:
                fields[last].append(continuation)
            continue
        match = HEADER.match(line)
        if not match:
            body_start = index
            break
        last, value = match.group(1), match.group(2).strip()
        if last == "param":
            spec = PARAM.match(value)
            if not spec:
                raise ValueError(f"{source or name}: malformed parameter line: {line}")
            kind = "choice" if spec.group(3) else spec.group(2)
            choices = tuple(spec.group(3).split("|")) if spec.group(3) else ()
            params.append(Param(spec.group(1), kind, spec.group(4), spec.group(5), choices))
        else:
            fields[last].append(value)
    sql = "\n".join(lines[body_start:]).strip().rstrip(";").strip()
    title, description = " ".join(fields["title"]), " ".join(fields["description"])
    if not title or not description or not sql:
        raise ValueError(f"{source or name}: a query file needs a title, a description and a statement")
    sort = tuple(c.strip() for c in ",".join(fields["sort"]).split(",") if c.strip())
    return Query(name, engine, title, description, tuple(params), sql, sort, source)


_PACKS: dict[str, Query] | None = None
_DIALECT_PACKS: dict[str, dict[str, Query]] = {}


def _read_pack(engine: str) -> dict[str, Query]:
    root = resources.files(__name__).joinpath(engine)
    return {entry.name[:-4]: parse_file(entry.name[:-4], engine, entry.read_text(), f"{engine}/{entry.name}")
            for entry in sorted(root.iterdir(), key=lambda e: e.name) if entry.name.endswith(".sql")}


def packs() -> dict[str, Query]:
    """Every query of both packs by name (names are unique across the packs)."""
    global _PACKS
    if _PACKS is None:
        found: dict[str, Query] = {}
        for engine in ENGINES:
            for name, query in _read_pack(engine).items():
                if name in found:
                    raise ValueError(f"query name {name} is in both packs")
                found[name] = query
        _PACKS = found
    return _PACKS


def dialect_pack(engine: str) -> dict[str, Query]:
    """The queries ``engine`` (a key of DIALECTS) runs from its own files, by name."""
    if engine not in _DIALECT_PACKS:
        _DIALECT_PACKS[engine] = _read_pack(engine)
    return _DIALECT_PACKS[engine]


def find(name: str, engine: str | None = None) -> Query:
    """The query ``name``; with ``engine``, its file for that engine (its own pack's, or a dialect's)."""
    queries = packs()
    if name not in queries:
        close = [n for n in queries if name and name in n][:1] or difflib.get_close_matches(name, list(queries), n=1)
        raise UsageError(f"unknown query '{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""),
                         "valid queries:\n" + listing())
    query = queries[name]
    if engine is None or engine == query.engine:
        return query
    engines = [query.engine, *(e for e, pack in DIALECTS.items() if pack == query.engine)]
    if engine not in engines:
        raise UsageError(f"query {name} runs on {' or '.join(engines)}, not on {engine}",
                         f"leave out --engine, or use --engine {query.engine}")
    return dialect_pack(engine)[name]


def listing() -> str:
    queries = packs()
    width = max(len(n) for n in queries)
    return "\n".join(f"  {q.name:<{width}}  {q.engine:<5}  {q.title}" for q in queries.values())


@dataclass
class Result:
    """A query's answer: column names, rows, and how it was obtained (``notes``: engine-specific facts such as
    why a stream stopped)."""

    query: str
    engine: str
    columns: list[str]
    rows: list[tuple[Any, ...]]
    params: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]
