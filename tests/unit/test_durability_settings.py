"""Durability settings: replication by default, the derived Fluss server properties, and refused combinations."""

from __future__ import annotations

import pytest

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import config
from sagaz_lakehouse.components import fluss
from sagaz_lakehouse.config import ConfigError
from sagaz_lakehouse.targets.local import layout as local


def settings(**overrides: object) -> config.Settings:
    return lakehouse.load_settings(None, {k: str(v) for k, v in overrides.items()}, environ={})


def test_defaults_replicate_every_bucket_twice_and_save_the_high_watermark_every_second():
    s = settings()
    assert (s.replicas.tablet_servers, s.replication_factor, s.min_in_sync_replicas) == (2, 2, 1)
    assert fluss.durability_properties(s) == {
        "default.replication.factor": "2", "log.replica.min-in-sync-replicas-number": "1",
        "log.replica.high-watermark.checkpoint-interval": "1s", "log.replica.fetch.wait-max-time": "50ms"}
    assert settings(profile="prod").replication_factor == 2


def test_three_tablet_servers_give_three_replicas_two_of_them_in_sync():
    s = settings(**{"replicas.tablet_servers": 3})
    assert (s.replication_factor, s.min_in_sync_replicas) == (3, 2)
    assert settings(**{"replicas.tablet_servers": 5}).replication_factor == 3


def test_explicit_settings_win_and_reach_the_coordinator_and_every_tablet_server(tmp_path):
    s = settings(**{"replicas.tablet_servers": 1, "durability.hw_checkpoint_interval": "100ms",
                    "durability.replica_fetch_wait": "500ms"})
    assert (s.replication_factor, s.min_in_sync_replicas) == (1, 1)
    files = {f.path: f.content for f in local.files(s, config.DEV_CREDENTIALS, local.default_layout(s, tmp_path))}
    for name in ("config/fluss-coordinator/server.yaml", "config/fluss-tablet-0/server.yaml"):
        assert "log.replica.high-watermark.checkpoint-interval: 100ms" in files[name]
        assert "default.replication.factor: 1" in files[name]
        assert "log.replica.fetch.wait-max-time: 500ms" in files[name]


def test_more_replicas_than_tablet_servers_or_more_in_sync_than_replicas_is_refused():
    with pytest.raises(ConfigError) as excinfo:
        settings(**{"replicas.tablet_servers": 2, "durability.replication_factor": 3})
    assert "durability.replication_factor" in str(excinfo.value)
    with pytest.raises(ConfigError) as excinfo:
        settings(**{"durability.min_in_sync_replicas": 3})
    assert "no write could ever be acknowledged" in str(excinfo.value)


def test_a_replica_fetch_wait_that_is_not_a_duration_is_refused_naming_the_field():
    with pytest.raises(ConfigError) as excinfo:
        settings(**{"durability.replica_fetch_wait": "fast"})
    assert [p.field for p in excinfo.value.problems] == ["durability.replica_fetch_wait"]
