"""Fluss 0.9 logs every configuration value at start-up, credentials included: every target must give its Fluss
servers the masking log layout, and the layout must actually mask."""

from __future__ import annotations

import re

import pytest
import yaml

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import config, render

CREDS = config.Credentials("mask-access", "mask-secret-value")


def masking_pattern() -> tuple[re.Pattern[str], str]:
    """The regex and replacement of log4j's %replace{%m}{regex}{replacement} in the shipped layout."""
    layout = next(line for line in render.masked_log4j().splitlines() if "%replace" in line)
    regex, replacement = re.search(r"%replace\{%m\}\{(.*)\}\{(.*?)\}%n", layout).groups()
    return re.compile(regex.replace("\\\\", "\\")), replacement.replace("$1", r"\1")


@pytest.mark.parametrize("line", [
    "Loading configuration property: s3.secret-key=mask-secret-value",
    "Loading configuration property: datalake.iceberg.s3.secret-access-key=mask-secret-value",
    "Loading configuration property: s3.access-key=mask-access",
])
def test_layout_masks_credentials(line):
    pattern, replacement = masking_pattern()
    masked = pattern.sub(replacement, line)
    assert "mask-secret-value" not in masked and "mask-access" not in masked and "******" in masked


def test_layout_leaves_other_properties_alone():
    pattern, replacement = masking_pattern()
    line = "Loading configuration property: s3.endpoint=http://minio:9000"
    assert pattern.sub(replacement, line) == line


def test_every_target_gives_it_to_fluss():
    from sagaz_lakehouse.components import fluss
    from sagaz_lakehouse.targets.base import render as render_target

    settings = lakehouse.load_settings(environ={})
    path = f"{fluss.CONF_DIR}/log4j-console.properties"
    compose = {f.path: f.content for f in render_target(settings, CREDS, "compose")}
    services = yaml.safe_load(compose["compose.yaml"])["services"]
    for name in ("fluss-coordinator", "fluss-tablet-0"):
        mount = next(m for m in services[name]["volumes"] if m["target"] == path)
        assert compose[mount["source"].removeprefix("./")] == render.masked_log4j()

    kube = "\n".join(f.content for f in render_target(settings, CREDS, "kubernetes"))
    assert kube.count(f"mountPath: {path}") == 2  # coordinator and tablet StatefulSets

    local = {f.path: f.content for f in render_target(settings, CREDS, "local")}
    assert local["config/fluss-coordinator/log4j-console.properties"] == render.masked_log4j()
