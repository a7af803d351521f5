"""Health checks run inside a container: a component's :class:`~sagaz_lakehouse.stack.Health` as a command line,
built from what its image has (``Container.probe_tool``: curl, wget, python3, or bash for ``/dev/tcp``).

Compose runs these as healthchecks; Kubernetes runs them as exec probes where an httpGet or tcpSocket probe cannot
say the same thing (an expected answer, a four-letter word, a question to another component).
"""

from __future__ import annotations

import shlex

from sagaz_lakehouse.errors import UsageError
from sagaz_lakehouse.stack import Component, Health, Stack


def url(stack: Stack, component: Component, health: Health, host: str) -> str:
    if health.via:
        via = stack.get(health.via)
        return f"http://{via.name}:{via.port(health.port).container}{health.path}"
    return f"http://{host}:{component.port(health.port).container}{health.path}"


def command(stack: Stack, component: Component, host: str, instance: str, tool: str) -> list[str]:
    """The probe as argv. ``instance`` is the instance name as the shell sees it (a name, or ``$POD_NAME``)."""
    health = component.health
    assert health is not None
    if health.kind == "tcp":
        return ["bash", "-c", f"exec 3<>/dev/tcp/{host}/{component.port(health.port).container}"]
    if health.kind == "postgres":  # what the official image's tools answer: accepting connections
        return ["pg_isready", "-q", "-h", host, "-p", str(component.port(health.port).container)]
    if health.kind == "zookeeper":
        port = component.port(health.port).container
        return ["bash", "-c", f"exec 3<>/dev/tcp/{host}/{port} && printf srvr >&3 && grep -q Mode: <&3"]
    if health.kind != "http":
        raise UsageError(f"{component.name}: unknown health check kind '{health.kind}'",
                         "use http, tcp, zookeeper or postgres")
    target = url(stack, component, health, host)
    if tool == "python3" and not health.expect:  # the python image has neither curl nor wget
        return ["python3", "-c", f"import urllib.request; urllib.request.urlopen({target!r}, timeout=5)"]
    if tool not in ("curl", "wget"):
        raise UsageError(f"{component.name}: an http health check needs curl, wget or python3 in the image",
                         "set Container.probe_tool in its component description")
    if not health.expect:
        return ["curl", "-fsS", "-o", "/dev/null", target] if tool == "curl" else \
            ["wget", "-q", "-O", "/dev/null", target]
    fetch = f"curl -fsS {shlex.quote(target)}" if tool == "curl" else f"wget -q -O - {shlex.quote(target)}"
    # A concrete name goes in as it is; a shell variable ($POD_NAME) is spliced in double quotes.
    name = f"'\"{instance}\"'" if "$" in instance else instance
    pattern = "'" + health.expect.replace("'", "'\\''").replace("{instance}", name) + "'"
    return ["sh", "-c", f"{fetch} | grep -qF -- {pattern}"]
