"""Is a workload rolled out, and if not, why not.

``readiness`` reads only an object's spec and status (no API calls), so it is the same logic for waiting, for
``status`` and for tests. ``diagnose`` asks the API server for the pods behind a workload, their conditions,
container states, recent Warning events and, for crashing containers, their last log lines.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

WORKLOAD_KINDS = ("StatefulSet", "Deployment", "Job")
LOG_LINES = 10
EVENTS_PER_OBJECT = 5
CRASHING = ("CrashLoopBackOff", "Error", "OOMKilled", "RunContainerError", "CreateContainerError")
# A container in CrashLoopBackOff after this many restarts, while everything its component depends on is ready, is
# broken: waiting longer only lengthens the back-off (10 s, 20 s, 40 s: the third restart comes after about 70 s).
CRASH_LOOP_RESTARTS = 3


@dataclass(frozen=True)
class Readiness:
    ready: bool
    summary: str  # "2/3 ready", "complete", "failed: BackoffLimitExceeded"
    failed: bool = False  # will not get better by waiting (a failed Job)


def readiness(obj: Obj) -> Readiness:
    kind = obj["kind"]
    if kind == "Job":
        return _job_readiness(obj)
    if kind not in ("StatefulSet", "Deployment"):
        return Readiness(True, "present")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    want = spec.get("replicas", 1)
    ready = status.get("readyReplicas") or 0
    updated = status.get("updatedReplicas") or 0
    observed = status.get("observedGeneration") or 0
    generation = obj.get("metadata", {}).get("generation") or 0
    if observed < generation:
        return Readiness(False, f"{ready}/{want} ready, controller has not seen the latest change")
    if kind == "Deployment":
        available = status.get("availableReplicas") or 0
        total = status.get("replicas") or 0  # old pods count until they are gone (as `kubectl rollout status`)
        done = updated >= want and available >= want and ready >= want and total <= updated
        if not done and updated >= want and total > updated:
            return Readiness(False, f"{ready}/{want} ready, {total - updated} old pod(s) still running")
    else:
        current = status.get("currentRevision")
        target = status.get("updateRevision")
        done = ready >= want and updated >= want and (current == target or not target)
    summary = f"{ready}/{want} ready" + ("" if done or updated >= want else f", {updated}/{want} updated")
    return Readiness(done, summary)


def _job_readiness(obj: Obj) -> Readiness:
    status = obj.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return Readiness(True, "complete")
        if condition.get("type") == "Failed":
            why = condition.get("reason") or "Failed"
            detail = condition.get("message") or ""
            return Readiness(False, f"failed: {why}" + (f" ({detail})" if detail else ""), failed=True)
    active, failures = status.get("active") or 0, status.get("failed") or 0
    return Readiness(False, f"running ({active} active, {failures} failed attempts)" if active or failures
                     else "waiting to start")


# ---------------------------------------------------------------------------------------------- diagnosis


def diagnose(cluster: Any, workload: Obj) -> list[str]:
    """Lines explaining why ``workload`` is not ready: per pod, what blocks it; then the workload's events."""
    namespace = workload["metadata"]["namespace"]
    selector = _selector(workload)
    pods = cluster.list("v1", "Pod", namespace, selector) if selector else []
    lines: list[str] = []
    if not pods:
        lines.append("no pods yet")
    for pod in pods[:5]:
        lines += pod_problems(pod)
        lines += _log_tail(cluster, pod)
        lines += [f"    event: {e}" for e in warning_events(cluster, namespace, "Pod", pod["metadata"]["name"])]
    lines += [f"  event: {e}" for e in warning_events(cluster, namespace, workload["kind"],
                                                       workload["metadata"]["name"])]
    return lines


