"""Kubernetes driver: server-side apply of the rendered objects, rollout waiting, pruning, teardown.

Safety rules, in the order ``up`` enforces them:

1. Before anything is written, every rendered object that already exists must belong to this stack (carry its
   ApplySet label); otherwise nothing is applied and the foreign objects are named. A pre-existing namespace is
   used as it is and never labelled, pruned or deleted.
2. Every object is dry-run on the server first (strict field validation), so an object the cluster rejects stops
   ``up`` before the first real change. A namespace created just for that is removed again.
3. Objects are applied in dependency order with field manager ``sagaz-lakehouse``; a field owned by another
   manager is a conflict unless ``--force-conflicts``.
4. Objects of this stack that are no longer rendered are pruned; nothing without the label is ever deleted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sagaz_lakehouse import addresses, security, tls
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.config import PLACEHOLDER_CREDENTIALS, Credentials, Settings
from sagaz_lakehouse.errors import LakehouseError, StackNotReachable, UsageError
from sagaz_lakehouse.stack import View
from sagaz_lakehouse.targets import RESTART_TIMEOUT_S
from sagaz_lakehouse.targets.kubernetes import layout
from sagaz_lakehouse.targets.kubernetes.api import Cluster, describe
from sagaz_lakehouse.targets.kubernetes.applyset import (
    VERSION_OF_GROUP,
    ApplySet,
    group_kind,
    prunable,
    split_group_kind,
)
from sagaz_lakehouse.targets.kubernetes.rollout import (
    WORKLOAD_KINDS,
    Readiness,
    crash_loops,
    diagnose,
    pods_of,
    readiness,
)

Obj = dict[str, Any]
Log = Callable[[str], None]

# Teardown order: consumers before what they consume; the namespace (only with --purge, only if ours) last.
DELETE_ORDER = ("Job", "Deployment", "StatefulSet", "PodDisruptionBudget", "Service", "NetworkPolicy", "ConfigMap",
                "Secret", "PersistentVolumeClaim", "ClusterRoleBinding", "ClusterRole", "ServiceAccount", "Namespace")
# Kinds outside any namespace that a render may hold (the prod tablet servers' node reader: layout._node_reader).
# They are looked for only where the applyset parent records them: listing them needs cluster-wide rights that a
# stack without them (dev) does not ask for.
CLUSTER_KINDS = ("Namespace", "ClusterRole", "ClusterRoleBinding")
RENDERED_KINDS = {"Namespace", "Secret", "ConfigMap", "Service", "NetworkPolicy.networking.k8s.io",
                  "PodDisruptionBudget.policy", "StatefulSet.apps", "Deployment.apps", "Job.batch"}
POLL_SECONDS = 2.0
CRASH_CHECK_SECONDS = 10.0  # how often waiting looks at the pods of blocked workloads for crash loops
PROGRESS_EVERY = 15.0  # seconds between repeated progress lines while nothing changes
DELETE_TIMEOUT = 180


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class KubernetesDriver:
    def __init__(self, settings: Settings, base_dir: Path, *, log: Log | None = None,
                 credentials: Credentials | None = None, force_conflicts: bool = False) -> None:
        self.settings = settings
        self.base_dir = base_dir
        self.log = log or _stderr
        self.force_conflicts = force_conflicts
        self._credentials = credentials
        self._cluster: Cluster | None = None
        self._forwards: Any = None  # the PortForwards of the running client_endpoints block
        self.applyset = ApplySet(settings.project, settings.namespace)
        self.stack: s.Stack = layout.cluster_stack(settings)

    # ------------------------------------------------------------------------------------------ plumbing

    @property
    def namespace(self) -> str:
        return self.settings.namespace

    def cluster(self) -> Cluster:
        if self._cluster is None:
            from sagaz_lakehouse.targets.kubernetes.api import connect

            self._cluster = connect(self.settings)
        return self._cluster

    def credentials(self) -> Credentials:
        if self._credentials is None:
            # the processes run in pods: an operator's Trino certificate must name the trino Service too
            self._credentials = security.resolve_credentials(self.settings, View.INTERNAL, base_dir=self.base_dir)
        return self._credentials

    @property
    def tls_dir(self) -> Path:
        """Where this machine keeps Trino's certificate for the namespace (prod): its CA is what the CLI trusts."""
        run_dir = Path(self.settings.local.run_dir).expanduser()
        run_dir = run_dir if run_dir.is_absolute() else self.base_dir / run_dir
        return run_dir / "kubernetes" / self.namespace / "tls"

    def credentials_with_tls(self, *, make: bool = True) -> Credentials:
        """The credentials with Trino's keystore where Trino serves HTTPS: the operator's (secrets.trino_tls); else
        the one the live Secret holds while it is still valid for the Service's names (so a second `up`, from any
        machine, keeps the certificate and Trino keeps running); else one made here. Its CA is kept in ``tls_dir``
        for this machine's clients. ``make`` False (a dry run, `diff`) writes nothing."""
        credentials = self.credentials()
        if not security.trino_auth_on(self.settings):
            return credentials
        if credentials.trino_keystore:  # the operator's
            if make:
                tls.install(self.tls_dir, credentials.trino_keystore)
            return credentials
        hosts = security.trino_certificate_hosts(self.settings, View.INTERNAL)
        keystore = self._live_keystore()
        if not tls.reusable(keystore, hosts):
            keystore = tls.ensure(self.tls_dir, hosts).keystore_pem if make else PLACEHOLDER_CREDENTIALS.trino_keystore
        elif make:
            tls.install(self.tls_dir, keystore)
        with_tls = dataclasses.replace(credentials, trino_keystore=keystore)
        if make:
            self._credentials = with_tls
        return with_tls

    def _live_keystore(self) -> str:
        """Trino's keystore as the live Secret holds it ("" when there is none)."""
        import base64

        live = self.cluster().get("v1", "Secret", layout.SECRET_NAME, self.namespace)
        encoded = ((live or {}).get("data") or {}).get(layout.TRINO_KEYSTORE_KEY, "")
        return base64.b64decode(encoded).decode(errors="replace") if encoded else ""

    def served_ca(self) -> Path:
        """The certificate Trino serves, as the live Secret (else the operator's setting) holds it, written to
        ``tls_dir`` for this machine's clients to trust."""
        keystore = self._live_keystore() or self.credentials().trino_keystore
        if not keystore:
            raise StackNotReachable(s.TRINO, f"namespace {self.namespace}", f"no Secret {layout.SECRET_NAME} with "
                                    "Trino's certificate (run `sagaz-lakehouse up`)")
        return tls.install(self.tls_dir, keystore).ca_file

    def desired(self, *, make: bool = True) -> list[Obj]:
        """Every rendered object, in dependency order, labelled as members of this stack's ApplySet."""
        manifests = layout.manifests(self.settings, self.credentials_with_tls(make=make))
        return [self.applyset.label(obj) for manifest in manifests for obj in manifest.objects]

    # ------------------------------------------------------------------------------------------ up

    def up(self, *, dry_run: bool, wait: bool, timeout: int) -> dict[str, Any]:
        objects = self.desired(make=not dry_run)
        cluster = self.cluster()
        self.log(f"applying {len(objects)} objects to namespace {self.namespace} ({cluster.where})")
        namespace_obj, members = objects[0], objects[1:]
        live_namespace = cluster.get("v1", "Namespace", self.namespace)
        self._refuse_foreign(members)
        if dry_run:
            return self._dry_run_up(namespace_obj, members, live_namespace)
        created_namespace = False
        if live_namespace is None:
            cluster.apply(namespace_obj)
            created_namespace = True
            self.log(f"  created Namespace {self.namespace}")
        elif not self.applyset.owned(live_namespace):
            self.log(f"  using existing namespace {self.namespace} (not created by sagaz-lakehouse: never deleted)")
        self._validate(members, undo_namespace=created_namespace)
        actions = self._apply_all(members)
        pruned = self._prune(members)
        result = {"target": "kubernetes", "namespace": self.namespace, "context": cluster.where.context,
                  "applyset": self.applyset.id, "dry_run": False, "objects": actions,
                  "pruned": [describe(o) for o in pruned]}
        counts = {a: sum(1 for o in actions if o["action"] == a) for a in ("created", "configured", "unchanged")}
        self.log(f"applied: {counts['created']} created, {counts['configured']} configured, "
                 f"{counts['unchanged']} unchanged, {len(pruned)} pruned")
        if wait:
            self.wait(members, timeout)
            self.log("every rollout and Job is done")
        return result

    def _refuse_foreign(self, objects: list[Obj]) -> None:
        foreign = []
        for obj in objects:
            live = self._live(obj)
            if live is not None and not self.applyset.owned(live):
                foreign.append(describe(obj))
        if foreign:
            raise UsageError(f"{len(foreign)} object(s) already exist and were not created by this stack "
                             f"(no label {self.applyset.selector}): {', '.join(foreign)}",
                             "delete or rename them, or use another namespace (--namespace) or project name; "
                             "nothing was applied")

    def _dry_run_up(self, namespace_obj: Obj, members: list[Obj], live_namespace: Obj | None) -> dict[str, Any]:
        cluster = self.cluster()
        cluster.apply(namespace_obj, dry_run=True)
        if live_namespace is None:
            # Namespaced objects cannot be dry-run in a namespace that does not exist yet.
            self.log(f"dry run: would create Namespace {self.namespace} and {len(members)} objects in it "
                     "(server-side validation of those needs the namespace; `diff` after it exists)")
            actions = [{"object": describe(o), "action": "would create"} for o in [namespace_obj, *members]]
        else:
            actions = []
            for obj in members:
                live = self._live(obj)
                after = cluster.apply(obj, dry_run=True, force=self.force_conflicts)
                action = "would create" if live is None else (
                    "unchanged" if comparable(live) == comparable(after) else "would configure")
                actions.append({"object": describe(obj), "action": action})
            stale = self._stale(members)
            actions += [{"object": describe(o), "action": "would prune"} for o in stale]
        for item in actions:
            if item["action"] != "unchanged":
                self.log(f"  {item['action']}: {item['object']}")
        self.log("dry run: nothing was changed")
        return {"target": "kubernetes", "namespace": self.namespace, "context": cluster.where.context,
                "applyset": self.applyset.id, "dry_run": True, "objects": actions}

    def _validate(self, members: list[Obj], *, undo_namespace: bool) -> None:
        """Server-side dry run of every object, so a rejected one stops us before the first real change."""
        try:
            for obj in members:
                self._apply_one(obj, dry_run=True)
        except LakehouseError:
            if undo_namespace:
                self.cluster().delete({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}})
            raise

    def _apply_all(self, members: list[Obj]) -> list[dict[str, str]]:
        cluster = self.cluster()
        live_parent = cluster.get("v1", "ConfigMap", self.applyset.parent_name, self.namespace)
        kinds = {group_kind(o) for o in members}
        # Record every kind the set may now contain before pruning, so an interrupted run still prunes them later.
        cluster.apply(self.applyset.parent(kinds | ApplySet.recorded_kinds(live_parent)), force=True)
        actions = []
        for obj in members:
            before = self._live(obj)
            after = self._apply_one(obj)
            action = "created" if before is None else (
                "unchanged" if before["metadata"].get("resourceVersion") == after["metadata"].get("resourceVersion")
                else "configured")
            if action != "unchanged":
                self.log(f"  {action} {describe(obj)}")
            actions.append({"object": describe(obj), "action": action})
        return actions

    def _apply_one(self, obj: Obj, *, dry_run: bool = False) -> Obj:
        # Jobs carry a digest of their (immutable) pod template in their name: a changed task is a new object.
        return self.cluster().apply(obj, dry_run=dry_run, force=self.force_conflicts)

    def _stale(self, members: list[Obj]) -> list[Obj]:
        live = self.owned_objects(RENDERED_KINDS | {group_kind(o) for o in members})
        return [o for o in prunable(live, members, self.applyset) if o["kind"] != "Namespace"]

    def _prune(self, members: list[Obj]) -> list[Obj]:
        cluster = self.cluster()
        stale = self._stale(members)
        for obj in in_delete_order(stale):
            cluster.delete(obj)
            self.log(f"  pruned {describe(obj)} (no longer rendered)")
        cluster.apply(self.applyset.parent({group_kind(o) for o in members}), force=True)
        return stale

    # ------------------------------------------------------------------------------------------ wait

    def wait(self, objects: list[Obj], timeout: int) -> None:
        """Until every StatefulSet and Deployment is rolled out and every Job complete; explain a timeout."""
        workloads = [o for o in objects if o["kind"] in WORKLOAD_KINDS]
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        last_line, last_time, last_crash_check = "", 0.0, time.monotonic()
        self.log(f"waiting up to {timeout}s for {len(workloads)} workloads to become ready")
        while True:
            states = {describe(o): (self._live(o), o) for o in workloads}
            pending = {}
            for name, (live, _) in states.items():
                state = readiness(live) if live is not None else Readiness(False, "missing")
                if state.failed:
                    raise self._rollout_error(f"{name} {state.summary}", [live] if live else [])
                if not state.ready:
                    pending[name] = state
            if not pending:
                self.log(f"all {len(workloads)} workloads ready after {time.monotonic() - started:.0f}s")
                return
            line = ", ".join(f"{_short(n)} {st.summary}" for n, st in pending.items())
            now = time.monotonic()
            if now - last_crash_check >= CRASH_CHECK_SECONDS:
                last_crash_check = now
                self._fail_on_crash_loop(states, pending)
            if line != last_line or now - last_time >= PROGRESS_EVERY:
                self.log(f"  [{now - started:4.0f}s] waiting: {line}")
                last_line, last_time = line, now
            if now >= deadline:
                blocked = [obj for n in pending if (obj := states[n][0]) is not None]
                raise self._rollout_error(f"timed out after {timeout}s waiting for {line}", blocked)
            time.sleep(POLL_SECONDS)

    def _fail_on_crash_loop(self, states: dict[str, tuple[Obj | None, Obj]], pending: dict[str, Readiness]) -> None:
        """A blocked workload whose container keeps crashing although every component it depends on is ready will
        not get better by waiting: stop with its diagnosis (the crashed container's last log lines)."""
        ready_components = {(live["metadata"].get("labels") or {}).get("app.kubernetes.io/component")
                            for live, _ in states.values() if live is not None and readiness(live).ready}
        for name in pending:
            live = states[name][0]
            if live is None:
                continue
            component = (live["metadata"].get("labels") or {}).get("app.kubernetes.io/component", "")
            try:
                needs = [dep for dep, _ in self.stack.get(component).depends_on]
            except KeyError:
                needs = []
            if any(dep not in ready_components for dep in needs):
                continue  # e.g. a Fluss server restarting until ZooKeeper answers: expected, keep waiting
            loops = crash_loops(pods_of(self.cluster(), live))
            if loops:
                raise self._rollout_error(f"{_short(name)} is crash-looping ({'; '.join(loops)})"
                                          + (f" although {', '.join(needs)} {'is' if len(needs) == 1 else 'are'} "
                                             "ready" if needs else ""), [live])

    def _rollout_error(self, what: str, workloads: list[Obj]) -> LakehouseError:
        lines = [what]
        for workload in workloads:
            lines.append(f"{describe(workload)}: {readiness(workload).summary}")
            lines += diagnose(self.cluster(), workload)
        return LakehouseError("\n".join(self._redact(line) for line in lines),
                              "see `sagaz-lakehouse status` and `sagaz-lakehouse logs <component>`; "
                              "on a slow first pull raise --timeout")

    # ------------------------------------------------------------------------------------------ diff

    def diff(self) -> list[dict[str, str]]:
        """What `up` would change: server-side dry run against the live objects, as unified diffs."""
        import yaml

        cluster = self.cluster()
        objects = self.desired(make=False)
        namespace_live = cluster.get("v1", "Namespace", self.namespace)
        changes = []
        for obj in objects:
            live = self._live(obj)
            if live is None:
                after = obj if namespace_live is None else cluster.apply(obj, dry_run=True, force=self.force_conflicts)
                changes.append({"object": describe(obj), "action": "create",
                                "diff": _unified("", yaml.safe_dump(comparable(after), sort_keys=True), obj)})
                continue
            if obj["kind"] == "Namespace" and not self.applyset.owned(live):
                continue  # used as it is, never applied
            after = cluster.apply(obj, dry_run=True, force=self.force_conflicts)
            old, new = (yaml.safe_dump(comparable(o), sort_keys=True) for o in (live, after))
            if old != new:
                changes.append({"object": describe(obj), "action": "configure", "diff": _unified(old, new, obj)})
        if namespace_live is not None:
            for obj in self._stale(objects[1:]):
                old = yaml.safe_dump(comparable(obj), sort_keys=True)
                changes.append({"object": describe(obj), "action": "prune", "diff": _unified(old, "", obj)})
        return changes

    # ------------------------------------------------------------------------------------------ down

    def down(self, *, purge: bool) -> None:
        cluster = self.cluster()
        live_parent = cluster.get("v1", "ConfigMap", self.applyset.parent_name, self.namespace)
        kinds = RENDERED_KINDS | ApplySet.recorded_kinds(live_parent)
        owned = [o for o in self.owned_objects(kinds) if o["kind"] != "Namespace"]
        claims = self._claims() if purge else []
        namespace = cluster.get("v1", "Namespace", self.namespace)
        ours = namespace is not None and self.applyset.owned(namespace)
        doomed = in_delete_order(owned) + claims + ([live_parent] if live_parent else [])
        if not doomed and not (purge and ours):
            self.log(f"nothing of stack {self.settings.project} found in namespace {self.namespace} "
                     f"({cluster.where})")
            return
        self.log(f"deleting {len(doomed)} objects of stack {self.settings.project} in namespace {self.namespace}"
                 + ("" if purge else "; PersistentVolumeClaims kept (--purge deletes them)"))
        workloads = [o for o in doomed if o["kind"] in WORKLOAD_KINDS]
        for wave in self._stop_waves(workloads):
            self._delete(wave)
            self._wait_gone(wave, DELETE_TIMEOUT)
        self._delete([o for o in doomed if o["kind"] not in WORKLOAD_KINDS])
        if purge and ours and namespace is not None:
            cluster.delete(namespace)
            self.log(f"  deleted Namespace {self.namespace} (created by sagaz-lakehouse)")
            doomed.append(namespace)
        elif purge and namespace is not None:
            self.log(f"  kept Namespace {self.namespace}: sagaz-lakehouse did not create it")
        self._wait_gone(doomed, DELETE_TIMEOUT)
        self.log("down: done" + ("" if purge else "; `up` reuses the kept volumes"))

    def _stop_waves(self, workloads: list[Obj]) -> list[list[Obj]]:
        """The workloads in the stack model's stop order, dependants first. Stopped all at once, ZooKeeper could go
        before the Fluss servers closed their sessions: their registrations would outlive them by the session
        timeout, and the next `up` would find members that are not running. Workloads of components the settings
        no longer name go first."""
        rank = {name: i + 1 for i, wave in enumerate(self.stack.stop_waves()) for name in wave}
        waves: dict[int, list[Obj]] = {}
        for obj in workloads:
            component = (obj["metadata"].get("labels") or {}).get("app.kubernetes.io/component", "")
            waves.setdefault(rank.get(component, 0), []).append(obj)
        return [waves[level] for level in sorted(waves)]

    def _delete(self, objects: list[Obj]) -> None:
        for obj in objects:
            # A workload goes with its pods (Foreground): it stays until they are gone, so waiting for it ends when
            # its pods no longer run; in the background the garbage collector deletes them some time after `down`.
            propagation = "Foreground" if obj["kind"] in WORKLOAD_KINDS else "Background"
            if self.cluster().delete(obj, propagation=propagation):
                self.log(f"  deleted {describe(obj)}")

    def _claims(self) -> list[Obj]:
        """The claims our StatefulSets created (their volumeClaimTemplates copy the pod selector labels)."""
        stateful = [c.name for c in self.stack.components if c.stateful]
        selector = f"app.kubernetes.io/instance={self.settings.project}"
        claims = self.cluster().list("v1", "PersistentVolumeClaim", self.namespace, selector)
        return [c for c in claims
                if (c["metadata"].get("labels") or {}).get("app.kubernetes.io/component") in stateful]

    def _wait_gone(self, objects: list[Obj], timeout: int) -> None:
        deadline = time.monotonic() + timeout
        remaining = list(objects)
        while remaining:
            remaining = [o for o in remaining if self._live(o) is not None]
            if not remaining:
                return
            if time.monotonic() >= deadline:
                raise LakehouseError(f"still deleting after {timeout}s: {', '.join(map(describe, remaining))}",
                                     "a finalizer may be stuck; inspect the objects' metadata.finalizers")
            time.sleep(POLL_SECONDS)

    # ------------------------------------------------------------------------------------------ status, logs

    def status(self) -> list[dict[str, Any]]:
        self.cluster()  # connection problems first, before any row
        rows = []
        for component in self.stack.components:
            workloads = self._workloads_of(component.name)
            if not workloads:
                detail = f"not found in namespace {self.namespace}"
                if component.one_shot:
                    detail += (f" (a finished Job is deleted {layout.JOB_TTL_SECONDS // 3600} h after it completes; "
                               "`up` runs it again)")
                rows.append({"component": component.name, "state": "absent",
                             "endpoint": self.endpoint(component), "detail": detail})
                continue
            # The newest Job of a task (`kubectl apply` leaves superseded ones until their TTL).
            workload = max(workloads, key=lambda w: str(w["metadata"].get("creationTimestamp") or ""))
            state = readiness(workload)
            rows.append({"component": component.name, "state": _state_word(component, state),
                         "endpoint": self.endpoint(component),
                         "detail": f"{workload['kind']} {workload['metadata']['name']} {state.summary}"
                         if component.one_shot else f"{workload['kind']} {state.summary}"})
        return rows

    def logs(self, component: str, lines: int) -> str:
        """A component (every pod of it) or one instance: StatefulSet pods carry the instance names."""
        owner = self.stack.named(component)[0][0]
        pods = self._pods_named(component, owner)
        if not pods:
            raise StackNotReachable(component, f"namespace {self.namespace}", "no pods")
        core = self.cluster().core()
        out = []
        for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
            name = pod["metadata"]["name"]
            text: str = self.cluster().call("read log of", f"pod {name}", functools.partial(
                core.read_namespaced_pod_log, name, self.namespace, container=owner.name, tail_lines=lines,
                _request_timeout=30))
            out.append(f"==> pod {name} <==\n{text.rstrip()}" if len(pods) > 1 else text.rstrip())
        return self._redact("\n".join(out))

    # ------------------------------------------------------------------------------------------ clients

    @contextlib.contextmanager
    def client_endpoints(self) -> Iterator[addresses.Endpoints]:
        """Port-forwards through the API server to exactly the addresses the Fluss CLIENT listeners advertise."""
        from sagaz_lakehouse.targets.kubernetes.portforward import PortForwards, pod_opener

        cluster = self.cluster()
        if not self._workloads_of(s.COORDINATOR):
            raise StackNotReachable(s.COORDINATOR, f"namespace {self.namespace} ({cluster.where})", "not deployed")
        credentials = self.credentials()
        endpoints = security.with_fluss_login(addresses.endpoints(self.settings, View.EXTERNAL), self.settings,
                                              credentials)
        if security.trino_auth_on(self.settings):
            endpoints = security.with_trino_login(endpoints, self.settings, credentials, str(self.served_ca()))
        with PortForwards(self.forwards(), pod_opener(cluster.streaming_core(), self.namespace)) as forwards:
            self._forwards = forwards
            try:
                yield security.with_catalog_login(endpoints, self.settings, self.base_dir)
            finally:
                self._forwards = None

    def connection_problems(self) -> list[str]:
        """Why port-forwarded connections failed so far in the running client_endpoints block (oldest first)."""
        return list(self._forwards.errors) if self._forwards is not None else []

    def forwards(self) -> list[Any]:
        """One forward per instance the host reaches (the model's host entries; ZooKeeper too: doctor checks every
        component from the host). An instance whose address its server advertises (a Fluss server) is reached at
        its own pod; any other at a ready pod of its component."""
        from sagaz_lakehouse.targets.kubernetes.portforward import Forward

        result = []
        for entry in self.stack.host_entries():
            if entry.port.advertised:
                pod = layout.pod_name(entry.component, entry.instance)
                result.append(Forward(pod, entry.number, entry.port.container, functools.partial(str, pod)))
            else:
                name = entry.component.name
                result.append(Forward(name, entry.number, entry.port.container,
                                      functools.partial(self.ready_pod, name)))
        return result

    def ready_pod(self, component: str) -> str:
        for pod in sorted(self._pods(component), key=lambda p: p["metadata"]["name"]):
            if _ready(pod):
                return str(pod["metadata"]["name"])
        raise StackNotReachable(component, f"namespace {self.namespace}", "no ready pod")

    def _pods(self, component: str) -> list[Obj]:
        return self.cluster().list("v1", "Pod", self.namespace, f"app.kubernetes.io/instance={self.settings.project},"
                                   f"app.kubernetes.io/component={component}")

    def _pods_named(self, name: str, owner: s.Component) -> list[Obj]:
        """The pods of ``owner``, or only the one ``name`` names when it is an instance (StatefulSet pods carry the
        instance names)."""
        pods = self._pods(owner.name)
        return pods if name == owner.name else [p for p in pods if p["metadata"]["name"] == name]

    # ------------------------------------------------------------------------------------------ restart

    def restart(self, component: str, timeout: int = RESTART_TIMEOUT_S) -> None:
        """Delete the component's pods (or the one an instance name names); their controller creates new ones. Back
        once as many pods as before are Ready, each a new one."""
        owner = self.stack.restartable(component)[0][0]
        old = self._pods_named(component, owner)
        if not old:
            raise StackNotReachable(component, f"namespace {self.namespace}", "no pods")
        self.log(f"restarting {owner.name}: deleting {', '.join(p['metadata']['name'] for p in old)}")
        for pod in old:
            self.cluster().delete(pod)
        gone = {p["metadata"]["uid"] for p in old}
        deadline = time.monotonic() + timeout
        while True:
            fresh = [p for p in self._pods_named(component, owner) if p["metadata"]["uid"] not in gone and _ready(p)]
            if len(fresh) >= len(old):
                self.log(f"{owner.name}: {len(fresh)} new pod(s) ready")
                return
            if time.monotonic() >= deadline:
                raise LakehouseError(f"{owner.name}: {len(fresh)} of {len(old)} new pod(s) ready {timeout}s after "
                                     "their predecessors were deleted",
                                     f"see `sagaz-lakehouse status` and `sagaz-lakehouse logs {owner.name}`")
            time.sleep(POLL_SECONDS)

    # ------------------------------------------------------------------------------------------ helpers

    def _live(self, obj: Obj) -> Obj | None:
        meta = obj["metadata"]
        return self.cluster().get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))

    def owned_objects(self, group_kinds: set[str]) -> list[Obj]:
        """Every live object of these kinds (``Kind.group``) that carries this stack's ApplySet label."""
        found = []
        for item in sorted(group_kinds):
            group, kind = split_group_kind(item)
            api_version = VERSION_OF_GROUP.get(group) or self._preferred_version(group, kind)
            namespace = None if kind in CLUSTER_KINDS else self.namespace
            found += self.cluster().list(api_version, kind, namespace, self.applyset.selector)
        return found

    def _preferred_version(self, group: str, kind: str) -> str:
        cluster = self.cluster()
        resource = cluster.call("discover", f"{kind}.{group}",
                                lambda: cluster.dynamic.resources.get(group=group, kind=kind))
        return resource.group_version

    def _workloads_of(self, component: str) -> list[Obj]:
        selector = f"app.kubernetes.io/instance={self.settings.project},app.kubernetes.io/component={component}"
        found = []
        for api_version, kind in (("apps/v1", "StatefulSet"), ("apps/v1", "Deployment"), ("batch/v1", "Job")):
            found += self.cluster().list(api_version, kind, self.namespace, selector)
        return found

    def endpoint(self, component: s.Component) -> str:
        """The in-cluster address (Service DNS name) of a component's first published port: its own Service, or
        the headless one for components addressed instance by instance (no Service carries their bare name)."""
        published = [port for port in component.ports if port.published]
        if not published:
            return ""
        return f"{layout.service_name(component)}.{self.namespace}.svc:{published[0].container}"

    def _redact(self, text: str) -> str:
        with contextlib.suppress(LakehouseError):
            return self.credentials().redact(text)
        return text


