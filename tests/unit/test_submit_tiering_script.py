"""templates/tasks/submit-tiering.sh, the containers' tiering submission with Flink's own client, against a STAND-IN
`flink` and `wget` (the real ones run in tests/compose/engine and tests/kubernetes/kubelet): it waits for the
TaskManagers, submits only when no job of that name is active, waits until the job runs, and fails loudly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

SCRIPT = REPO / "templates" / "tasks" / "submit-tiering.sh"
NAME = "Fluss Lake Tiering Service - iceberg"
JOB = "3d96709c4dd821c0a7127cd28d8b78c9"

FLINK = r'''#!{python}
import json, os, sys
with open(os.environ["CALLS"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")
if sys.argv[1] == "list":
    if os.environ.get("LIST_FAILS"):
        print("The program finished with the following exception: connection refused", file=sys.stderr)
        sys.exit(1)
    print("Waiting for response...")
    print("------------------ Running/Restarting Jobs -------------------")
    for line in filter(None, os.environ.get("LISTED", "").split(";")):
        print(line)
    print("--------------------------------------------------------------")
    sys.exit(0)
if sys.argv[1] == "run":
    if os.environ.get("RUN_FAILS"):
        print("org.apache.flink.client.program.ProgramInvocationException: boom", file=sys.stderr)
        sys.exit(1)
    print("Job has been submitted with JobID {job}")
    sys.exit(0)
'''

# The JVM launcher for the credential's path: records its command line, and the argument file's mode and tokens.
JAVA = r'''#!{python}
import json, os, shlex, stat, sys
argfile = sys.argv[1][1:] if len(sys.argv) == 2 and sys.argv[1].startswith("@") else None
record = {"argv": sys.argv[1:], "env": {k: os.environ.get(k) for k in ("FLINK_CONF_DIR", "FLINK_LIB_DIR")}}
if argfile:
    record["mode"] = oct(stat.S_IMODE(os.stat(argfile).st_mode))
    record["tokens"] = shlex.split(open(argfile).read())
with open(os.environ["CALLS"], "a") as log:
    log.write(json.dumps(["java", record]) + "\n")
print("Job has been submitted with JobID {job}")
'''

WGET = r'''#!{python}
import os, sys
url = sys.argv[-1]
if url.endswith("/overview"):
    print('{"taskmanagers":' + os.environ.get("TASKMANAGERS", "1") + ',"slots-total":2}')
elif "/jobs/" in url:
    print('{"jid":"' + url.rsplit("/", 1)[1] + '","name":"x","state":"' + os.environ.get("STATE", "RUNNING") +
          '","vertices":[{"status":"RUNNING"}]}')
else:
    sys.exit(8)
'''


def run(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("flink", FLINK), ("wget", WGET), ("java", JAVA)):
        path = bin_dir / name
        path.write_text(text.replace("{python}", sys.executable).replace("{job}", JOB))
        path.chmod(0o755)
    calls = tmp_path / "calls"
    result = subprocess.run(["bash", str(SCRIPT), "http://flink-jobmanager:8081", "2", NAME, "org.example.Main",
                             "/artifacts/tiering.jar", "--", "--fluss.bootstrap.servers", "fluss-coordinator:9122"],
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls),
                                 "SUBMIT_TIERING_WAIT_SECONDS": "4", "TASKMANAGERS": "2", **env})
    made = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    return result, made


def test_submits_with_flinks_client_and_waits_until_the_job_runs(tmp_path):
    result, calls = run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"tiering job {JOB} submitted with Flink's client, RUNNING"
    assert calls == [["list"], ["run", "--detached", "--class", "org.example.Main", "/artifacts/tiering.jar",
                                "--fluss.bootstrap.servers", "fluss-coordinator:9122"]]


def test_an_active_job_of_that_name_is_left_alone(tmp_path):
    listed = f"06.12.2026 10:00:00 : {JOB} : {NAME} (RUNNING)"
    result, calls = run(tmp_path, LISTED=listed)
    assert result.returncode == 0 and result.stdout.strip() == f"tiering job {JOB} already active, RUNNING"
    assert calls == [["list"]]


def test_a_finished_job_of_that_name_does_not_count(tmp_path):
    result, calls = run(tmp_path, LISTED=f"06.12.2026 10:00:00 : {'0' * 32} : {NAME} (CANCELED)")
    assert result.returncode == 0 and [c[0] for c in calls] == ["list", "run"]


@pytest.mark.parametrize(("env", "says"), [
    ({"TASKMANAGERS": "1"}, "2 TaskManager(s) registered at http://flink-jobmanager:8081: still not ready after 4s"),
    ({"LIST_FAILS": "1"}, "`flink list` failed:\nThe program finished with the following exception"),
    ({"RUN_FAILS": "1"}, "Flink's client failed:\norg.apache.flink.client.program.ProgramInvocationException"),
    ({"STATE": "FAILED"}, f"job {JOB} is FAILED; see the JobManager and TaskManager logs"),
])
def test_every_failure_exits_1_saying_why(tmp_path, env, says):
    result, calls = run(tmp_path, **env)
    assert result.returncode == 1 and says in result.stderr, result.stderr
    if "LIST_FAILS" in env or "TASKMANAGERS" in env:  # never a second copy on a guess
        assert ["run"] not in [c[:1] for c in calls]


def test_a_catalog_credential_reaches_the_client_in_a_0600_file_never_on_a_command_line(tmp_path):
    secret = 'id:s3cr\\et"x'  # a backslash and a quote survive the argument file's escaping
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "config.yaml").write_text("rest.address: flink-jobmanager\n"
                                      "env.java.opts.all: --add-opens=a=ALL --add-exports=b=ALL\n")
    result, calls = run(tmp_path, CATALOG_CREDENTIAL=secret, FLINK_HOME="/opt/flink", FLINK_CONF_DIR=str(conf))
    assert result.returncode == 0, result.stderr
    (_, java), = [c for c in calls if c[0] == "java"]
    assert ["run"] not in [c[:1] for c in calls]  # not through bin/flink, whose java command line shows every argument
    assert secret not in json.dumps(java["argv"]) and java["argv"][0].startswith("@")
    assert java["mode"] == "0o600"
    tokens = java["tokens"]
    assert tokens[tokens.index("org.apache.flink.client.cli.CliFrontend"):] == [
        "org.apache.flink.client.cli.CliFrontend", "run", "--detached", "--class", "org.example.Main",
        "/artifacts/tiering.jar", "--fluss.bootstrap.servers", "fluss-coordinator:9122",
        "--datalake.iceberg.credential", secret]
    assert tokens[:2] == ["--add-opens=a=ALL", "--add-exports=b=ALL"]  # what bin/flink would pass
    assert f"-Dlog4j.configurationFile=file:{conf}/log4j-cli.properties" in tokens  # the masked console logging
    assert tokens[tokens.index("-cp") + 1] == "/opt/flink/lib/*"
    assert java["env"] == {"FLINK_CONF_DIR": str(conf), "FLINK_LIB_DIR": "/opt/flink/lib"}
    assert not Path(java["argv"][0][1:]).parent.exists()  # its folder is gone afterwards

