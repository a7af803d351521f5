"""Flink REST API: the tiering job's state, and submitting it when it is not running.

Submission goes through ``/jars/upload`` and ``/jars/<id>/run`` so no ``flink`` CLI (and no Flink distribution on
the client side) is needed.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from sagaz_lakehouse.errors import LakehouseError
from sagaz_lakehouse.wiring import TIERING_JOB_NAME, TIERING_MAIN_CLASS

ACTIVE_STATES = ("RUNNING", "CREATED", "INITIALIZING", "RESTARTING", "RECONCILING")


def _request(url: str, data: bytes | None = None, content_type: str = "", timeout: float = 60) -> Any:
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 - our Flink endpoint
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - our Flink endpoint
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:2000]
        raise LakehouseError(f"Flink REST {url} answered HTTP {exc.code}: {detail}",
                             "see `sagaz-lakehouse logs flink-jobmanager`") from exc


def jobs(flink_rest: str) -> list[dict[str, Any]]:
    return _request(f"{flink_rest}/jobs/overview").get("jobs", [])


def active_tiering_job(flink_rest: str) -> dict[str, Any] | None:
    for job in jobs(flink_rest):
        if job.get("name") == TIERING_JOB_NAME and job.get("state") in ACTIVE_STATES:
            return job
    return None


def submit_jar(flink_rest: str, jar: Path, entry_class: str, args: list[str]) -> str:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"jarfile\"; filename=\"{jar.name}\"\r\n"
            "Content-Type: application/x-java-archive\r\n\r\n").encode() + jar.read_bytes() + \
        f"\r\n--{boundary}--\r\n".encode()
    uploaded = _request(f"{flink_rest}/jars/upload", body, f"multipart/form-data; boundary={boundary}")
    jar_id = uploaded["filename"].rsplit("/", 1)[1]
    run = {"entryClass": entry_class, "programArgsList": args}
    return _request(f"{flink_rest}/jars/{jar_id}/run", json.dumps(run).encode(), "application/json",
                    timeout=180)["jobid"]


def ensure_tiering_job(flink_rest: str, jar: Path, args: list[str], timeout: float = 120) -> tuple[str, bool]:
    """Submit the tiering job unless one is active; wait until it is RUNNING. Returns (job id, submitted)."""
    existing = active_tiering_job(flink_rest)
    submitted = existing is None
    job_id = submit_jar(flink_rest, jar, TIERING_MAIN_CLASS, args) if submitted else existing["jid"]
    deadline = time.monotonic() + timeout
    while True:
        state = next((j.get("state") for j in jobs(flink_rest) if j.get("jid") == job_id), None)
        if state == "RUNNING":
            return job_id, submitted
        if state in ("FAILED", "CANCELED", "FINISHED") or time.monotonic() > deadline:
            raise LakehouseError(f"tiering job {job_id} is {state}, not RUNNING",
                                 "see `sagaz-lakehouse logs flink-jobmanager` and `logs flink-taskmanager-0`")
        time.sleep(1)
