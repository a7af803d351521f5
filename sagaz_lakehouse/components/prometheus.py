"""Prometheus: scrapes every component that has a metrics endpoint and evaluates the alert rules.

Its scrape configuration is generated from the stack model: one job per component with :attr:`Component.metrics`,
one target per instance, addressed as a process in the component's ``view`` reaches it (loopback and each instance's
own host port on the user's host; inside a container network or cluster, the address ``instance_address`` gives,
at the container port). The alert rules (``templates/prometheus/alerts.yml``) are the same file on every target,
with the tiering-lag threshold filled in from the lake freshness (3x ``table.datalake.freshness``).

The local target runs ``cmd/prometheus`` built from the Go module proxy (``versions.PROMETHEUS``); containers run
the official image of the same release, which reads ``/etc/prometheus/prometheus.yml`` and keeps its TSDB in
``/prometheus`` (prometheus/prometheus ``Dockerfile``), as user ``nobody``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sagaz_lakehouse import addresses, profiles, versions
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components import maintenance
from sagaz_lakehouse.config import DURATION, Settings, duration_seconds
from sagaz_lakehouse.render import templates_dir, to_yaml

CONF_DIR = "/etc/prometheus"
DATA_DIR = "/prometheus"
CONFIG_FILE = "prometheus.yml"
RULES_FILE = "rules/sagaz-lakehouse.yml"  # relative to the config file, as rule_files are
RULES_TEMPLATE = "prometheus/alerts.yml"
LAG_THRESHOLD_TOKEN = "__TIERING_LAG_THRESHOLD_MS__"  # noqa: S105 - a placeholder
FRESHNESS_FACTOR = 3  # the lake copy may fall this many freshness intervals behind before the alert fires
NOBODY = 65534  # the image's USER

# How an instance is reached from inside the stack: ``address(component, instance name)``.
Addressing = Callable[[s.Component, str], str]


def compose_address(component: s.Component, name: str) -> str:
    """Inside a compose network every instance is a service of that name."""
    return name


def scrape_interval(settings: Settings) -> str:
    return "5s" if profiles.profile(settings.profile).dev_credentials else "15s"


def target(component: s.Component, name: str, view: s.View, address: Addressing) -> str | None:
    """host:port where Prometheus (a process in ``view``) scrapes one instance; None when it has no such port."""
    assert component.metrics is not None
    port = component.port(component.metrics.port)
    if view is s.View.EXTERNAL:
        if not port.host:
            return None
        return f"{addresses.LOOPBACK}:{port.host_port(s.instance_index(name))}"
    return f"{address(component, name)}:{port.container}"


def ca_file_name(component: s.Component) -> str:
    """The file in Prometheus's folder holding the certificate a component's metrics endpoint is verified with."""
    return f"{component.name}-ca.pem"


def token_file_name(component: s.Component) -> str:
    """The secret file holding the bearer token Prometheus sends to a component's metrics endpoint."""
    return f"{component.name}-token"


def password_file_name(component: s.Component) -> str:
    """The secret file holding the password Prometheus logs in to a component's metrics endpoint with."""
    return f"{component.name}-password"


def scrape_configs(components: Sequence[s.Component], view: s.View, address: Addressing,
                   conf_dir: str = CONF_DIR, secrets: str = "") -> list[dict[str, Any]]:
    jobs = []
    for component in components:
        if component.metrics is None:
            continue
        targets = [{"targets": [t], "labels": {"instance": name, "component": component.name}}
                   for name in component.instance_names()
                   if (t := target(component, name, view, address)) is not None]
        if not targets:
            continue
        job: dict[str, Any] = {"job_name": component.name, "metrics_path": component.metrics.path,
                               "static_configs": targets}
        if component.metrics.headers:
            job["http_headers"] = {k: {"values": [v]} for k, v in component.metrics.headers.items()}
        if component.metrics.bearer:  # the token in a secret file of its own, never in this one
            job["authorization"] = {"type": "Bearer",
                                    "credentials_file": f"{secrets or conf_dir}/{token_file_name(component)}"}
        if component.metrics.login:  # the password in a secret file of its own (password_file), never in this one
            user, _ = component.metrics.login
            tls: dict[str, Any] = {"ca_file": f"{conf_dir}/{ca_file_name(component)}"}
            if component.metrics.tls_name:
                tls["server_name"] = component.metrics.tls_name
            job |= {"scheme": "https",
                    "basic_auth": {"username": user,
                                   "password_file": f"{secrets or conf_dir}/{password_file_name(component)}"},
                    "tls_config": tls}
        jobs.append(job)
    return jobs


APPS_JOB = "sagaz-apps"


def app_scrape_configs(settings: Settings) -> list[dict[str, Any]]:
    """Applications running Sagaz with the listener (``monitoring.app_targets``), where the saga metrics live."""
    targets = [t.strip() for t in settings.monitoring.app_targets.split(",") if t.strip()]
    return [{"job_name": APPS_JOB, "static_configs": [{"targets": targets}]}] if targets else []


