"""The ``sagaz-lakehouse`` command line: parse, call the library, print. Nothing here a test needs to call.

Exit codes: 0 success; 1 something checked or managed is unhealthy; 2 bad input (nothing was changed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from sagaz_lakehouse.errors import EXIT_USAGE, LakehouseError

app = typer.Typer(
    name="sagaz-lakehouse",
    help="Stand up a streaming lakehouse for saga analytics: ZooKeeper, Apache Fluss, MinIO, an Iceberg REST "
    "catalog, Flink (running the Fluss tiering service) and Trino.\n\n"
    "Typical session:  sagaz-lakehouse up  →  sagaz-lakehouse create-tables  →  sagaz-lakehouse doctor",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="Settings file (default: "
                                                   "./sagaz-lakehouse.yaml if present, else built-in defaults).")]
TargetOption = Annotated[str | None, typer.Option("--target", "-t", help="local, compose or kubernetes "
                                                  "(overrides the settings file).", show_default=False)]
ProfileOption = Annotated[str | None, typer.Option("--profile", "-p", help="dev or prod.", show_default=False)]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override any setting, e.g. "
                                                     "--set replicas.tablet_servers=3 (repeatable).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
ContextOption = Annotated[str | None, typer.Option("--context", help="Kubernetes: kubeconfig context (default: the "
                                                   "current context).", show_default=False)]
NamespaceOption = Annotated[str | None, typer.Option("--namespace", "-n", help="Kubernetes: namespace (default: "
                                                     "the project name).", show_default=False)]
ForceConflictsOption = Annotated[bool, typer.Option("--force-conflicts", help="Kubernetes: take over fields another "
                                                    "field manager owns (server-side apply conflicts).")]


def _settings(config: Path | None, target: str | None, profile: str | None, sets: list[str] | None,
              context: str | None = None, namespace: str | None = None):
    from sagaz_lakehouse import config as cfg
    from sagaz_lakehouse.errors import ConfigError, Problem

    overrides: dict[str, Any] = {}
    problems = []
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep:
            problems.append(Problem(f"--set {item}", "expected KEY=VALUE", "e.g. --set lake.freshness=30s"))
        else:
            overrides[key.strip()] = value.strip()
    if problems:
        raise ConfigError(problems, "command-line flags")
    if target is not None:
        overrides["target"] = target
    if profile is not None:
        overrides["profile"] = profile
    if context is not None:
        overrides["kubernetes.context"] = context
    if namespace is not None:
        overrides["kubernetes.namespace"] = namespace
    unknown = [k for k in overrides if k not in cfg.ALL_PATHS]
    if unknown:
        import difflib

        raise ConfigError([Problem(f"--set {k}", "unknown setting",
                                   "did you mean " + (difflib.get_close_matches(k, cfg.ALL_PATHS, n=1) or ["?"])[0])
                           for k in unknown], "command-line flags")
    path = config if config is not None else cfg.find_config_file()
    settings = cfg.load(path, overrides)
    base_dir = (path.parent if path else Path.cwd()).resolve()
    return settings, base_dir


def _run(action: Any) -> None:
    """Run a command body, turning our errors into a message on stderr and an exit code."""
    try:
        code = action()
    except LakehouseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    raise typer.Exit(code or 0)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command()
def init(
    path: Annotated[Path, typer.Option("--path", help="Where to write the settings file.")] = Path(
        "sagaz-lakehouse.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    target: TargetOption = None,
    profile: ProfileOption = None,
) -> None:
    """Write a commented sagaz-lakehouse.yaml with every setting and its default."""

    def action() -> int:
        from sagaz_lakehouse import config as cfg
        from sagaz_lakehouse.errors import UsageError

        if path.exists() and not force:
            raise UsageError(f"{path} already exists", "pass --force to overwrite it, or edit it")
        overrides = {k: v for k, v in (("target", target), ("profile", profile)) if v is not None}
        settings = cfg.load(None, overrides)
        path.write_text(cfg.commented_yaml(settings))
        typer.echo(f"wrote {path}; edit it, then run `sagaz-lakehouse up`", err=True)
        return 0

    _run(action)


@app.command()
def render(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: manifests/<target>).")]
    = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the files that would be written; write none.")]
    = False,
    config: ConfigOption = None,
    target: TargetOption = None,
    profile: ProfileOption = None,
    sets: SetOption = None,
    as_json: JsonOption = False,
) -> None:
    """Render the stack for a target (compose project or Kubernetes manifests) without applying it."""

    def action() -> int:
        from sagaz_lakehouse import config as cfg
        from sagaz_lakehouse import render as rendering

        settings, base_dir = _settings(config, target, profile, sets)
        credentials = cfg.resolve_credentials(settings, base_dir=base_dir)
        files = rendering.render(settings, credentials)
        out_dir = out or Path("manifests") / settings.target
        if not dry_run:
            rendering.write_files(files, out_dir)
        if as_json:
            _print_json({"target": settings.target, "out": str(out_dir), "written": not dry_run,
                         "files": [{"path": f.path, "secret": f.secret} for f in files]})
        else:
            for f in files:
                typer.echo(f"{out_dir / f.path}{'  (0600, holds credentials)' if f.secret else ''}")
            if dry_run:
                typer.echo("dry run: nothing written", err=True)
        return 0

    _run(action)


def _driver(settings: Any, base_dir: Path, force_conflicts: bool = False) -> Any:
    from sagaz_lakehouse.drivers import driver_for
    from sagaz_lakehouse.errors import UsageError

    driver = driver_for(settings, base_dir)
    if force_conflicts:
        if settings.target != "kubernetes":
            raise UsageError(f"--force-conflicts applies to --target kubernetes, not {settings.target}",
                             "drop the flag, or pass --target kubernetes")
        driver.force_conflicts = True
    return driver


@app.command()
def up(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be started or applied; change "
                                          "nothing.")] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Do not wait for components to become healthy.")]
    = False,
    timeout: Annotated[int, typer.Option("--timeout", help="Seconds to wait for all components.")] = 600,
    force_conflicts: ForceConflictsOption = False,
    config: ConfigOption = None,
    target: TargetOption = None,
    profile: ProfileOption = None,
    sets: SetOption = None,
    context: ContextOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Bring the stack up (idempotent: running components are left alone) and wait until it is healthy.

    On Kubernetes: server-side apply (field manager sagaz-lakehouse) in dependency order, pruning of objects this
    stack created that are no longer rendered, then a wait for every rollout and Job; --dry-run is a server-side
    dry run."""

    def action() -> int:
        settings, base_dir = _settings(config, target, profile, sets, context, namespace)
        result = _driver(settings, base_dir, force_conflicts).up(dry_run=dry_run, wait=not no_wait,
                                                                 timeout=timeout)
        if as_json:
            _print_json(result)
        return 0

    _run(action)


