"""A stack under test on the test cluster: its own namespace, settings, driver and log (a running.RunningStack)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from support import SuiteStack

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse.errors import LakehouseError
from sagaz_lakehouse.targets.kubernetes.api import ref
from sagaz_lakehouse.targets.kubernetes.driver import RENDERED_KINDS, KubernetesDriver

UP_TIMEOUT = 240
_numbers = itertools.count(1)


class Stack(SuiteStack):
    """One stack under test: a namespace of its own on the test cluster (its settings: running.RunningStack), a
    driver run in this process, and what that driver logged."""

    def __init__(self, cluster: Any, tmp_path: Path, **overrides: str) -> None:
        self.cluster = cluster
        self.namespace = f"sagaz-t{next(_numbers)}"
        super().__init__(tmp_path, {"target": "kubernetes", "kubernetes.kubeconfig": str(cluster.kubeconfig),
                                    "kubernetes.namespace": self.namespace})
        self.messages: list[str] = []
        self.driver = self.make(**overrides)

    def make(self, context: str = "", force_conflicts: bool = False, credentials: lakehouse.Credentials | None = None,
             **overrides: str) -> KubernetesDriver:
        values = {**self.overrides, **overrides}
        if context:
            values["kubernetes.context"] = context
        settings = lakehouse.load_settings(None, values, environ={})
        return KubernetesDriver(settings, self.workdir, log=self.messages.append, force_conflicts=force_conflicts,
                                credentials=credentials)

    def up(self, driver: KubernetesDriver | None = None, timeout: int = UP_TIMEOUT, **kwargs: Any) -> dict:
        try:
            return (driver or self.driver).up(dry_run=kwargs.pop("dry_run", False), wait=kwargs.pop("wait", True),
                                              timeout=timeout)
        except LakehouseError as exc:
            if kwargs.get("expect_error"):
                raise
            pytest.fail(f"up failed: {exc}\n--- driver log ---\n" + "\n".join(self.messages[-30:])
                        + "\n--- cluster logs ---\n" + self.cluster.log_tail(), pytrace=False)

    def owned(self) -> dict[tuple, str]:
        """ref -> resourceVersion of every object carrying this stack's ApplySet label; for a disruption budget its
        generation instead: its status follows the pods at the disruption controller's own pace, after `up` is
        done, and only a change of its spec is ours."""
        found = self.driver.owned_objects(set(RENDERED_KINDS))
        return {ref(o): str(o["metadata"]["generation"] if o["kind"] == "PodDisruptionBudget"
                            else o["metadata"]["resourceVersion"]) for o in found}

    def api(self) -> Any:
        return self.driver.cluster()