def config(settings: Settings, components: Sequence[s.Component], view: s.View, address: Addressing,
           self_address: str, conf_dir: str = CONF_DIR, secrets: str = "") -> str:
    interval = scrape_interval(settings)
    document = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "external_labels": {"project": settings.project}},
        "rule_files": [RULES_FILE],
        "scrape_configs": [
            {"job_name": s.PROMETHEUS, "static_configs": [{"targets": [self_address],
                                                            "labels": {"instance": s.PROMETHEUS,
                                                                       "component": s.PROMETHEUS}}]},
            *scrape_configs(components, view, address, conf_dir, secrets), *app_scrape_configs(settings)],
    }
    return "# Prometheus, rendered by sagaz-lakehouse from the stack model.\n" + to_yaml(document)


def duration_ms(text: str) -> int:
    match = DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    unit = match.group(1)
    return int(text[: -len(unit)].strip()) * {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}[unit]


def tiering_lag_threshold_ms(settings: Settings) -> int:
    return FRESHNESS_FACTOR * duration_ms(settings.freshness)


def maintenance_overdue_seconds(settings: Settings) -> int:
    """When a missed lake maintenance run alerts: twice the schedule plus the grace status and doctor allow."""
    schedule = settings.maintenance_schedule
    return int(2 * duration_seconds(schedule)) + maintenance.OVERDUE_GRACE if schedule != "off" else 0


def prometheus_duration(setting: str) -> str:
    """A duration setting (5min, 90s, 6h) as a Prometheus duration (whole seconds)."""
    return f"{max(1, round(duration_seconds(setting)))}s"


def anomaly_values(settings: Settings) -> dict[str, str]:
    """The anomaly rules' parameters from the anomaly.* settings (the baseline ends window + sustained ago)."""
    anomaly = settings.anomaly
    offset = duration_seconds(anomaly.window) + duration_seconds(anomaly.sustained)
    return {"__ANOMALY_WINDOW__": prometheus_duration(anomaly.window),
            "__ANOMALY_BASELINE__": prometheus_duration(anomaly.baseline),
            "__ANOMALY_OFFSET__": f"{max(1, round(offset))}s",
            "__ANOMALY_FOR__": prometheus_duration(anomaly.sustained),
            "__ANOMALY_THRESHOLD__": anomaly.threshold}


def alert_rules(settings: Settings) -> str:
    text = (templates_dir() / RULES_TEMPLATE).read_text()
    values: dict[str, object] = {
        LAG_THRESHOLD_TOKEN: tiering_lag_threshold_ms(settings),
        "__MAINTENANCE_OVERDUE_S__": maintenance_overdue_seconds(settings),
        "__MAX_DATA_FILES__": settings.maintenance.max_files_per_bucket * settings.lake.buckets,
        **anomaly_values(settings)}
    for token, value in values.items():
        text = text.replace(token, str(value))
    return text


def prometheus(settings: Settings, view: s.View, components: Sequence[s.Component],
               address: Addressing = compose_address) -> s.Component:
    port = settings.ports.prometheus
    rules = alert_rules(settings)

    def setup(at: s.Instance) -> s.Setup:
        listen = f"{addresses.LOOPBACK}:{port}" if view is s.View.EXTERNAL else f":{port}"
        self_address = f"{addresses.LOOPBACK}:{port}"
        prom_yml = config(settings, components, view, address, self_address, at.conf, at.secrets)
        arguments = (f"--config.file={at.conf}/{CONFIG_FILE}", f"--storage.tsdb.path={at.data}",
                     f"--web.listen-address={listen}", "--storage.tsdb.retention.time=15d",
                     "--web.enable-lifecycle")

        def command(ctx: s.NativeContext) -> s.Process:
            return s.Process([str(ctx.home), *arguments])

        return s.Setup(
            container=s.Container(args=arguments, user=NOBODY, probe_tool="wget"),
            native=s.Native("prometheus", command),
            files=(s.ConfigFile(CONFIG_FILE, prom_yml, mount=f"{CONF_DIR}/{CONFIG_FILE}"),
                   s.ConfigFile(RULES_FILE, rules, mount=f"{CONF_DIR}/{RULES_FILE}"),
                   *(s.ConfigFile(ca_file_name(c), c.metrics.ca_pem, mount=f"{CONF_DIR}/{ca_file_name(c)}")
                     for c in components if c.metrics is not None and c.metrics.ca_pem),
                   *(s.ConfigFile(password_file_name(c), c.metrics.login[1], mount=at.secret(password_file_name(c)),
                                  secret=True)
                     for c in components if c.metrics is not None and c.metrics.login),
                   *(s.ConfigFile(token_file_name(c), c.metrics.bearer, mount=at.secret(token_file_name(c)),
                                  secret=True)
                     for c in components if c.metrics is not None and c.metrics.bearer)),
        )

    return s.Component(
        s.PROMETHEUS, "prometheus", settings.images.prometheus, versions.PROMETHEUS.image.rsplit(":", 1)[1],
        "Prometheus (metrics of every component, alert rules)", setup,
        ports=(s.Port("http", port, port, setting="prometheus"),), health=s.Health("http", "http", "/-/ready"),
        data_dir=DATA_DIR, volume_size=settings.volumes.prometheus, memory=settings.memory.prometheus,
        conf_dir=CONF_DIR, start_seconds=60,
        reaches=tuple((c.name, c.metrics.port) for c in components if c.metrics is not None))
