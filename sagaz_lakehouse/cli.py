"""The ``sagaz-lakehouse`` command line: parse, call the library, print. Nothing here a test needs to call.

Exit codes: 0 success; 1 something checked or managed is unhealthy (or an unexpected error); 2 bad input: a flag, a
setting, the machine (nothing was changed); 130 interrupted.

The options every command shares (settings file, target, profile, --set, Kubernetes context and namespace, --json,
--debug) are declared once, in ``COMMON``; ``@command`` adds them to each command and hands them over as one
:class:`Options` object.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sagaz_lakehouse.errors import EXIT_FAILED, EXIT_USAGE, LakehouseError
from sagaz_lakehouse.targets import RESTART_TIMEOUT_S
from sagaz_lakehouse.version import __version__

if TYPE_CHECKING:  # the module imports the Fluss client stack: not for `--help`
    from sagaz_lakehouse.fluss_cluster import ServerLog

app = typer.Typer(
    name="sagaz-lakehouse",
    help="Stand up a streaming lakehouse for saga analytics: ZooKeeper, Apache Fluss, MinIO, an Iceberg REST "
    "catalog, Flink (running the Fluss tiering service) and Trino.\n\n"
    "Typical session:  sagaz-lakehouse up  →  sagaz-lakehouse create-tables  →  sagaz-lakehouse doctor\n\n"
    "Settings come from ./sagaz-lakehouse.yaml (see `init`), SAGAZ_LAKEHOUSE_<SECTION>__<KEY> variables and "
    "--set KEY=VALUE, in rising precedence. Exit codes: 0 ok, 1 unhealthy or failed, 2 bad input (nothing changed).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sagaz-lakehouse {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", help="Print the version and exit.",
                                                callback=_version, is_eager=True)] = False) -> None:
    """Stand up a streaming lakehouse for saga analytics."""


# ---------------------------------------------------------------------------------------------- common options


@dataclass
class Options:
    """The options every command shares, as given on the command line."""

    config: Path | None = None
    target: str | None = None
    profile: str | None = None
    sets: list[str] | None = None
    context: str | None = None
    namespace: str | None = None
    as_json: bool = False
    debug: bool = False

    def settings(self) -> tuple[Any, Path]:
        """Validated settings and the folder relative paths in them start from."""
        from sagaz_lakehouse import config as cfg
        from sagaz_lakehouse.loader import load_settings

        overrides = parse_sets(self.sets)
        for key, value in (("target", self.target), ("profile", self.profile), ("kubernetes.context", self.context),
                           ("kubernetes.namespace", self.namespace)):
            if value is not None:
                overrides[key] = value
        path = self.config if self.config is not None else cfg.find_config_file()
        settings = load_settings(path, overrides)
        return settings, (path.parent if path else Path.cwd()).resolve()

    def credentials(self, settings: Any, base_dir: Path) -> Any:
        from sagaz_lakehouse.loader import resolve_credentials

        return resolve_credentials(settings, base_dir=base_dir)

    def chosen_target(self, settings: Any) -> Any:
        """The target the settings name (an unknown name is a usage error)."""
        from sagaz_lakehouse.targets.base import target_of

        return target_of(settings)

    def driver(self, settings: Any, base_dir: Path) -> Any:
        return self.chosen_target(settings).driver(settings, base_dir)

    def warn(self, settings: Any) -> None:
        """What the settings allow but production should not rely on (config.settings_warnings), on stderr."""
        from sagaz_lakehouse.config import settings_warnings

        for warning in settings_warnings(settings):
            typer.echo(f"warning: {warning}", err=True)

    def progress(self) -> Callable[[str], None]:
        """Progress lines on stderr (stdout stays clean for --json)."""
        return lambda message: typer.echo(message, err=True)

    def emit(self, data: Any, text: str | None = None) -> None:
        """--json: the data on stdout; else the text (when there is any)."""
        if self.as_json:
            typer.echo(json.dumps(data, indent=2, default=str))
        elif text:
            typer.echo(text)


def parse_sets(sets: list[str] | None) -> dict[str, Any]:
    from sagaz_lakehouse import config as cfg
    from sagaz_lakehouse.errors import ConfigError, Problem

    overrides: dict[str, Any] = {}
    problems = []
    for item in sets or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            problems.append(Problem(f"--set {item}", "expected KEY=VALUE", "e.g. --set lake.freshness=30s"))
        elif key not in cfg.ALL_PATHS:
            import difflib

            close = difflib.get_close_matches(key, cfg.ALL_PATHS, n=1)
            problems.append(Problem(f"--set {key}", "unknown setting",
                                    f"did you mean {close[0]}?" if close else "see `sagaz-lakehouse init`"))
        else:
            overrides[key] = value.strip()
    if problems:
        raise ConfigError(problems, "command-line flags")
    return overrides


def _option(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


COMMON = {
    "config": _option("config", Annotated[Path | None, typer.Option(
        "--config", "-c", help="Settings file (default: ./sagaz-lakehouse.yaml if present, else built-in defaults).",
        show_default=False)]),
    "target": _option("target", Annotated[str | None, typer.Option(
        "--target", "-t", help="Where the stack runs: local, compose or kubernetes.", show_default=False)]),
    "profile": _option("profile", Annotated[str | None, typer.Option(
        "--profile", "-p", help="dev (small, dev credentials) or prod (credentials required).",
        show_default=False)]),
    "sets": _option("sets", Annotated[list[str] | None, typer.Option(
        "--set", help="Override any setting, e.g. --set replicas.tablet_servers=3 (repeatable).",
        show_default=False)]),
    "context": _option("context", Annotated[str | None, typer.Option(
        "--context", help="Kubernetes: kubeconfig context (default: the current context).", show_default=False)]),
    "namespace": _option("namespace", Annotated[str | None, typer.Option(
        "--namespace", "-n", help="Kubernetes: namespace (default: the project name).", show_default=False)]),
    "as_json": _option("as_json", Annotated[bool, typer.Option(
        "--json", help="Machine-readable output on stdout (progress stays on stderr).")], False),
    "debug": _option("debug", Annotated[bool, typer.Option(
        "--debug", help="Show the full traceback of an unexpected error.")], False),
}


def command(name: str | None = None, *, stack: bool = True) -> Callable[[Callable[..., int]], Any]:
    """Register a command that takes ``options: Options`` plus its own parameters; ``stack=False`` leaves out the
    options that only make sense against a stack (Kubernetes context/namespace)."""
    shared = [k for k in COMMON if stack or k not in ("context", "namespace")]

    def register(fn: Callable[..., int]) -> Any:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "options"]

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> None:
            options = Options(**{k: kwargs.pop(k) for k in shared})
            _run(lambda: fn(options, **kwargs), options.debug)

        wrapper.__signature__ = inspect.Signature([*own, *(COMMON[k] for k in shared)])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {**{p.name: p.annotation for p in own},
                                   **{k: COMMON[k].annotation for k in shared}}
        return app.command(name)(wrapper)

    return register


def _run(action: Callable[[], int], debug: bool) -> None:
    """Run a command body: our errors become a message and their exit code; anything else one line and exit 1
    (the traceback only with --debug)."""
    try:
        code = action()
    except LakehouseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except Exception as exc:
        if debug:
            raise
        from sagaz_lakehouse.errors import explain

        typer.echo(f"error: {explain(exc)}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    raise typer.Exit(code or 0)


# ------------------------------------------------------------------------------------------------- commands


@command(stack=False)
def init(options: Options, force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")]
         = False) -> int:
    """Write a commented sagaz-lakehouse.yaml listing every setting with its documentation and default.

    Defaults are written commented out, so a later version's defaults (image tags, jar versions) apply unless you
    uncomment a line. --target, --profile and --set values are written as active settings."""
    from sagaz_lakehouse import config as cfg
    from sagaz_lakehouse.errors import UsageError
    from sagaz_lakehouse.loader import load_settings

    path = options.config or Path(cfg.CONFIG_FILENAME)
    if path.exists() and not force:
        raise UsageError(f"{path} already exists", "pass --force to overwrite it, or edit it")
    chosen = {**parse_sets(options.sets), **{k: v for k, v in (("target", options.target),
                                                               ("profile", options.profile)) if v is not None}}
    load_settings(None, chosen)  # validate before writing anything
    path.write_text(cfg.commented_yaml(chosen))
    options.emit({"written": str(path), "settings": chosen}, None)
    typer.echo(f"wrote {path}; edit it, then run `sagaz-lakehouse up`", err=True)
    return 0


@command(stack=False)
def render(
    options: Options,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: manifests/<target>).",
                                             show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the files that would be written; write none.")]
    = False,
    placeholders: Annotated[bool, typer.Option("--placeholders", help="Write REPLACE_WITH_S3_ACCESS_KEY and "
                                               "REPLACE_WITH_S3_SECRET_KEY instead of the credentials (files meant "
                                               "to be committed).")] = False,
) -> int:
    """Render the stack for a target (compose project, Kubernetes manifests, local config) without applying it.

    Files holding credentials are written 0600. Without --out, the default folder manifests/<target> is often in a
    git work tree: there, credentials are written as placeholders (pass --out to get the real values)."""
    from sagaz_lakehouse import config as cfg
    from sagaz_lakehouse import render as rendering
    from sagaz_lakehouse import security

    settings, base_dir = options.settings()
    options.warn(settings)
    target = options.chosen_target(settings)
    out_dir = out or Path("manifests") / target.name
    if not placeholders and out is None and rendering.inside_git_work_tree(out_dir):
        placeholders = True
        typer.echo(f"{out_dir} is inside a git work tree: credentials written as placeholders "
                   "(pass --out to write them)", err=True)
    credentials = cfg.PLACEHOLDER_CREDENTIALS if placeholders else options.credentials(settings, base_dir)
    if not placeholders and security.trino_auth_on(settings) and not credentials.trino_keystore:
        from sagaz_lakehouse import tls  # Trino's certificate, made beside the files (`up` keeps its own)

        hosts = security.trino_certificate_hosts(settings, target.view)
        keystore = (cfg.PLACEHOLDER_CREDENTIALS.trino_keystore if dry_run
                    else tls.ensure(out_dir / "tls", hosts).keystore_pem)
        credentials = dataclasses.replace(credentials, trino_keystore=keystore)
    files = target.render(settings, credentials)
    if not dry_run:
        rendering.write_files(files, out_dir)
    lines = [f"{out_dir / f.path}{_credential_note(f.secret, placeholders)}" for f in files]
    options.emit({"target": target.name, "out": str(out_dir), "written": not dry_run,
                  "placeholders": placeholders,
                  "files": [{"path": f.path, "secret": f.secret} for f in files]}, "\n".join(lines))
    if dry_run:
        typer.echo("dry run: nothing written", err=True)
    return 0


def _credential_note(secret: bool, placeholders: bool) -> str:
    if not secret:
        return ""
    return "  (0600, credential placeholders)" if placeholders else "  (0600, holds credentials)"


@command(stack=False)
def dashboards(
    options: Options,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("manifests/grafana"),
    prometheus_url: Annotated[str, typer.Option(help="Prometheus as Grafana reaches it.")] = "http://prometheus:9090",
    trino_url: Annotated[str, typer.Option(help="Trino as Grafana reaches it (empty: http://trino:<ports.trino>).",
                                           show_default=False)] = "",
) -> int:
    """Write the Grafana dashboards (sagas in real time, saga history over Trino, operations) and the provisioning
    files that load them with their Prometheus and Trino data sources: mount provisioning/ at
    /etc/grafana/provisioning and dashboards/ at /var/lib/grafana/dashboards/sagaz-lakehouse (the Trino data source
    needs the trino-datasource plugin). The defaults address the stack from inside its compose network or cluster."""
    from sagaz_lakehouse import addresses
    from sagaz_lakehouse import render as rendering
    from sagaz_lakehouse.errors import UsageError
    from sagaz_lakehouse.stack import View

    try:
        from sagaz_lakehouse import dashboards as boards
    except ModuleNotFoundError as exc:  # pragma: no cover - the grafana extra
        raise UsageError(f"dashboards need grafana-foundation-sdk ({exc})",
                         "pip install 'sagaz-lakehouse[grafana]'") from None
    settings, _ = options.settings()
    try:
        files = boards.provisioning(settings, prometheus_url,
                                    trino_url or addresses.endpoints(settings, View.INTERNAL).trino)
    except ModuleNotFoundError as exc:
        raise UsageError(f"dashboards need grafana-foundation-sdk ({exc})",
                         "pip install 'sagaz-lakehouse[grafana]'") from None
    rendering.write_files([rendering.RenderedFile(path, content) for path, content in files.items()], out)
    options.emit({"out": str(out), "files": sorted(files)}, "\n".join(str(out / path) for path in sorted(files)))
    return 0


@command("build-images", stack=False)
def build_images(
    options: Options,
    push: Annotated[bool, typer.Option("--push", help="Push each image to kubernetes.registry after building it "
                                       "(docker push: log in first).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the images, their bases and jars; build none.")]
    = False,
) -> int:
    """Build the images that carry the locked jars (kubernetes.jars: baked), FROM images.* as the settings give them,
    with `docker build` (images/jars/Dockerfile; the jars come from the digest-checked cache, fetched into it from
    local.maven_repository where missing). An image already built (same name, same digest label) is kept. Then set
    kubernetes.jars: baked: pods start with nothing to download. Kubernetes target only."""
    from sagaz_lakehouse import artifacts
    from sagaz_lakehouse.errors import UsageError
    from sagaz_lakehouse.stack import View
    from sagaz_lakehouse.targets.kubernetes import jar_images, layout

    if options.target not in (None, "kubernetes"):
        raise UsageError(f"build-images is for the kubernetes target, not {options.target}",
                         "compose and local fetch the jars on the host (the artifact cache)")
    options.target = "kubernetes"
    settings, _ = options.settings()
    if push:
        jar_images.check_push(settings)
    lock = artifacts.load_lock()
    stack = layout.build_stack(settings, View.INTERNAL, layout.instance_address)
    images = list(jar_images.jar_images(settings, stack.components, lock).values())
    docker = [] if dry_run else jar_images.engine_command()
    cache = artifacts.cache_dir(settings.local.cache_dir)
    report = []
    for image in images:
        state = "would build"
        if not dry_run:
            if jar_images.present(docker, image.reference) == image.digest:
                state = "up to date"
                typer.echo(f"{image.reference}: up to date", err=True)
            else:
                jar_images.build(image, cache, settings.local.maven_repository, docker, options.progress())
                state = "built"
            if push:
                jar_images.push(image, docker)
                state += ", pushed"
                typer.echo(f"{image.reference}: pushed", err=True)
        report.append({"image": f"images.{image.field}", "base": image.base, "reference": image.reference,
                       "digest": image.digest, "state": state,
                       "jars": [{"path": path, "sha256": a.sha256} for path, a in image.files]})
    options.emit(report, "\n".join(f"{r['reference']}  FROM {r['base']}  ({len(r['jars'])} jars; {r['state']})"
                                   for r in report))
    if not dry_run and not push:
        typer.echo("set kubernetes.jars: baked; on a cluster that cannot reach this engine, push them "
                   "(--push, with kubernetes.registry) or load them onto its nodes", err=True)
    return 0


def _check_external_services(options: Options, settings: Any, base_dir: Path) -> None:
    """object_store.kind / catalog.kind external: every role's store access and the catalog's login and namespace,
    checked before anything starts (each failure exits 2 naming its setting)."""
    if settings.external_store:
        from sagaz_lakehouse import store_probe

        credentials = options.credentials(settings, base_dir)
        warning = store_probe.shared_key_warning(settings, credentials)
        if warning:
            typer.echo(warning, err=True)
        for line in store_probe.preflight(settings, credentials):
            typer.echo(f"object store: {line}", err=True)
    if settings.catalog.kind == "external":
        from sagaz_lakehouse import addresses, clients, security
        from sagaz_lakehouse.stack import View

        endpoints = security.with_catalog_login(addresses.endpoints(settings, View.EXTERNAL), settings, base_dir)
        checked = clients.check_external_catalog(settings, endpoints)
        typer.echo(f"external catalog at {settings.catalog.uri}: {', '.join(checked)} ok", err=True)


@command()
def up(
    options: Options,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be started or applied; change "
                                          "nothing.")] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Do not wait for components to become healthy.")]
    = False,
    timeout: Annotated[int, typer.Option("--timeout", help="Seconds to wait for all components.")] = 600,
    force_conflicts: Annotated[bool, typer.Option("--force-conflicts", help="Kubernetes: take over fields another "
                                                  "field manager owns (server-side apply conflicts).")] = False,
    restart_changed: Annotated[bool, typer.Option("--restart-changed", help="local: restart each component that "
                                                  "runs with an older configuration, once its dependencies are "
                                                  "healthy (data is kept; compose and Kubernetes always apply "
                                                  "changes).")] = False,
) -> int:
    """Bring the stack up and wait until it is healthy (idempotent: running components are left alone; on the local
    target one whose configuration changed is reported, and restarted with --restart-changed).

    local: native processes under a supervisor. compose: `docker compose up --wait`. kubernetes: server-side apply
    (field manager sagaz-lakehouse) after a server-side dry run, pruning of objects this stack created that are no
    longer rendered, then a wait for every rollout and Job."""
    from sagaz_lakehouse.errors import UsageError
    from sagaz_lakehouse.targets.base import able_to

    settings, base_dir = options.settings()
    options.warn(settings)
    target = options.chosen_target(settings)
    driver = target.driver(settings, base_dir)
    for flag, capability, given in (("--force-conflicts", "force_conflicts", force_conflicts),
                                    ("--restart-changed", "restart_changed", restart_changed)):
        if not given:
            continue
        if not getattr(target.capabilities, capability):
            able = " or ".join(f"--target {name}" for name in able_to(capability))
            raise UsageError(f"{flag} applies to {able}, not {target.name}", f"drop the flag, or pass {able}")
        setattr(driver, capability, True)
    if not dry_run:  # the user's own store and catalog: proven before anything starts
        _check_external_services(options, settings, base_dir)
    result = driver.up(dry_run=dry_run, wait=not no_wait, timeout=timeout)
    if not dry_run and not no_wait:
        from sagaz_lakehouse import fluss_cluster

        membership = fluss_cluster.confirm_members(settings, driver, options.progress())
        result["fluss"] = {"tablet_servers": list(membership.registered)}
        typer.echo(f"stack is up ({membership.summary()}); next: sagaz-lakehouse create-tables, then "
                   "sagaz-lakehouse doctor", err=True)
    options.emit(result, _plan_text(result) if dry_run else None)
    return 0


def _plan_text(result: dict[str, Any]) -> str:
    if "would_start" in result:  # local
        lines = [f"dry run: would start {', '.join(result['would_start']) or 'nothing'}"]
        if result.get("already_running"):
            lines.append(f"already running (left alone): {', '.join(result['already_running'])}")
        lines.append(f"run folder {result['run_dir']}, downloads cached in {result['cache_dir']}")
        return "\n".join(lines)
    return "dry run: nothing was changed"


@command()
def down(
    options: Options,
    purge: Annotated[bool, typer.Option("--purge", help="Also delete all data (volumes, claims, run folder).")]
    = False,
) -> int:
    """Stop the stack. Data is kept unless --purge.

    On Kubernetes it deletes only objects carrying this stack's ApplySet label; PersistentVolumeClaims stay unless
    --purge, and a namespace sagaz-lakehouse did not create is never deleted."""
    settings, base_dir = options.settings()
    target = options.chosen_target(settings)
    target.driver(settings, base_dir).down(purge=purge)
    options.emit({"target": target.name, "down": True, "purged": purge})
    return 0


@command()
def restart(
    options: Options,
    component: Annotated[str, typer.Argument(help="A component (every instance restarts) or one instance, as "
                                             "`status` lists them, e.g. fluss-coordinator or fluss-tablet-1.")],
    timeout: Annotated[int, typer.Option("--timeout", min=1, help="Seconds to wait until it is healthy again.")]
    = RESTART_TIMEOUT_S,
) -> int:
    """Restart one component and wait until it is healthy again; everything else keeps running, no data is lost.

    Local: its processes stop and start again. Compose: `compose restart`. Kubernetes: its pods are deleted and
    their controller makes new ones. create-tables restarts the Fluss coordinator this way when it missed a new
    table (apache/fluss#2710). A Fluss server is healthy once the coordinator lists every tablet server again.

    Exit 0 once it is healthy, 1 when it is not within --timeout, 2 for a name that is not a running component."""
    from sagaz_lakehouse.stack import FLUSS_SERVERS

    settings, base_dir = options.settings()
    target = options.chosen_target(settings)
    driver = target.driver(settings, base_dir)
    driver.restart(component, timeout=timeout)
    result: dict[str, Any] = {"target": target.name, "restarted": component}
    if target.stack(settings).named(component)[0][0].name in FLUSS_SERVERS:
        # A Fluss server answers on its port before the cluster serves again (the coordinator first answers "not
        # initialized yet", a tablet server registers later): healthy means the cluster lists every tablet server.
        from sagaz_lakehouse import fluss_cluster

        membership = fluss_cluster.confirm_members(settings, driver, options.progress())
        result["fluss"] = {"tablet_servers": list(membership.registered)}
    options.emit(result, f"{component}: restarted and healthy")
    return 0


@command()
def status(options: Options) -> int:
    """Show each component, whether it runs and is healthy, and where to reach it. Exit 1 unless all healthy."""
    settings, base_dir = options.settings()
    target = options.chosen_target(settings)
    driver = target.driver(settings, base_dir)
    rows = driver.status()
    if target.capabilities.status_tiering_lag:
        _add_tiering_lag(settings, rows)
    if target.capabilities.status_lake_health:
        rows += _lake_rows(options, settings, base_dir, driver, rows)
    if target.capabilities.status_lake_shape:
        rows += _lake_shape_rows(settings, rows, base_dir)
    lines = [f"{'COMPONENT':<22} {'STATE':<10} {'ENDPOINT':<26} DETAIL"]
    lines += [f"{r['component']:<22} {r['state']:<10} {r.get('endpoint') or '-':<26} {r.get('detail', '')}".rstrip()
              for r in rows]
    lines += [f"\n{r['component']} ({r['state']}), last lines of its log:\n{r['log_tail']}"
              for r in rows if r.get("log_tail")]
    options.emit(rows, "\n".join(lines))
    healthy = all(r["state"] in ("healthy", "completed", "unknown") for r in rows)  # unknown: not observed
    if not healthy and not options.as_json:
        stopped = all(r["state"] in ("stopped", "absent") for r in rows)
        typer.echo("hint: nothing is running; start the stack with `sagaz-lakehouse up`" if stopped else
                   "hint: see `sagaz-lakehouse logs COMPONENT` for what is not healthy", err=True)
    return 0 if healthy else EXIT_FAILED


def _add_tiering_lag(settings: Any, rows: list[dict[str, Any]]) -> None:
    """The tiering lag per table, from Prometheus, in the prometheus row's detail. Only where the host reaches
    Prometheus as it is (Capabilities.status_tiering_lag): status opens no port-forward."""
    from sagaz_lakehouse import addresses, doctor
    from sagaz_lakehouse.stack import PROMETHEUS, View

    row = next((r for r in rows if r.get("component") == PROMETHEUS and r.get("state") == "healthy"), None)
    if row is None:
        return
    try:
        lags = doctor.tiering_lag(addresses.endpoints(settings, View.EXTERNAL))
    except (OSError, ValueError, KeyError):
        return
    shown = ", ".join(f"{table} {lag:.1f}s" for table, lag in sorted(lags.items())) or "no table tiered yet"
    row["detail"] = "; ".join(filter(None, [row.get("detail", ""), f"tiering lag: {shown}"]))
    row["tiering_lag_seconds"] = lags


def _lake_rows(options: Options, settings: Any, base_dir: Any, driver: Any,
               rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per lake_health finding (stalled table, log behind the lake, a bucket whose KV does not answer),
    judged only while the Fluss servers are healthy (otherwise their own rows say what is wrong), and only where the
    host reaches the lake as it is (Capabilities.status_lake_health: elsewhere status would have to open
    port-forwards or reach into containers; `doctor` checks the lake everywhere)."""
    from sagaz_lakehouse import lake_health

    fluss_rows = [r for r in rows if r["component"].startswith("fluss-")]
    if not fluss_rows or any(r["state"] != "healthy" for r in fluss_rows):
        return []
    try:
        with driver.client_endpoints() as endpoints:
            # no waiting for a leader election here: status answers at once (doctor waits for it)
            findings = lake_health.observe(settings, options.credentials(settings, base_dir), endpoints, election_s=0)
    except Exception as exc:  # status reports; it never fails on the lake check itself
        return [{"component": f"{settings.lake.database}.saga_events", "state": "unknown", "pid": None,
                 "endpoint": "", "detail": f"lake health not observed: {type(exc).__name__}: {str(exc)[:200]}"}]
    return [{"component": f.table if f.bucket is None else f"{f.table}[{f.bucket}]", "state": f.kind, "pid": None,
             "endpoint": "", "detail": f"{f.detail}; hint: {f.hint}"} for f in findings or []]


def _lake_shape_rows(settings: Any, rows: list[dict[str, Any]], base_dir: Path | None = None) -> list[dict[str, Any]]:
    """The Iceberg table's shape (files, snapshots, metadata, last maintenance) and what needs attention, read
    from the REST catalog where the host reaches it as it is (Capabilities.status_lake_shape)."""
    from sagaz_lakehouse import addresses, lake_maintenance, maintenance, security
    from sagaz_lakehouse.stack import REST_CATALOG, View

    external = settings.catalog.kind == "external"  # not in the rows: asked as it is
    if not external and not any(r.get("component") == REST_CATALOG and r.get("state") == "healthy" for r in rows):
        return []
    name = f"{settings.lake.database}.saga_events (lake)"
    try:
        endpoints = security.with_catalog_login(addresses.endpoints(settings, View.EXTERNAL), settings, base_dir)
        shape, findings = lake_maintenance.observe(settings, endpoints)
    except maintenance.TableMissing:  # before create-tables: nothing to judge yet
        return []
    except maintenance.MaintenanceError as exc:  # status reports; it never fails on the lake check itself
        return [{"component": name, "state": "unknown", "pid": None, "endpoint": "", "detail": str(exc)[:200]}]
    detail = lake_maintenance.summary(shape) + "".join(f"; {f.kind}: {f.detail} (hint: {f.hint})" for f in findings)
    return [{"component": name, "state": findings[0].kind if findings else "healthy", "pid": None, "endpoint": "",
             "detail": detail, "lake_shape": shape.as_dict(), "findings": [vars(f) for f in findings]}]


@command()
def maintain(
    options: Options,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be done; change nothing.")] = False,
) -> int:
    """Maintain the Iceberg copy of saga_events now, as the lake-maintenance service does on its schedule.

    Compacts small files (Trino optimize, which also applies the deletes of updated keys), expires snapshots older
    than lake.snapshot_retention (never the one Fluss committed last), removes orphan files older than
    maintenance.orphan_retention, and keeps the metadata history short. Prints the table before and after (data
    files, bytes, snapshots, metadata size) and the time each step took. Exit 1 when a step failed."""
    from sagaz_lakehouse import lake_maintenance, maintenance
    from sagaz_lakehouse.errors import LakehouseError

    settings, base_dir = options.settings()
    driver = options.chosen_target(settings).driver(settings, base_dir)
    with driver.client_endpoints() as endpoints:
        try:
            report = maintenance.run(lake_maintenance.lake(settings, endpoints), lake_maintenance.policy(settings),
                                     dry_run=dry_run, log=options.progress())
        except maintenance.TableMissing:
            raise LakehouseError(f"there is no Iceberg table {settings.lake.database}.saga_events to maintain",
                                 "run `sagaz-lakehouse create-tables` first") from None
        except maintenance.MaintenanceError as exc:
            raise LakehouseError(f"lake maintenance failed: {exc}", "is the stack up? `sagaz-lakehouse status`")\
                from None
    options.emit(report.as_dict(), _maintenance_text(report))
    return 0 if report.ok else EXIT_FAILED


def _maintenance_text(report: Any) -> str:
    from sagaz_lakehouse.lake_maintenance import summary

    lines = [f"  {step['step']}: {step.get('result', 'planned')}"
             + (f" after {step['attempts']} attempts" if step.get("attempts", 0) > 1 else "")
             + f" ({step['seconds']}s)" + (f": {step['error']}" if step.get("error") else "")
             for step in report.steps]
    lines.insert(0, f"{report.table} before: {summary(report.before)}")
    if report.after is not None:
        lines.append(f"{report.table} after:  {summary(report.after)}; {report.expired_snapshots} snapshot(s) "
                     f"expired in {report.seconds:.1f}s")
    else:
        lines.append("dry run: nothing was changed")
    return "\n".join(lines)


@command()
def logs(
    options: Options,
    component: Annotated[str, typer.Argument(help="A component (all its instances) or one instance, as `status` "
                                             "lists them, e.g. fluss-tablet or fluss-tablet-0.")],
    lines: Annotated[int, typer.Option("--lines", help="How many lines from the end.", min=1)] = 50,
) -> int:
    """Print the last lines of a component's log (credentials masked)."""
    settings, base_dir = options.settings()
    text = options.driver(settings, base_dir).logs(component, lines)
    options.emit({"component": component, "lines": text.splitlines()}, text)
    return 0


@command()
def diff(
    options: Options,
    force_conflicts: Annotated[bool, typer.Option("--force-conflicts", help="Take over fields another field "
                                                  "manager owns.")] = False,
) -> int:
    """Show what `up` would change on Kubernetes (server-side dry run against the live objects).

    Exit 0 when nothing would change, 1 when something would (like `kubectl diff`). Secret values are shown as
    digests only."""
    from sagaz_lakehouse.errors import UsageError
    from sagaz_lakehouse.targets.base import able_to

    settings, base_dir = options.settings()
    target = options.chosen_target(settings)
    if not target.capabilities.diff:
        able = able_to("diff")
        raise UsageError(f"diff compares against a cluster; the target is {target.name}",
                         f"pass --target {' or '.join(able)} (or set target: {' or '.join(able)}); for other "
                         "targets `sagaz-lakehouse render --dry-run` lists the files")
    driver = target.driver(settings, base_dir)
    driver.force_conflicts = force_conflicts
    changes = driver.diff()
    options.emit(changes, "\n".join(c["diff"] or f"{c['action']}: {c['object']}" for c in changes))
    typer.echo(f"{len(changes)} object(s) would change" if changes else "no changes", err=True)
    return 1 if changes else 0


@command("create-tables")
def create_tables(
    options: Options,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the equivalent Flink SQL DDL; create nothing.")]
    = False,
) -> int:
    """Create the Fluss database and the saga_events table with lake tiering to Iceberg (idempotent).

    An existing table with the same definition is left alone; one with another definition is an error (exit 2)
    and nothing changes. When the Fluss coordinator elects no leader for the table's buckets within a minute (it
    missed the creation: apache/fluss#2710), it is restarted once, which elects them."""
    from sagaz_lakehouse import tables
    from sagaz_lakehouse.stack import COORDINATOR

    settings, base_dir = options.settings()
    if dry_run:
        ddl = tables.flink_sql_ddl(settings)
        options.emit({"dry_run": True, "database": settings.lake.database, "table": tables.TABLE, "sql": ddl,
                      "properties": tables.creation_properties(settings)}, ddl)
        return 0
    credentials = options.credentials(settings, base_dir)
    driver = options.driver(settings, base_dir)
    with driver.client_endpoints() as endpoints:
        result = tables.create_tables(settings, credentials, endpoints, log=options.progress(),
                                      server_log=_server_log(driver),
                                      restart_coordinator=lambda: driver.restart(COORDINATOR))
    options.emit(result)
    return 0


def _server_log(driver: Any) -> ServerLog:
    """A Fluss server's log tail, by instance name: read only for a tablet server that is missing (the
    coordinator's reason) or listed (whether it is still waiting to register)."""
    from sagaz_lakehouse import fluss_cluster

    return lambda name: str(driver.logs(name, fluss_cluster.SERVER_LOG_LINES))


@command()
def doctor(
    options: Options,
    quick: Annotated[bool, typer.Option("--quick", help="Skip the end-to-end data path check.")] = False,
    probe_timeout: Annotated[float | None, typer.Option(
        min=1, help="Seconds the probe event may take to reach Iceberg [default: 3 x lake.freshness + 60]; "
        "longer on a machine busy with more than the stack, or while a backlog is being tiered.",
        show_default=False)] = None,
) -> int:
    """Check every component and prove tiering: a probe event written to Fluss must appear in Iceberg and Trino.

    When the probe does not arrive in time, the failure says whether the table was ever tiered, how far the lake
    is behind, and the tiering job's latest failure if Flink recorded one.

    Exit 0 when every check passes, 1 otherwise."""
    from sagaz_lakehouse import doctor as checks

    settings, base_dir = options.settings()
    credentials = options.credentials(settings, base_dir)
    driver = options.driver(settings, base_dir)
    with driver.client_endpoints() as endpoints:
        report = checks.run(settings, credentials, endpoints, driver.status, quick=quick,
                            probe_timeout=probe_timeout, progress=None if options.as_json else options.progress(),
                            problems=getattr(driver, "connection_problems", None),
                            server_log=_server_log(driver))
    options.emit(report.as_dict(), report.as_text())
    return 0 if report.ok else EXIT_FAILED


@command()
def simulate(
    options: Options,
    sagas: Annotated[int, typer.Option(min=0, help="How many sagas to run.")] = 100,
    rate: Annotated[float, typer.Option(min=0, help="Sagas started per second (0: all at once).")] = 20.0,
    failure_rate: Annotated[float, typer.Option(min=0, max=1, help="Share of sagas with a failing step.")] = 0.2,
    seed: Annotated[int | None, typer.Option(help="Reproduce a run: the same failures and step times.",
                                             show_default=False)] = None,
    metrics_port: Annotated[int, typer.Option(min=0, max=65535, help="Serve Prometheus metrics (Sagaz's saga "
                                              "metrics, the listener's counters) on 127.0.0.1:PORT, as an "
                                              "application would (list it in monitoring.app_targets); 0: off.")] = 0,
    metrics_linger: Annotated[float, typer.Option(min=0, help="Seconds to keep serving metrics after the run.")] = 0,
    anomaly: Annotated[list[str] | None, typer.Option(
        "--anomaly", help="Inject an anomaly (repeatable): saga=order,step=charge_payment,at=+10m,for=5m, then "
        "failure_rate=0.5 and/or duration_ms=200: sagas of that kind starting in the window fail at the step with "
        "that probability and/or spend that long in it.", show_default=False)] = None,
    backdate: Annotated[str, typer.Option(help="Stamp the events as if the run had started this long ago, e.g. "
                                          "6h (history for the historical queries; empty: now).")] = "",
    time_scale: Annotated[float, typer.Option(min=0.001, help="Simulated seconds per second of the run: the "
                                              "events' timestamps advance this much faster (durations stay real); "
                                              "--anomaly windows count in simulated time.")] = 1.0,
    spool_dir: Annotated[Path | None, typer.Option(help="The listener's spool: every event stays on disk there until "
                                                   "it is in Iceberg, and a run first re-sends what an earlier one "
                                                   "left [default: <run folder>/spool/simulate]",
                                                   show_default=False)] = None,
    spool: Annotated[bool, typer.Option(help="Use a spool (--no-spool: events in memory only, lost if the process "
                                        "dies).")] = True,
    wait_safe: Annotated[float, typer.Option(min=0, help="Seconds to wait, after the sagas, until every event is "
                                             "known to be in Iceberg (needs the spool); 0: do not wait.")] = 0,
) -> int:
    """Run real Sagaz sagas (an order saga with compensations; a parallel DAG whose compensation can fail) with the
    FlussAnalyticsListener against the running stack. Exit 1 if events could not be delivered (or, with
    --wait-safe, were not all in Iceberg in time).

    Their events reach Iceberg and Trino within the table freshness (about a minute end to end in dev)."""
    from sagaz_lakehouse.errors import UsageError

    try:
        from sagaz_lakehouse import simulate as sim
    except ModuleNotFoundError as exc:
        raise UsageError(f"simulate needs Sagaz ({exc})", "pip install 'sagaz-lakehouse[sagaz]'") from None
    anomalies = []
    for spec in anomaly or []:
        try:
            anomalies.append(sim.parse_anomaly(spec))
        except ValueError as exc:
            raise UsageError(f"--anomaly {spec}: {exc}",
                             "e.g. --anomaly saga=order,step=charge_payment,at=+10m,for=5m,failure_rate=0.5") from None
    backdate_s = 0.0
    if backdate:
        from sagaz_lakehouse.queries import parse_duration

        try:
            backdate_s = parse_duration(backdate).total_seconds()
        except ValueError as exc:
            raise UsageError(f"--backdate {backdate}: {exc}", "e.g. --backdate 6h") from None
    from sagaz_lakehouse.spool import SpoolInUse
    settings, base_dir = options.settings()
    if wait_safe and not spool:
        raise UsageError("--wait-safe needs the spool", "drop --no-spool, or --wait-safe")
    directory = None
    if spool:
        directory = spool_dir or (base_dir or Path.cwd()) / settings.local.run_dir / "spool" / "simulate"
    with options.driver(settings, base_dir).client_endpoints() as endpoints:
        try:
            summary = sim.run(sagas=sagas, rate=rate, failure_rate=failure_rate, seed=seed, anomalies=anomalies,
                              backdate_s=backdate_s, time_scale=time_scale,
                              progress=None if options.as_json else sim.tenths(options.progress()),
                              bootstrap_servers=endpoints.fluss_bootstrap, database=settings.lake.database,
                              metrics_port=metrics_port, metrics_linger=metrics_linger,
                              fluss_properties=dict(endpoints.fluss_login), spool_dir=directory,
                              wait_safe=wait_safe)
        except SpoolInUse as exc:
            raise UsageError(str(exc), "wait for the other simulate, or pass --spool-dir") from None
    events = summary["events"]
    spooled = ""
    if directory is not None:
        if events["replayed"]:
            spooled += f"; {events['replayed']} re-sent from the spool"
        if events["unsafe"]:
            spooled += f"; {events['unsafe']} not yet known to be in Iceberg, kept in {directory}"
        elif summary["safe"]:
            spooled += "; all in Iceberg"
    options.emit(summary, f"{summary['completed']} sagas completed, {summary['failed']} failed "
                          f"({summary['compensations_failed']} failing compensations) in {summary['elapsed_s']}s; "
                          f"{events['written']} events written, {events['dropped']} dropped{spooled}; "
                          f"saga_id LIKE '{summary['saga_id_pattern']}' selects them (seed {summary['seed']})")
    return 0 if summary["ok"] else EXIT_FAILED


@command()
def query(
    options: Options,
    name: Annotated[str | None, typer.Argument(help="The query to run; --list shows them all.",
                                               show_default=False)] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-P", help="A parameter of the query as KEY=VALUE (repeatable); --list shows each query's.",
        show_default=False)] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Output: table, json or csv.")] = "table",
    list_queries: Annotated[bool, typer.Option("--list", help="List both packs' queries with their parameters.")]
    = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the SQL the query would run; run nothing.")]
    = False,
    engine: Annotated[str | None, typer.Option(
        "--engine", "-e", help="Run it on another engine: spark runs the historical (Trino) pack from its own Spark "
        "SQL files, in a local Spark session on the same Iceberg tables (needs the spark extra).",
        show_default=False)] = None,
) -> int:
    """Run a query of the analytics packs and print its result.

    Trino pack (historical, over the Iceberg copy): sla_compliance, step_bottlenecks, failure_patterns,
    compensation_frequency, throughput, slowest_sagas, time_travel, lake_snapshots. Flink pack (real time, over
    Fluss through the stack's SQL Gateway; each follows the stream within a bound its parameters set):
    running_sagas, failures_recent, step_latency_live. Also in the Trino pack: anomalies (buckets whose failure rate
    or p95 left the trailing baseline) and cost_attribution (prices from the cost.* settings). --engine spark runs
    a historical query on Spark instead. An unknown query, engine or parameter exits 2 with the valid ones."""
    from sagaz_lakehouse import analytics, queries
    from sagaz_lakehouse.errors import UsageError

    fmt = "json" if options.as_json else fmt
    engines = (*queries.ENGINES, *queries.DIALECTS)
    if engine is not None and engine not in engines:
        raise UsageError(f"--engine {engine}: unknown engine", f"use one of: {', '.join(engines)}")
    if fmt not in analytics.FORMATS:
        raise UsageError(f"unknown format '{fmt}'", f"use one of: {', '.join(analytics.FORMATS)}")
    if list_queries or name is None:
        if name is None and not list_queries:
            raise UsageError("which query? give its name", "valid queries:\n" + queries.listing())
        packs = queries.packs()
        options.emit([{"name": q.name, "engine": q.engine, "title": q.title, "description": q.description,
                       "params": [vars(p) for p in q.params]} for q in packs.values()],
                     "\n\n".join(q.usage() for q in packs.values()))
        return 0
    given: dict[str, str] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param {item}: expected KEY=VALUE", "valid parameters:\n" + queries.find(name).usage())
        given[key.strip()] = value
    settings, base_dir = options.settings()
    prepared = analytics.prepare(settings, name, given, engine=engine)
    if dry_run:
        options.emit({"query": name, "engine": prepared.query.engine, "sql": prepared.sql}, prepared.sql)
        return 0
    with options.driver(settings, base_dir).client_endpoints() as endpoints:
        if prepared.query.engine == "spark":
            from sagaz_lakehouse import spark

            credentials = options.credentials(settings, base_dir)
            with spark.engine(settings, credentials, endpoints, options.progress()) as session:
                result = analytics.execute(prepared, endpoints, progress=options.progress(), spark=session)
        else:
            result = analytics.execute(prepared, endpoints, progress=options.progress())
    typer.echo(analytics.formatted(result, fmt))
    notes = result.notes
    how = (f"; stream followed {notes['seconds']}s ({notes['stopped']}; {notes['changes']} changelog rows)"
           if result.engine == "flink" else "")
    typer.echo(f"{len(result.rows)} row(s) from {result.engine}{how}", err=True)
    return 0


