"""The one-shot tasks as components: ``create-bucket`` and ``submit-tiering``.

Their implementation is ``sagaz_lakehouse/tasks.py`` (standard library only). The local target runs that file with
the current Python; containers run the very same file, mounted into the ``python`` image. Only the addresses
differ, and those come from the view like every other component's.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from sagaz_lakehouse import addresses, artifacts, identities, security, versions
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components import common
from sagaz_lakehouse.config import Settings

TASKS_FILE = Path(__file__).resolve().parent.parent / "tasks.py"
MOUNT_DIR = "/opt/sagaz-lakehouse"
ARTIFACTS_DIR = "/artifacts"
TIERING_JOB_NAME = "Fluss Lake Tiering Service - iceberg"  # FlussLakeTieringEntrypoint's job name
TIERING_MAIN_CLASS = "org.apache.fluss.flink.tiering.FlussLakeTieringEntrypoint"
TIERING_JARS = (s.Jars("tiering-job", ARTIFACTS_DIR),)


NativeOptions = Callable[[s.NativeContext, s.Instance], list[str]]


def _task(settings: Settings, name: str, role: str, arguments: list[str], env: dict[str, str],
          native_options: NativeOptions | None = None, **fields: object) -> s.Component:
    # Natively the process runs the package's own file; containers mount one shared copy of it.
    script = s.ConfigFile("tasks.py", TASKS_FILE.read_text(), mount=f"{MOUNT_DIR}/tasks.py", shared=True, native=False)

    def setup(at: s.Instance) -> s.Setup:
        def command(ctx: s.NativeContext) -> s.Process:
            jars = str(ctx.home)
            extra = native_options(ctx, at) if native_options else []
            return s.Process([sys.executable, str(TASKS_FILE), f"--label={ctx.marker}", name, *extra,
                            *(a.replace(ARTIFACTS_DIR, jars) for a in arguments)], env=env)

        return s.Setup(container=s.Container(entrypoint=("python3", f"{MOUNT_DIR}/tasks.py", name),
                                         args=tuple(arguments), env=env, user=1000, probe_tool=""),
                     native=s.Native("python", command), files=(script,))

    return s.Component(name, "sagaz-lakehouse", settings.images.python, versions.PYTHON.version, role, setup,
                     one_shot=True, **fields)  # type: ignore[arg-type]


def create_bucket(settings: Settings, view: s.View) -> s.Component | None:
    if settings.external_store:  # the user made the bucket and the identities; `up` probes them instead
        return None
    grants = identities.create_bucket_grants(settings)
    args = ["--endpoint", addresses.endpoints(settings, view).s3, "--bucket", settings.lake.bucket,
            "--region", settings.s3_region, *grants]
    what = ("creates the lake bucket and one object-store identity per role (root keys stay here)" if grants else
            "creates the lake bucket (once; skipped when it exists)")
    return _task(settings, s.CREATE_BUCKET, what, args,
                 {"AWS_ACCESS_KEY_ID": identities.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": identities.SECRET_KEY},
                 depends_on=((s.MINIO, s.Condition.HEALTHY),), start_seconds=120)


def tiering_jar() -> str:
    return f"{ARTIFACTS_DIR}/{artifacts.group('tiering-job')[0].name}"


def flink_client(ctx: s.NativeContext, at: s.Instance) -> list[str]:
    """Where the JobManager takes no jar uploads (prod, local target): submit with Flink's own client, from the
    JobManager's distribution and with its config.yaml (rest.address, rest.port), as `bin/flink run` would."""
    from sagaz_lakehouse.components.flink import JAVA_OPENS  # the reflective access Flink needs on Java 17

    java, home = ctx.peers[s.JOBMANAGER]
    conf = Path(at.conf).parent / s.JOBMANAGER
    options = [*JAVA_OPENS, f"-Dlog4j.configurationFile=file:{conf}/log4j-console.properties"]
    return ["--flink-client-java", str(java), "--flink-client-home", str(home), "--flink-client-conf", str(conf),
            *(f"--flink-client-jvm-option={option}" for option in options)]


def tiering_job_arguments(settings: Settings, view: s.View) -> list[str]:
    """Program arguments of FlussLakeTieringEntrypoint: the same ``datalake.*`` options as the servers.

    Credentials are not among them: the TaskManagers get ``aws_environment`` instead."""
    args = ["--fluss.bootstrap.servers", addresses.endpoints(settings, view).fluss_bootstrap,
            # TieringSourceOptions (fluss-flink-common): read from the "fluss." arguments by FlussLakeTiering.
            "--fluss.tiering.poll.table.interval", settings.tiering_poll,
            "--fluss.client.connect-timeout", addresses.FLUSS_CONNECT_TIMEOUT,
            "--datalake.format", "iceberg"]
    if security.fluss_sasl_on(settings, view):  # FlussLakeTiering hands every --fluss.<key> to its Fluss connections
        args += [arg for key, value in security.fluss_client_options().items() for arg in (f"--fluss.{key}", value)]
    for key, value in common.iceberg_catalog_properties(settings, view).items():
        args += [f"--datalake.iceberg.{key}", value]
    return args


def submit_tiering(settings: Settings, view: s.View) -> s.Component:
    args = ["--flink", addresses.endpoints(settings, view).flink_rest, "--jar", tiering_jar(),
            "--main-class", TIERING_MAIN_CLASS, "--job-name", TIERING_JOB_NAME,
            "--taskmanagers", str(settings.replicas.flink_taskmanagers), "--",
            *tiering_job_arguments(settings, view)]
    client = None if security.flink_jar_upload_on(settings, view) else flink_client
    return _task(settings, s.SUBMIT_TIERING, "submits the Fluss lake tiering job (once; skipped when it runs)",
                 args, identities.catalog_credential_environment(settings), client,
                 jars=TIERING_JARS, state_in=s.JOBMANAGER, start_seconds=300,
                 depends_on=((s.JOBMANAGER, s.Condition.HEALTHY), (s.TASKMANAGER, s.Condition.HEALTHY),
                             (s.TABLET, s.Condition.HEALTHY)))
