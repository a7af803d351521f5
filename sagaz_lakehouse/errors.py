"""One exception family for the whole toolkit.

Every error carries a message (what went wrong) and a hint (what to do about it). The CLI is the only place
that turns them into output and exit codes, so library code never calls ``sys.exit``.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran, and something it checked or managed is not healthy
EXIT_USAGE = 2  # bad input: flags, config, environment; nothing was changed


class LakehouseError(Exception):
    """Base error: ``message`` says what happened, ``hint`` says how to fix it."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class UsageError(LakehouseError):
    """Bad input that the user can correct; nothing was applied."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Problem:
    """One validation finding: where (a dotted field path or flag), what was expected, and how to fix it."""

    field: str
    message: str
    hint: str = ""
    source: str = ""  # where the value came from: a flag, an environment variable, a file

    def render(self) -> str:
        where = f" (from {self.source})" if self.source else ""
        text = f"{self.field}{where}: {self.message}"
        return f"{text}\n    fix: {self.hint}" if self.hint else text


class ConfigError(UsageError):
    """All problems found in one pass, reported together (not one per run)."""

    def __init__(self, problems: list[Problem], source: str = "configuration") -> None:
        self.problems = problems
        lines = [f"{len(problems)} problem(s) in {source}:"] + [f"  - {p.render()}" for p in problems]
        super().__init__("\n".join(lines), "nothing was written or started; fix the fields above")


class EnvironmentProblem(UsageError):
    """Something the machine lacks (Java, MinIO, a Docker engine, a kubeconfig)."""


class StackNotReachable(LakehouseError):
    """A command needs the running stack and cannot reach it."""

    def __init__(self, component: str, endpoint: str, detail: str = "") -> None:
        message = f"{component} is not reachable at {endpoint}" + (f" ({detail})" if detail else "")
        super().__init__(message, "is the stack up? run `sagaz-lakehouse up` (and `sagaz-lakehouse status`)")


class ComponentFailed(LakehouseError):
    """A component did not become healthy; carries the tail of its log."""

    def __init__(self, component: str, check: str, log_tail: str, hint: str = "") -> None:
        message = f"{component} did not become healthy ({check})"
        if log_tail:
            message += f"\n--- last lines of the {component} log ---\n{log_tail}"
        super().__init__(message, hint or f"see `sagaz-lakehouse logs {component}`")
        self.component = component


def explain(exc: BaseException) -> str:
    """One line (and a hint) for an error a library raised that our code did not translate."""
    import urllib.error

    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, urllib.error.URLError):
        return (f"a request failed: {getattr(exc, 'reason', message)}\n  hint: is the stack up? "
                "run `sagaz-lakehouse status`")
    if isinstance(exc, ConnectionError | TimeoutError):
        return f"a connection failed: {message}\n  hint: is the stack up? run `sagaz-lakehouse status`"
    module = type(exc).__module__.split(".")[0]
    origin = {"fluss": "Fluss", "pyiceberg": "Iceberg", "trino": "Trino", "kubernetes": "Kubernetes",
              "pyarrow": "the object store"}.get(module)
    if origin:
        return (f"{origin} reported {type(exc).__name__}: {message}\n  hint: see `sagaz-lakehouse status` and the "
                "component's log (`sagaz-lakehouse logs COMPONENT`); --debug shows the traceback")
    return (f"unexpected {type(exc).__name__}: {message}\n  hint: re-run with --debug for the traceback, and "
            "please report it")
