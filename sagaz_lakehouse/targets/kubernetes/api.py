"""Connection to the API server and the few verbs the driver needs, with errors a user can act on.

Every call goes through ``Cluster.call`` so that a refusal names the verb, the resource and the cluster
(kubeconfig path and context), and a field conflict names the manager that owns the field.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sagaz_lakehouse.config import Settings
from sagaz_lakehouse.errors import EnvironmentProblem, LakehouseError, UsageError

FIELD_MANAGER = "sagaz-lakehouse"
REQUEST_TIMEOUT = 30  # seconds per API request
DEFAULT_KUBECONFIG = "~/.kube/config"

Obj = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class Where:
    """Which cluster we talk to, for every message that mentions it."""

    kubeconfig: Path
    context: str
    server: str = ""

    def __str__(self) -> str:
        return f"context '{self.context}' in {self.kubeconfig}" + (f" ({self.server})" if self.server else "")


def kubeconfig_path(setting: str) -> Path:
    """settings.kubernetes.kubeconfig, else the first file of $KUBECONFIG, else ~/.kube/config (as kubectl)."""
    raw = setting or next((p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p), DEFAULT_KUBECONFIG)
    return Path(raw).expanduser()


def connect(settings: Settings) -> Cluster:
    """A client for the configured context; exit 2 with the path and context when it cannot be reached."""
    from kubernetes import config as kube_config

    path = kubeconfig_path(settings.kubernetes.kubeconfig)
    if not path.is_file():
        raise EnvironmentProblem(
            f"no kubeconfig at {path}",
            "point KUBECONFIG or --set kubernetes.kubeconfig=PATH at your cluster's kubeconfig "
            "(kind, minikube and cloud CLIs write one), or use --target local")
    try:
        contexts, active = kube_config.list_kube_config_contexts(config_file=str(path))
    except Exception as exc:  # the client raises ConfigException, yaml errors or KeyError for a broken file
        raise EnvironmentProblem(f"cannot read kubeconfig {path}: {exc}", "fix or regenerate the file") from exc
    names = [c["name"] for c in contexts or []]
    context = settings.kubernetes.context or (active or {}).get("name", "")
    if context not in names:
        what = f"context '{context}' not found" if context else "no current context set"
        raise UsageError(f"{what} in kubeconfig {path}",
                         f"pass --context NAME (one of: {', '.join(names) or 'none defined'}) "
                         "or --set kubernetes.context=NAME")
    try:
        api_client = kube_config.new_client_from_config(config_file=str(path), context=context)
    except Exception as exc:
        raise EnvironmentProblem(f"cannot load {Where(path, context)}: {exc}",
                                 "check the context's cluster and user entries") from exc
    cluster = Cluster(api_client, Where(path, context, api_client.configuration.host))
    cluster.check_reachable()
    return cluster


class Cluster:
    """One API server, reached through the kubernetes client (dynamic client for every kind we apply)."""

    def __init__(self, api_client: Any, where: Where) -> None:
        self.api_client = api_client
        self.where = where
        self._dynamic: Any = None

    # ------------------------------------------------------------------------------------------ plumbing

    @property
    def dynamic(self) -> Any:
        if self._dynamic is None:
            from kubernetes import dynamic

            self._dynamic = self.call("discover", "API resources", lambda: dynamic.DynamicClient(self.api_client))
        return self._dynamic

    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api_client)

    def streaming_core(self) -> Any:
        """A CoreV1Api on an ApiClient of its own, for websocket streams (port-forwards): see portforward.pod_opener."""
        from kubernetes import client

        return client.CoreV1Api(client.ApiClient(configuration=self.api_client.configuration))

    def check_reachable(self) -> str:
        from kubernetes import client

        info = self.call("get", "/version", lambda: client.VersionApi(self.api_client).get_code(
            _request_timeout=10))
        return str(info.git_version)

    def resource(self, api_version: str, kind: str) -> Any:
        return self.call("discover", f"{kind} ({api_version})",
                         lambda: self.dynamic.resources.get(api_version=api_version, kind=kind))

    def call(self, verb: str, what: str, action: Callable[[], T]) -> T:
        """Run one API call; turn transport and API errors into messages naming verb, resource and cluster."""
        try:
            return action()
        except LakehouseError:
            raise
        except Exception as exc:
            raise translate(exc, verb, what, self.where) from exc

    # ------------------------------------------------------------------------------------------ verbs

    def apply(self, obj: Obj, *, dry_run: bool = False, force: bool = False) -> Obj:
        """Server-side apply with our field manager and strict field validation."""
        res = self.resource(obj["apiVersion"], obj["kind"])
        params: dict[str, Any] = {"field_manager": FIELD_MANAGER, "force_conflicts": force,
                                  "query_params": [("fieldValidation", "Strict")],
                                  "_request_timeout": REQUEST_TIMEOUT}
        if dry_run:
            params["dry_run"] = "All"
        meta = obj["metadata"]
        result = self.call("apply", describe(obj), lambda: self.dynamic.server_side_apply(
            res, body=obj, name=meta["name"], namespace=meta.get("namespace"), **params))
        return result.to_dict()

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        res = self.resource(api_version, kind)

        def fetch() -> Obj | None:
            try:
                return res.get(name=name, namespace=namespace, _request_timeout=REQUEST_TIMEOUT).to_dict()
            except NotFoundError:
                return None

        return self.call("get", f"{kind} {name}", fetch)

    def list(self, api_version: str, kind: str, namespace: str | None = None, selector: str = "") -> list[Obj]:
        res = self.resource(api_version, kind)
        found = self.call("list", plural(kind), lambda: res.get(namespace=namespace, label_selector=selector or None,
                                                                _request_timeout=REQUEST_TIMEOUT))
        items = found.to_dict().get("items") or []
        for item in items:  # list items come without apiVersion/kind
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    def delete(self, obj: Obj, *, propagation: str = "Background") -> bool:
        """Delete one object; False when it was already gone."""
        from kubernetes.dynamic.exceptions import NotFoundError

        res = self.resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]

        def remove() -> bool:
            try:
                res.delete(name=meta["name"], namespace=meta.get("namespace"), propagation_policy=propagation,
                           _request_timeout=REQUEST_TIMEOUT)
            except NotFoundError:
                return False
            return True

        return self.call("delete", describe(obj), remove)


# ---------------------------------------------------------------------------------------------- helpers


def describe(obj: Obj) -> str:
    meta = obj.get("metadata", {})
    where = f" in namespace {meta['namespace']}" if meta.get("namespace") else ""
    return f"{obj.get('kind', '?')} {meta.get('name', '?')}{where}"


def plural(kind: str) -> str:
    lower = kind.lower()
    return lower + ("es" if lower.endswith("s") else "s")


def ref(obj: Obj) -> tuple[str, str, str, str]:
    """Identity of an object: (apiVersion group, kind, namespace, name)."""
    meta = obj["metadata"]
    return (group_of(obj["apiVersion"]), obj["kind"], meta.get("namespace") or "", meta["name"])


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]


WRITE_VERBS = ("apply", "create", "replace", "delete")


def translate(exc: Exception, verb: str, what: str, where: Where) -> LakehouseError:
    """An error message for a failed call: forbidden, conflict, invalid, unreachable or anything else."""
    status = getattr(exc, "status", None)
    if status is None:
        reason = str(getattr(exc, "reason", "") or exc).splitlines()[0][:300]
        return EnvironmentProblem(f"the API server of {where} is not reachable: {reason}",
                                  "check that the cluster runs and the context is right (--context), "
                                  "or use --target local")
    body = _body(exc)
    message = body.get("message") or str(getattr(exc, "reason", "")) or f"HTTP {status}"
    if status == 401:
        return UsageError(f"the API server of {where} rejected our credentials ({message})",
                          "refresh the kubeconfig's credentials (log in again with your cluster's tooling)")
    if status == 403:
        refused = re.search(r'cannot (\w+) resource "([^"]+)"', message)
        verb_used, resource = refused.groups() if refused else (verb, what)
        return UsageError(f"forbidden: cannot {verb_used} {resource} ({what}): {message}",
                          f"ask a cluster admin for RBAC permission to {verb_used} {resource} (check with "
                          f"`kubectl auth can-i {verb_used} {resource}`), or use another context than {where}")
    if status == 409 and verb == "apply":
        return UsageError(f"{what}: {conflict_summary(body) or message}",
                          "another client changed these fields; run again with --force-conflicts to take them "
                          "over, or undo that client's change")
    if status in (400, 422) and verb not in WRITE_VERBS:  # e.g. logs of a container that has not started yet
        return LakehouseError(f"could not {verb} {what}: {message}",
                              "the pod may still be starting; `sagaz-lakehouse status` shows its state")
    if status in (400, 422):
        return UsageError(f"the API server refused to {verb} {what}: {message}",
                          "a setting produced an object this cluster rejects; check the fields named above "
                          "(`sagaz-lakehouse render --target kubernetes` shows the objects)")
    return LakehouseError(f"could not {verb} {what} on {where}: HTTP {status} {message}",
                          "retry; if it persists, check the API server's health")


def conflict_summary(body: Obj) -> str:
    """'field conflict with manager "x" on .spec.replicas; ...' from a 409 apply response."""
    causes = (body.get("details") or {}).get("causes") or []
    parts = [c.get("message", "") for c in causes if c.get("reason") == "FieldManagerConflict"]
    return ("field conflict: " + "; ".join(parts)) if parts else ""


def _body(exc: Exception) -> Obj:
    raw = getattr(exc, "body", None)
    if isinstance(raw, bytes):
        raw = raw.decode(errors="replace")
    if isinstance(raw, str) and raw.strip().startswith("{"):
        try:
            return json.loads(raw)
        except ValueError:
            return {}
    return {}