@app.command()
def down(
    purge: Annotated[bool, typer.Option("--purge", help="Also delete all data (volumes, claims, run folder).")]
    = False,
    config: ConfigOption = None,
    target: TargetOption = None,
    sets: SetOption = None,
    context: ContextOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Stop the stack. Data is kept unless --purge.

    On Kubernetes it deletes only objects carrying this stack's ApplySet label; PersistentVolumeClaims stay unless
    --purge, and a namespace sagaz-lakehouse did not create is never deleted."""

    def action() -> int:
        settings, base_dir = _settings(config, target, None, sets, context, namespace)
        _driver(settings, base_dir).down(purge=purge)
        return 0

    _run(action)


@app.command()
def status(
    config: ConfigOption = None,
    target: TargetOption = None,
    sets: SetOption = None,
    context: ContextOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show each component, whether it is running and healthy, and where to reach it."""

    def action() -> int:
        settings, base_dir = _settings(config, target, None, sets, context, namespace)
        rows = _driver(settings, base_dir).status()
        if as_json:
            _print_json(rows)
        else:
            typer.echo(f"{'COMPONENT':<22} {'STATE':<10} {'ENDPOINT':<26} DETAIL")
            for row in rows:
                typer.echo(f"{row['component']:<22} {row['state']:<10} {row.get('endpoint') or '-':<26} "
                           f"{row.get('detail', '')}".rstrip())
        return 0 if all(r["state"] in ("healthy", "completed") for r in rows) else 1

    _run(action)


@app.command()
def logs(
    component: Annotated[str, typer.Argument(help="Component name, as listed by `status`.")],
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many lines from the end.")] = 50,
    config: ConfigOption = None,
    target: TargetOption = None,
    sets: SetOption = None,
    context: ContextOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Print the last lines of a component's log."""

    def action() -> int:
        settings, base_dir = _settings(config, target, None, sets, context, namespace)
        typer.echo(_driver(settings, base_dir).logs(component, lines))
        return 0

    _run(action)


@app.command()
def diff(
    force_conflicts: ForceConflictsOption = False,
    config: ConfigOption = None,
    target: TargetOption = None,
    profile: ProfileOption = None,
    sets: SetOption = None,
    context: ContextOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show what `up` would change on Kubernetes (server-side dry run against the live objects).

    Exit 0 when nothing would change, 1 when something would (like `kubectl diff`). Secret values are shown as
    digests only."""

    def action() -> int:
        from sagaz_lakehouse.errors import UsageError

        settings, base_dir = _settings(config, target, profile, sets, context, namespace)
        if settings.target != "kubernetes":
            raise UsageError(f"diff compares against a cluster; the target is {settings.target}",
                             "pass --target kubernetes (or set target: kubernetes); for other targets "
                             "`sagaz-lakehouse render --dry-run` lists the files")
        changes = _driver(settings, base_dir, force_conflicts).diff()
        if as_json:
            _print_json(changes)
        else:
            for change in changes:
                typer.echo(change["diff"] or f"{change['action']}: {change['object']}")
            typer.echo(f"{len(changes)} object(s) would change" if changes else "no changes", err=True)
        return 1 if changes else 0

    _run(action)


@app.command("create-tables")
def create_tables(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the equivalent Flink SQL DDL; create nothing.")]
    = False,
    config: ConfigOption = None,
    target: TargetOption = None,
    profile: ProfileOption = None,
    sets: SetOption = None,
    context: ContextOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create the Fluss database and the saga_events table with lake tiering to Iceberg (idempotent)."""

    def action() -> int:
        from sagaz_lakehouse import config as cfg
        from sagaz_lakehouse import tables

        settings, base_dir = _settings(config, target, profile, sets, context, namespace)
        if dry_run:
            typer.echo(tables.flink_sql_ddl(settings))
            return 0
        credentials = cfg.resolve_credentials(settings, base_dir=base_dir)
        with _driver(settings, base_dir).client_endpoints() as endpoints:
            result = tables.create_tables(settings, credentials, endpoints, log=lambda m: typer.echo(m, err=True))
        if as_json:
            _print_json(result)
        return 0

    _run(action)


@app.command()
def doctor(
    quick: Annotated[bool, typer.Option("--quick", help="Skip the end-to-end data path check.")] = False,
    config: ConfigOption = None,
    target: TargetOption = None,
    profile: ProfileOption = None,
    sets: SetOption = None,
    context: ContextOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check every component and prove tiering: a probe event written to Fluss must appear in Iceberg and Trino."""

    def action() -> int:
        from sagaz_lakehouse import config as cfg
        from sagaz_lakehouse import doctor as checks

        settings, base_dir = _settings(config, target, profile, sets, context, namespace)
        credentials = cfg.resolve_credentials(settings, base_dir=base_dir)
        with _driver(settings, base_dir).client_endpoints() as endpoints:
            report = checks.run(settings, credentials, endpoints, quick=quick,
                                progress=None if as_json else lambda m: typer.echo(m, err=True))
        if as_json:
            _print_json(report.as_dict())
        else:
            typer.echo(report.as_text())
        return 0 if report.ok else 1

    _run(action)


def main() -> None:
    try:
        app()
    except SystemExit as exc:
        # click reports its own usage errors with code 2 already; keep that contract for everything else too.
        if exc.code not in (None, 0) and not isinstance(exc.code, int):
            sys.exit(EXIT_USAGE)
        raise