@command()
def report(
    options: Options,
    since: Annotated[str, typer.Option(help="The window: how far back from now, e.g. 90m, 24h, 7d.")] = "24h",
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path("report.html"),
    sla_ms: Annotated[int, typer.Option("--sla-ms", min=1, help="The SLA: how long a saga may take, in ms.")]
    = 1000,
) -> int:
    """Write one self-contained HTML SLA report over the window: SLA compliance, throughput, step bottlenecks,
    failure patterns, compensations, the slowest sagas, anomalies (marked on the throughput chart) and cost
    attribution (cost.* prices), with charts (from the Trino query pack).

    The page needs no network to open (charts are inline SVG). Needs the report extra: pip install
    'sagaz-lakehouse[report]'."""
    from sagaz_lakehouse import report as saga_report

    saga_report.require_matplotlib()
    settings, base_dir = options.settings()
    plan = saga_report.prepare(settings, since, sla_ms)
    with options.driver(settings, base_dir).client_endpoints() as endpoints:
        data = saga_report.collect(plan, endpoints, progress=options.progress())
    page = saga_report.render(data)
    out.write_text(page)
    figures = saga_report.totals(data)
    options.emit({"out": str(out), "bytes": len(page.encode()), "since": since, "sla_ms": sla_ms, **figures})
    within = figures["completed_within_pct"]
    typer.echo(f"wrote {out} ({len(page.encode()) // 1024} KiB): {figures['sagas']} sagas finished in the last "
               f"{since}, {'–' if within is None else f'{within:.1f}%'} completed within {sla_ms} ms", err=True)
    return 0


def main() -> None:
    try:
        app()
    except SystemExit as exc:
        # click reports its own usage errors with code 2 already; keep that contract for everything else too.
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
        if "fluss" in sys.modules:
            _exit_now(code)
        raise SystemExit(code) from None


def _exit_now(code: int) -> None:
    """Leave without interpreter shutdown once pyfluss was loaded. Its Rust runtime's threads can still be
    releasing objects while Python finalizes, which aborts the process (SIGABRT, exit 134) in a few runs out of
    twenty even after every connection was closed; the exit code the command chose must survive that. Output is
    flushed first; nothing else of ours runs at exit."""
    import os

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
