"""The compose target: one compose project, run by a container engine (Docker, Podman or nerdctl).

- ``layout``: the stack model as ``compose.yaml``, the files it mounts and a 0600 ``.env``
- ``driver``: writes the project and drives ``<engine> compose``; preflight of the published ports
"""

from __future__ import annotations

from sagaz_lakehouse.stack import View
from sagaz_lakehouse.targets.base import Capabilities, Target
from sagaz_lakehouse.targets.compose import driver, layout

# The processes run in containers and see each other by service name. Every client port is published on loopback,
# Prometheus's too, so `status` reads it without opening anything; the engine itself is the driver's first check.
TARGET = Target("compose", View.INTERNAL, Capabilities(status_tiering_lag=True, status_lake_shape=True),
                stack=layout.compose_stack, render=layout.files, driver=driver.ComposeDriver)
