"""Locked downloads: verified against sha256, cached by digest, corrupt files discarded; the lock matches versions."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from sagaz_lakehouse import artifacts, versions
from sagaz_lakehouse.artifacts import Artifact, DigestMismatch, DownloadFailed


@pytest.fixture
def repository(tmp_path):
    """A loopback HTTP server standing in for a Maven mirror (serves files from a folder)."""
    root = tmp_path / "repo"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def artifact_for(data: bytes, name: str = "x.jar") -> Artifact:
    return Artifact(name=name, sha256=hashlib.sha256(data).hexdigest(), size=len(data), path=f"g/a/1/{name}")


def test_download_is_verified_and_cached(repository, tmp_path):
    root, url = repository
    (root / "g/a/1").mkdir(parents=True)
    (root / "g/a/1/x.jar").write_bytes(b"jar bytes")
    item = artifact_for(b"jar bytes")
    (path,) = artifacts.fetch([item], tmp_path / "cache", url)
    assert path.read_bytes() == b"jar bytes"
    assert path.stat().st_mode & 0o777 == 0o644
    (root / "g/a/1/x.jar").unlink()  # a second fetch must not touch the network
    assert artifacts.fetch([item], tmp_path / "cache", url) == [path]


def test_corrupted_download_is_reported_and_discarded(repository, tmp_path):
    root, url = repository
    (root / "g/a/1").mkdir(parents=True)
    (root / "g/a/1/x.jar").write_bytes(b"tampered")
    item = artifact_for(b"original")
    with pytest.raises(DigestMismatch, match="does not match the locked"):
        artifacts.fetch([item], tmp_path / "cache", url)
    assert not artifacts.cached_path(item, tmp_path / "cache").exists()
    assert not list((tmp_path / "cache").rglob(".part-*"))


def test_missing_file_names_the_url_and_the_mirror_setting(repository, tmp_path):
    _, url = repository
    with pytest.raises(DownloadFailed) as excinfo:
        artifacts.fetch([artifact_for(b"x")], tmp_path / "cache", url)
    assert "HTTP 404" in excinfo.value.message and "local.maven_repository" in excinfo.value.hint


def test_lock_matches_pinned_versions():
    import json

    lock = json.loads(artifacts.LOCK_FILE.read_text())
    assert lock["versions"] == {name: pin.version for name, pin in versions.ALL.items()}
    groups = artifacts.load_lock()
    coordinates = " ".join(a.coordinates for items in groups.values() for a in items)
    for needle in (f"fluss-server:{versions.FLUSS.version}", f"iceberg-open-api:{versions.ICEBERG.version}",
                   f"trino-server-core:{versions.TRINO.version}", f"zookeeper:{versions.ZOOKEEPER.version}",
                   f"apache-flink-libraries=={versions.FLINK.version}",
                   f"fluss-flink-{versions.FLINK_MINOR}:{versions.FLUSS.version}"):
        assert needle in coordinates, needle
    for items in groups.values():
        for item in items:
            assert len(item.sha256) == 64 and item.size > 0 and (item.path or item.url.startswith("https://"))


def test_materialize_links_without_copying(tmp_path):
    source = tmp_path / "a.jar"
    source.write_bytes(b"x")
    artifacts.materialize([source], tmp_path / "lib")
    assert (tmp_path / "lib" / "a.jar").stat().st_ino == source.stat().st_ino
    assert isinstance(artifacts.cache_dir("~/.cache/x"), Path)


def test_go_is_found_where_the_tool_scripts_find_it(tmp_path, monkeypatch):
    """$GO first, then PATH, then /usr/local/go/bin/go (Go's archive install, often not on PATH): the same order as
    scripts/tools/*.sh, so `up` and `make tools` agree on whether Go is there."""
    from sagaz_lakehouse.targets.local import distributions

    fake = tmp_path / "go"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("GO", str(fake))
    assert distributions.find_go() == str(fake)
    monkeypatch.delenv("GO")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert distributions.find_go() == str(fake)
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    monkeypatch.setattr(distributions, "GO_DEFAULT", str(tmp_path / "missing" / "go"))
    assert distributions.find_go() is None
