"""Ownership of applied objects, after the ApplySet convention (KEP-3659, the labels ``kubectl apply --applyset``
uses): every object we apply carries ``applyset.kubernetes.io/part-of: <id>``, and a parent ConfigMap in the
namespace records the id and the kinds the set contains. Pruning and ``down`` only ever consider objects with
that label, so an object someone else created is never deleted.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from typing import Any

from sagaz_lakehouse.targets.kubernetes.api import group_of, ref
from sagaz_lakehouse.version import __version__

Obj = dict[str, Any]

PART_OF = "applyset.kubernetes.io/part-of"
ID = "applyset.kubernetes.io/id"
TOOLING = "applyset.kubernetes.io/tooling"
CONTAINS = "applyset.kubernetes.io/contains-group-kinds"
PARENT_KIND = "ConfigMap"
PARENT_SUFFIX = "-applyset"

# Preferred API version per group for the kinds we render (discovery is used for anything else).
VERSION_OF_GROUP = {"": "v1", "apps": "apps/v1", "batch": "batch/v1", "networking.k8s.io": "networking.k8s.io/v1",
                    "policy": "policy/v1", "rbac.authorization.k8s.io": "rbac.authorization.k8s.io/v1"}


def applyset_id(name: str, namespace: str, kind: str = PARENT_KIND, group: str = "") -> str:
    """The id kubectl derives from the parent: applyset-<base64url(sha256(name.namespace.kind.group))>-v1."""
    digest = hashlib.sha256(f"{name}.{namespace}.{kind}.{group}".encode()).digest()
    return f"applyset-{base64.urlsafe_b64encode(digest).decode().rstrip('=')}-v1"


def group_kind(obj: Obj) -> str:
    """'Deployment.apps', or just 'Namespace' for the core group (the annotation's format)."""
    group = group_of(obj["apiVersion"])
    return f"{obj['kind']}.{group}" if group else obj["kind"]


def split_group_kind(text: str) -> tuple[str, str]:
    kind, _, group = text.partition(".")
    return group, kind


class ApplySet:
    """The set of objects one stack (project + namespace) owns."""

    def __init__(self, project: str, namespace: str) -> None:
        self.parent_name = project + PARENT_SUFFIX
        self.namespace = namespace
        self.id = applyset_id(self.parent_name, namespace)

    @property
    def selector(self) -> str:
        return f"{PART_OF}={self.id}"

    def owned(self, obj: Obj) -> bool:
        return (obj.get("metadata", {}).get("labels") or {}).get(PART_OF) == self.id

    def label(self, obj: Obj) -> Obj:
        """A copy of ``obj`` carrying the part-of label."""
        labelled = copy.deepcopy(obj)
        labelled["metadata"].setdefault("labels", {})[PART_OF] = self.id
        return labelled

    def parent(self, group_kinds: set[str]) -> Obj:
        return {"apiVersion": "v1", "kind": PARENT_KIND,
                "metadata": {"name": self.parent_name, "namespace": self.namespace,
                             "labels": {ID: self.id, "app.kubernetes.io/managed-by": "sagaz-lakehouse"},
                             "annotations": {TOOLING: f"sagaz-lakehouse/v{__version__}",
                                             CONTAINS: ",".join(sorted(group_kinds))}}}

    @staticmethod
    def recorded_kinds(parent: Obj | None) -> set[str]:
        """The group-kinds a live parent says the set contains (empty when there is no parent yet)."""
        text = ((parent or {}).get("metadata", {}).get("annotations") or {}).get(CONTAINS, "")
        return {item for item in text.split(",") if item}


def prunable(live: list[Obj], wanted: list[Obj], applyset: ApplySet) -> list[Obj]:
    """Live objects of this set that are no longer rendered; anything without our label is left alone."""
    keep = {ref(o) for o in wanted}
    return [o for o in live if applyset.owned(o) and ref(o) not in keep]
