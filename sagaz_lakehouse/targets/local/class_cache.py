"""A JVM's ahead-of-time class cache (JDK 25, JEP 483/514/515): the classes a server loaded and linked on an earlier
run, mapped at start instead of parsed, verified and linked again. Trino spends most of its start-up there: on 2
idle cores it starts in 6.5 s with the cache against 11 s without (bench/results/local.md has the stack's numbers).

The first start *trains*: ``-XX:AOTCacheOutput`` makes the JVM write the cache when it exits (on SIGTERM too; it
takes a further 10-15 s at ``down``, in a child JVM). Later starts map it with ``-XX:AOTCache``; a cache that no
longer fits (another JDK, other jars) is ignored by the JVM with a warning (the default ``-XX:AOTMode=auto``), and
its name carries both, so an upgrade trains a new one.

The caches live in the shared cache folder, one per distribution, JDK and heap size, so every stack on the machine
(each suite of the tests has its own) trains once. A training run writes a name of its own (run folder and
instance); the next start promotes a finished one (its ``.config`` file, which the JVM removes once the cache is
complete, is gone) to the shared name with an atomic rename. A training killed half-way leaves its ``.config``
behind and is trained again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

AOT_CACHE_JAVA = 25  # the first JDK whose -XX:AOTCacheOutput trains and writes the cache in one run
SUFFIX = ".aot"
TRAINING_FLAG = "-XX:AOTCacheOutput="
# How long a training JVM may take to exit: it writes the cache in a child JVM, 10-15 s on idle cores but over 30 s
# (the usual stop grace) beside another stack's starts; killed then, its training is lost and the next start trains
# again, paying the training's start-up cost and another slow exit.
TRAINING_EXIT_GRACE_S = 120.0


def launch_flags(cache_dir: Path, java_home: Path, java_version: int, software_home: Path, heap_flag: str,
                 run_dir: Path, instance: str) -> tuple[str, ...]:
    """The flags that map the cache when one is ready, else train one; none before JDK 25."""
    if java_version < AOT_CACHE_JAVA:
        return ()
    folder = cache_dir / "aot"
    folder.mkdir(parents=True, exist_ok=True)
    key = _key(java_home, software_home, heap_flag)
    ready = folder / f"{key}{SUFFIX}"
    if ready.exists() or _promote_finished(folder, key, ready):
        return (f"-XX:AOTCache={ready}",)
    stack = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:12]
    return (f"{TRAINING_FLAG}{folder / f'{key}.training-{stack}-{instance}{SUFFIX}'}",)


def exit_grace(cmdline: str) -> float:
    """Seconds a process with this command line needs to exit cleanly beyond the usual: a training JVM's write."""
    return TRAINING_EXIT_GRACE_S if TRAINING_FLAG in cmdline else 0.0


def _key(java_home: Path, software_home: Path, heap_flag: str) -> str:
    # The software home's name is content-addressed (the installer's digest of its locked files).
    digest = hashlib.sha256(f"{java_home.resolve()}\0{heap_flag}".encode()).hexdigest()[:12]
    return f"{software_home.name}-java-{digest}"


def _promote_finished(folder: Path, key: str, ready: Path) -> bool:
    for candidate in sorted(folder.glob(f"{key}.training-*{SUFFIX}")):
        try:  # another stack may promote the same file at the same moment
            if candidate.stat().st_size and not Path(f"{candidate}.config").exists():
                os.replace(candidate, ready)
                return True
        except FileNotFoundError:
            continue
    return ready.exists()