# ---------------------------------------------------------------------------------------------- pure helpers


def _ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def in_delete_order(objects: list[Obj]) -> list[Obj]:
    """Consumers before what they consume (DELETE_ORDER); kinds it does not name first."""
    rank = {kind: i for i, kind in enumerate(DELETE_ORDER)}
    return sorted(objects, key=lambda o: rank.get(o["kind"], -1))


def comparable(obj: Obj) -> Obj:
    """An object without the fields the server changes on every write (for diffs and change detection).

    Secret values are replaced by a short digest: a diff shows that a credential changed, never what it is."""
    meta = {k: v for k, v in obj.get("metadata", {}).items()
            if k not in ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp")}
    result = {**{k: v for k, v in obj.items() if k not in ("status", "metadata")}, "metadata": meta}
    if obj.get("kind") == "Secret":
        for field in ("data", "stringData"):
            if result.get(field):
                result[field] = {k: _digest(v) for k, v in result[field].items()}
    return result


def _digest(value: str) -> str:
    import hashlib

    return "(hidden, sha256 " + hashlib.sha256(str(value).encode()).hexdigest()[:12] + ")"


def _unified(old: str, new: str, obj: Obj) -> str:
    name = describe(obj)
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=f"live/{name}", tofile=f"rendered/{name}")
    return "".join(lines)


def _short(name: str) -> str:
    return name.split(" in namespace")[0]


def _state_word(component: s.Component, state: Readiness) -> str:
    if state.failed:
        return "failed"
    if component.one_shot:
        return "completed" if state.ready else "running"
    return "healthy" if state.ready else "starting"

