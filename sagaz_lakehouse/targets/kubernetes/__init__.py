"""The Kubernetes target: plain manifests, applied server-side through the API server.

- ``layout``: the stack model as objects (one file per component, ``kubectl apply -k`` accepts them)
- ``driver``: server-side apply after a dry run, pruning, rollout waiting, ``diff``, teardown
- talking to the API server: connection and errors (``api``), ownership and pruning (``applyset``), rollout
  readiness and diagnosis (``rollout``), and host access to pods (``portforward``)

The kubernetes client is imported inside functions only, so the CLI's ``--help`` stays instant.
"""

from __future__ import annotations

from sagaz_lakehouse.stack import View
from sagaz_lakehouse.targets.base import Capabilities, Target
from sagaz_lakehouse.targets.kubernetes import driver, layout

# The processes run in pods and see each other through cluster DNS. The host reaches them only through port-forwards,
# which `status` does not open (`doctor` does); `diff` and `--force-conflicts` are about server-side apply.
TARGET = Target("kubernetes", View.INTERNAL, Capabilities(diff=True, force_conflicts=True),
                stack=layout.cluster_stack, render=layout.files, driver=driver.KubernetesDriver)
