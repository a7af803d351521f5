"""One-shot tasks the local target runs as supervised processes (the container targets run the same steps
as one-shot services/Jobs): ``python -m sagaz_lakehouse.tasks create-bucket|submit-tiering RUN_DIR``.

Credentials arrive in the environment, never on the command line.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def create_bucket(endpoint: str, bucket: str, region: str) -> None:
    """Create the lake bucket if it is missing (idempotent)."""
    from pyarrow import fs

    host = endpoint.split("://", 1)[-1]
    s3 = fs.S3FileSystem(access_key=os.environ["AWS_ACCESS_KEY_ID"], secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                         endpoint_override=host, scheme="http", region=region, force_virtual_addressing=False,
                         allow_bucket_creation=True)
    if s3.get_file_info(bucket).type == fs.FileType.NotFound:
        s3.create_dir(bucket)
        print(f"created bucket {bucket}")
    else:
        print(f"bucket {bucket} exists")


def submit_tiering(flink_rest: str, jar: Path, args: list[str], taskmanagers: int) -> None:
    from sagaz_lakehouse import flink
    from sagaz_lakehouse.clients import http_json

    deadline = time.monotonic() + 120
    while http_json(f"{flink_rest}/overview").get("taskmanagers", 0) < taskmanagers:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {http_json(f'{flink_rest}/overview').get('taskmanagers')} of {taskmanagers} "
                             "TaskManagers registered")
        time.sleep(1)
    job_id, submitted = flink.ensure_tiering_job(flink_rest, jar, args)
    print(f"tiering job {job_id} {'submitted and ' if submitted else 'already '}RUNNING")


def main(argv: list[str]) -> None:
    from sagaz_lakehouse import config, wiring
    from sagaz_lakehouse.stack import View

    task, run_dir = argv[0], Path(argv[1])
    settings = config.load(run_dir / "settings.yaml", environ={})
    endpoints = wiring.endpoints(settings, View.EXTERNAL)
    if task == "create-bucket":
        create_bucket(endpoints.s3, settings.lake.bucket, settings.lake.region)
    elif task == "submit-tiering":
        submit_tiering(endpoints.flink_rest, Path(argv[2]), wiring.tiering_job_arguments(settings),
                       settings.replicas.flink_taskmanagers)
    else:
        raise SystemExit(f"unknown task {task}")


if __name__ == "__main__":
    main(sys.argv[1:])
