"""Targets: where the stack runs. Each target is one package that lays the stack model out (``layout``), applies
it (``driver``) and holds whatever runtime it needs; none of them describes a component itself.

- ``local``: native processes on loopback under a supervisor and a watchdog, their files under a run folder
- ``compose``: one compose project (compose.yaml, mounted files, a 0600 .env) run by a container engine
- ``kubernetes``: plain manifests that ``kubectl apply -k`` accepts, applied server-side through the API server

``REGISTRY`` is the one list of targets: a name and the package whose ``TARGET`` describes it
(:class:`~sagaz_lakehouse.targets.base.Target`; ``targets.base.get_target`` looks it up). A package is imported only
when its target is asked for, so rendering one target never loads the others. This module imports nothing: the
settings schema (config) lists its names as the choices of ``target``.
"""

REGISTRY = {
    "local": "sagaz_lakehouse.targets.local",
    "compose": "sagaz_lakehouse.targets.compose",
    "kubernetes": "sagaz_lakehouse.targets.kubernetes",
}
NAMES = tuple(REGISTRY)

# How long `restart` waits for a component to be healthy again, on every target: a Fluss coordinator re-reads
# every table in ZooKeeper before it answers, and Trino loads its catalogs; both take minutes on 2 cores.
RESTART_TIMEOUT_S = 300