def pod_problems(pod: Obj) -> list[str]:
    """'pod x: Pending; PodScheduled=False Unschedulable: 0/1 nodes are available ...; container y waiting ...'."""
    meta, status = pod["metadata"], pod.get("status") or {}
    parts = [status.get("phase") or "Unknown"]
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            reason = condition.get("reason") or ""
            message = condition.get("message") or ""
            parts.append(f"{condition.get('type')}=False" + (f" {reason}" if reason else "")
                         + (f": {message}" if message else ""))
    for container in _container_statuses(status):
        state = container.get("state") or {}
        name = container.get("name")
        if state.get("waiting"):
            waiting = state["waiting"]
            parts.append(f"container {name} waiting: {waiting.get('reason', '')} {waiting.get('message') or ''}"
                         .rstrip())
        elif state.get("terminated") and (state["terminated"].get("exitCode") or 0) != 0:
            term = state["terminated"]
            parts.append(f"container {name} exited {term.get('exitCode')} ({term.get('reason', '')})")
        restarts = container.get("restartCount") or 0
        if restarts:
            parts.append(f"container {name} restarted {restarts}x")
    return [f"  pod {meta['name']}: " + "; ".join(parts)]


def crashing_containers(pod: Obj) -> list[str]:
    names = []
    for container in _container_statuses(pod.get("status") or {}):
        state = container.get("state") or {}
        reason = (state.get("waiting") or state.get("terminated") or {}).get("reason", "")
        if reason in CRASHING or (container.get("restartCount") or 0) > 0:
            names.append(container["name"])
    return names


def crash_loops(pods: list[Obj]) -> list[str]:
    """'pod x: container y in CrashLoopBackOff after 4 restarts' for containers past CRASH_LOOP_RESTARTS."""
    found = []
    for pod in pods:
        for container in _container_statuses(pod.get("status") or {}):
            waiting = (container.get("state") or {}).get("waiting") or {}
            restarts = container.get("restartCount") or 0
            if waiting.get("reason") == "CrashLoopBackOff" and restarts >= CRASH_LOOP_RESTARTS:
                found.append(f"pod {pod['metadata']['name']}: container {container.get('name')} in CrashLoopBackOff "
                             f"after {restarts} restarts")
    return found


def pods_of(cluster: Any, workload: Obj) -> list[Obj]:
    selector = _selector(workload)
    return cluster.list("v1", "Pod", workload["metadata"]["namespace"], selector) if selector else []


def warning_events(cluster: Any, namespace: str, kind: str, name: str) -> list[str]:
    """The newest Warning events about one object, 'Reason: message' (deduplicated, newest last)."""
    with contextlib.suppress(Exception):  # events are a courtesy: never hide the real problem behind them
        events = cluster.core().list_namespaced_event(
            namespace, field_selector=f"involvedObject.kind={kind},involvedObject.name={name},type=Warning",
            _request_timeout=10).items
        events.sort(key=lambda e: str(e.last_timestamp or e.event_time or e.metadata.creation_timestamp or ""))
        seen: dict[str, None] = {}
        for event in events:
            seen[f"{event.reason}: {(event.message or '').strip()}"] = None
        return list(seen)[-EVENTS_PER_OBJECT:]
    return []


def _log_tail(cluster: Any, pod: Obj) -> list[str]:
    lines = []
    for container in crashing_containers(pod):
        text = ""
        for previous in (True, False):  # the crashed run first; the current one if there was none
            with contextlib.suppress(Exception):
                text = cluster.core().read_namespaced_pod_log(
                    pod["metadata"]["name"], pod["metadata"]["namespace"], container=container,
                    previous=previous, tail_lines=LOG_LINES, _request_timeout=10)
            if text:
                break
        if text:
            lines.append(f"    last log lines of {container}:")
            lines += [f"      {line}" for line in text.rstrip().splitlines()]
    return lines


def _container_statuses(status: Obj) -> list[Obj]:
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def _selector(workload: Obj) -> str:
    labels = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if workload["kind"] == "Job":
        uid = workload["metadata"].get("uid")
        return f"batch.kubernetes.io/controller-uid={uid}" if uid else ""
    return ",".join(f"{k}={v}" for k, v in labels.items())
