"""Software built after ``up`` returns: ``python -m sagaz_lakehouse.targets.local.background RUN_DIR NAME -- BUILD...``.

A cold ``up`` would otherwise wait minutes for Prometheus, built from the Go module proxy, although nothing in the
data path needs it (issue 29: a newcomer's first ``make up`` in minutes). So ``up`` starts everything else and
leaves the build to this process. It runs the build command (at a lower CPU priority, so the JVMs starting beside
it come first), then starts every instance ``up`` left a start specification for, and hands each specification
to the watchdog, which restarts the instance from then on like any other.

Files in the run folder, beside the watchdog's (``watchdog.py``):

``watchdog/pending/INSTANCE.json``
    the instance's start specification (``watchdog.StartSpec``, 0600), written by ``up`` in place of
    ``watchdog/specs/INSTANCE.json``; moved there once the instance is started. ``down`` removes it under the
    start lock, so a build that ends after ``down`` starts nothing.
``watchdog/pending/NAME.pid``, ``watchdog/pending/NAME.failed``
    the builder's pid (it leads its process group, the build included); the build's exit status when it failed
    (``status`` shows it with the log tail; the next ``up`` builds again).
``logs/NAME-build.log``
    the build's output.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sagaz_lakehouse.targets.local import watchdog

MODULE = "sagaz_lakehouse.targets.local.background"
NICENESS = 10  # below the JVMs that start while the build runs


def _folder(run_dir: Path) -> Path:
    return watchdog.folder(run_dir) / "pending"


def pid_file(run_dir: Path, name: str) -> Path:
    return _folder(run_dir) / f"{name}.pid"


def failed_file(run_dir: Path, name: str) -> Path:
    return _folder(run_dir) / f"{name}.failed"


def build_log(run_dir: Path, name: str) -> Path:
    return run_dir / "logs" / f"{name}-build.log"


@dataclass(frozen=True)
class Build:
    """Where a background build stands, for ``status`` and ``doctor``."""

    state: str  # "building" or "build failed"
    detail: str
    log_tail: str = ""


def running_pid(run_dir: Path, name: str) -> int | None:
    return watchdog.module_pid(pid_file(run_dir, name), run_dir, (MODULE,))


def launch(run_dir: Path, name: str, instances: Sequence[str], build: Sequence[str],
           python: str = sys.executable) -> int:
    """Start the builder of ``name`` unless it runs (idempotent: a second ``up`` while it builds changes nothing).
    It starts ``instances`` (their specifications written by :func:`watchdog.write_spec` with ``pending=True``)."""
    pid = running_pid(run_dir, name)
    if pid is not None:
        return pid
    failed_file(run_dir, name).unlink(missing_ok=True)
    log = build_log(run_dir, name)
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [python, "-m", MODULE, str(run_dir), name, *[f"--start={i}" for i in instances], "--", *build]
    child = watchdog.start_detached(argv, log, pid_file(run_dir, name), lambda: running_pid(run_dir, name) is not None,
                                    banner=f"===== {time.strftime('%Y-%m-%d %H:%M:%S')} building {name} =====\n")
    return child.pid


def state(run_dir: Path, name: str) -> Build | None:
    """Building, or failed to build; None when no build of ``name`` is pending or known."""
    log = build_log(run_dir, name)
    if running_pid(run_dir, name) is not None:
        since = time.strftime("%H:%M:%S", time.localtime(pid_file(run_dir, name).stat().st_mtime))
        return Build("building", f"being built in the background since {since}; it starts once built "
                                 f"(log: {log})")
    try:
        code = failed_file(run_dir, name).read_text().strip()
    except OSError:
        return None
    return Build("build failed", f"the background build exited {code} (log: {log}); `sagaz-lakehouse up` "
                                 "builds it again", watchdog.tail(log))


def stop_all(run_dir: Path, grace: float = 5.0) -> list[str]:
    """``down``: stop every builder and forget what they would have started. Under the start lock, so a builder
    that just finished either started its instances already (``down`` then stops them) or never will."""
    folder = _folder(run_dir)
    if not folder.exists():
        return []
    stopped = []
    with watchdog.exclusive(run_dir):
        for path in folder.glob("*.pid"):
            name = path.stem
            pid = running_pid(run_dir, name)
            if pid is not None:
                watchdog.terminate(pid, run_dir, grace)
                stopped.append(name)
        for path in folder.iterdir():
            path.unlink(missing_ok=True)
    return stopped


# ---------------------------------------------------------------------------------------------- the builder


def _start_pending(run_dir: Path, instance: str) -> str:
    """Start one instance from its pending specification and hand the specification to the watchdog."""
    with watchdog.exclusive(run_dir):
        pending = watchdog.pending_path(run_dir, instance)
        if not pending.exists():
            return f"{instance}: not started (`down` ran meanwhile)"
        spec = watchdog.StartSpec.from_json(pending.read_text())
        if watchdog.component_pid(run_dir, instance) is None:
            watchdog.spawn(run_dir, spec, watchdog.environment_for(spec, os.environ), why="built in the background")
        os.replace(pending, watchdog.spec_path(run_dir, instance))
        return f"{instance}: started"


def main(argv: Sequence[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("name")
    parser.add_argument("--start", action="append", default=[], help="an instance to start once built")
    if "--" not in argv:
        parser.error("the build command goes after --")
    split = list(argv).index("--")
    args, build = parser.parse_args(argv[:split]), list(argv[split + 1:])
    run_dir = args.run_dir.resolve()
    # Only the build runs niced: the instance started afterwards must not inherit it.
    code = subprocess.run(build, stdin=subprocess.DEVNULL, preexec_fn=lambda: os.nice(NICENESS)).returncode
    if code != 0:
        failed_file(run_dir, args.name).write_text(f"{code}\n")
        print(f"{time.strftime('%H:%M:%S')} build failed (exit {code})", flush=True)
        return code
    for instance in args.start:
        print(f"{time.strftime('%H:%M:%S')} {_start_pending(run_dir, instance)}", flush=True)
    pid_file(run_dir, args.name).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
