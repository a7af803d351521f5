"""The one-shot tasks as components: ``create-bucket`` and ``submit-tiering``.

Their implementation is ``sagaz_lakehouse/tasks.py`` (standard library only). The local target runs that file with
the current Python; containers run the very same file, mounted into the ``python`` image. Only the addresses
differ, and those come from the view like every other component's.

``submit-tiering`` in a container network runs in the Flink image instead, with Flink's own client
(``templates/tasks/submit-tiering.sh``: ``flink run --detached``, the same steps as tasks.py): the JobManager then
needs no jar upload in any profile, and the prod profile can switch uploads off on every target.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from sagaz_lakehouse import addresses, artifacts, identities, security, versions
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components import common
from sagaz_lakehouse.components.common import yaml_lines
from sagaz_lakehouse.config import Settings
from sagaz_lakehouse.render import masked_log4j, templates_dir

TASKS_FILE = Path(__file__).resolve().parent.parent / "tasks.py"
MOUNT_DIR = "/opt/sagaz-lakehouse"
ARTIFACTS_DIR = "/artifacts"
TIERING_JOB_NAME = "Fluss Lake Tiering Service - iceberg"  # FlussLakeTieringEntrypoint's job name
TIERING_MAIN_CLASS = "org.apache.fluss.flink.tiering.FlussLakeTieringEntrypoint"
TIERING_JARS = (s.Jars("tiering-job", ARTIFACTS_DIR),)
SUBMIT_SCRIPT = "submit-tiering.sh"  # templates/tasks/: Flink's client in a container of the Flink image
# Flink's client starts two JVMs one after the other (bin/config.sh reads the configuration in one), each with the
# JVM's default heap, a quarter of the container's memory: 128Mi is too small for `flink run`.
SUBMIT_MEMORY = "512Mi"


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
                 depends_on=((s.MINIO, s.Condition.HEALTHY),), start_seconds=120, reaches=((s.MINIO, "s3"),))


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
    if security.fluss_sasl_on(settings):  # FlussLakeTiering hands every --fluss.<key> to its Fluss connections
        args += [arg for key, value in security.fluss_client_options().items() for arg in (f"--fluss.{key}", value)]
    for key, value in common.iceberg_catalog_properties(settings, view).items():
        args += [f"--datalake.iceberg.{key}", value]
    return args


def submit_tiering(settings: Settings, view: s.View) -> s.Component:
    depends = ((s.JOBMANAGER, s.Condition.HEALTHY), (s.TASKMANAGER, s.Condition.HEALTHY),
               (s.TABLET, s.Condition.HEALTHY))
    role = "submits the Fluss lake tiering job (once; skipped when it runs)"
    if view is not s.View.EXTERNAL:
        return _flink_client_task(settings, view, role, depends)
    args = ["--flink", addresses.endpoints(settings, view).flink_rest, "--jar", tiering_jar(),
            "--main-class", TIERING_MAIN_CLASS, "--job-name", TIERING_JOB_NAME,
            "--taskmanagers", str(settings.replicas.flink_taskmanagers), "--",
            *tiering_job_arguments(settings, view)]
    client = None if security.flink_jar_upload_on(settings) else flink_client
    # An external catalog's client credentials reach the job through the task's environment (tasks.py), never its
    # arguments.
    return _task(settings, s.SUBMIT_TIERING, role, args, identities.catalog_credential_environment(settings), client,
                 jars=TIERING_JARS, state_in=s.JOBMANAGER, start_seconds=300, depends_on=depends,
                 reaches=((s.JOBMANAGER, "rest"),))


def _flink_client_task(settings: Settings, view: s.View, role: str,
                       depends: tuple[tuple[str, s.Condition], ...]) -> s.Component:
    """submit-tiering in a container of the Flink image: the script runs `flink` with a client configuration (where
    the JobManager's REST API is, the module opens) over the image's conf/, logging to the console only."""
    from sagaz_lakehouse.components import flink

    script = s.ConfigFile(SUBMIT_SCRIPT, (templates_dir() / "tasks" / SUBMIT_SCRIPT).read_text(),
                          mount=f"{MOUNT_DIR}/{SUBMIT_SCRIPT}", shared=True, native=False)
    client = {"rest.address": s.JOBMANAGER, "rest.port": str(settings.ports.flink_rest),
              "env.java.opts.all": flink.java_options([])}
    args = (addresses.endpoints(settings, view).flink_rest, str(settings.replicas.flink_taskmanagers),
            TIERING_JOB_NAME, TIERING_MAIN_CLASS, tiering_jar(), "--", *tiering_job_arguments(settings, view))

    def setup(at: s.Instance) -> s.Setup:
        def command(ctx: s.NativeContext) -> s.Process:  # never used: the local target submits with tasks.py
            raise NotImplementedError("submit-tiering runs natively from tasks.py")

        return s.Setup(
            # the external catalog's client credentials in the environment (the script hands them to the job)
            container=s.Container(entrypoint=("bash", f"{MOUNT_DIR}/{SUBMIT_SCRIPT}"), args=args,
                                  env=identities.catalog_credential_environment(settings), user=9999,
                                  probe_tool="", scratch=(s.Scratch(s.TMP, "16Mi", used="1Mi"),)),
            native=s.Native("flink", command),
            files=(script,
                   s.ConfigFile("config.yaml", "# Flink's client, rendered by sagaz-lakehouse.\n" + yaml_lines(client),
                                mount=f"{flink.CONF_DIR}/config.yaml", native=False),
                   # bin/flink logs through log4j-cli.properties (a file under log/ in the image): the console here
                   s.ConfigFile("log4j-cli.properties", masked_log4j(), mount=f"{flink.CONF_DIR}/log4j-cli.properties",
                                native=False)))

    # The client runs the job's main(), which needs the Fluss connector (fluss-flink) beside Flink's own lib/, as
    # the JobManager has it (`bin/flink run` with the cluster's distribution, as the local target runs it).
    return s.Component(s.SUBMIT_TIERING, "flink", settings.images.flink, versions.FLINK.version, role, setup,
                       one_shot=True, jars=(*TIERING_JARS, *flink.LIB_JARS), state_in=s.JOBMANAGER, start_seconds=300,
                       depends_on=depends, memory=SUBMIT_MEMORY, reaches=((s.JOBMANAGER, "rest"),))
