"""The one-shot tasks file: standalone (standard library only), correct S3 request signing, clear failures.

Its work against real servers (MinIO, Flink) is proven by the end-to-end tests, where every target runs it."""

from __future__ import annotations

import ast
import datetime
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sagaz_lakehouse import tasks
from sagaz_lakehouse.components.tasks import TASKS_FILE


def test_imports_only_the_standard_library():
    """The file runs as it is in the python image: nothing from sagaz_lakehouse or PyPI may creep in."""
    tree = ast.parse(TASKS_FILE.read_text())
    modules = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}
    assert modules <= set(sys.stdlib_module_names) | {"__future__"}, modules - set(sys.stdlib_module_names)


def test_signature_matches_the_aws_documentation_example():
    """docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html, "Example: GET Object"."""
    headers = tasks.s3_headers("GET", "https://examplebucket.s3.amazonaws.com/test.txt", "us-east-1",
                               "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", b"",
                               now=datetime.datetime(2013, 5, 24, tzinfo=datetime.UTC), extra={"Range": "bytes=0-9"})
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")


def test_signature_with_a_query_string_matches_the_aws_documentation_example():
    """The same page, "Example: GET Bucket (List Objects)": the canonical query string is sorted and encoded."""
    headers = tasks.s3_headers("GET", "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J", "us-east-1",
                               "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", b"",
                               now=datetime.datetime(2013, 5, 24, tzinfo=datetime.UTC))
    assert headers["Authorization"].endswith(
        "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")


# ----------------------------------------------------------------------------------- object-store identities


def test_aes_gcm_matches_the_cryptography_package():
    """The task's plain-Python AES-256-GCM against OpenSSL's (through `cryptography`), on random inputs of every
    length class: empty, partial and whole blocks, with and without associated data."""
    import random

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    rng = random.Random(15)  # noqa: S311 - reproducible test inputs, not keys anyone relies on
    for length in (0, 1, 15, 16, 17, 31, 32, 33, 100):
        for associated_length in (0, 1, 17):
            key, nonce = rng.randbytes(32), rng.randbytes(12)
            data, associated = rng.randbytes(length), rng.randbytes(associated_length)
            assert tasks.aes_gcm_seal(key, nonce, data, associated) == AESGCM(key).encrypt(
                nonce, data, associated or None), (length, associated_length)


def test_madmin_encrypt_is_the_sio_stream_madmin_decrypts():
    """salt | 0x02 | nonce | one final sio-go fragment, opened here the way madmin's DecryptData does: PBKDF2-SHA256
    key, nonce || LE32(1), associated data 0x80 || the empty seal's tag at sequence number 0."""
    import hashlib

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    body = b'{"secretKey":"s","status":"enabled"}'
    sealed = tasks.madmin_encrypt("root-secret", body)
    salt, algorithm, nonce, fragment = sealed[:32], sealed[32], sealed[33:41], sealed[41:]
    assert algorithm == 0x02 and len(fragment) == len(body) + 16
    key = hashlib.pbkdf2_hmac("sha256", b"root-secret", salt, 8192, 32)
    header_tag = AESGCM(key).encrypt(nonce + (0).to_bytes(4, "little"), b"", None)
    assert AESGCM(key).decrypt(nonce + (1).to_bytes(4, "little"), fragment, b"\x80" + header_tag) == body
    assert tasks.madmin_encrypt("root-secret", body) != sealed  # a fresh salt and nonce every time


def test_role_policy_grants_only_its_prefixes():
    policy = tasks.role_policy("lake", [("fluss-remote", "rw"), ("warehouse", "r")])
    statements = {tuple(st["Resource"]): st["Action"] for st in policy["Statement"]}
    assert statements[("arn:aws:s3:::lake",)] == list(tasks.BUCKET_ACTIONS)
    # the prefix's own name too (S3A's HEAD of each parent folder)
    assert "s3:PutObject" in statements[("arn:aws:s3:::lake/fluss-remote", "arn:aws:s3:::lake/fluss-remote/*")]
    assert statements[("arn:aws:s3:::lake/warehouse", "arn:aws:s3:::lake/warehouse/*")] == ["s3:GetObject"]
    assert len(statements) == 3


def test_grants_parse_and_a_bad_one_is_fatal():
    assert tasks.parse_grants(["fluss=fluss-remote:rw", "fluss=warehouse:r", "reader=warehouse:r"]) == {
        "fluss": [("fluss-remote", "rw"), ("warehouse", "r")], "reader": [("warehouse", "r")]}
    with pytest.raises(tasks.Fatal, match="expected ROLE=PREFIX:r or ROLE=PREFIX:rw"):
        tasks.parse_grants(["fluss=fluss-remote:write"])


def test_identity_secrets_are_stable_and_differ_by_role_and_root():
    first = tasks.identity_secret("root-a", "fluss")
    assert first == tasks.identity_secret("root-a", "fluss") and len(first) == 40
    assert first not in {tasks.identity_secret("root-a", "lake"), tasks.identity_secret("root-b", "fluss")}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TASKS_FILE), *args], capture_output=True, text=True, timeout=60,
                          env=env or {})


def test_missing_credentials_fail_in_one_line():
    result = run("create-bucket", "--endpoint", "http://127.0.0.1:9", "--bucket", "b", "--region", "us-east-1")
    assert result.returncode == 1
    assert result.stderr.strip() == "create-bucket: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set"


def test_bad_arguments_are_usage_errors():
    result = run("submit-tiering", "--flink", "http://127.0.0.1:9")
    assert result.returncode == 2 and "--jar" in result.stderr


def fake_java(tmp_path, output: str, code: int = 0):
    """A stand-in for `java` that records its arguments and environment and prints what Flink's client would."""
    script = tmp_path / "java"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {tmp_path}/argv\n"
                      f"case \"$1\" in @*) cat \"${{1#@}}\" > {tmp_path}/argfile;; esac\n"
                      f"echo \"$FLINK_CONF_DIR\" > {tmp_path}/conf\necho '{output}'\nexit {code}\n")
    script.chmod(0o755)
    return str(script)


def test_flink_client_submits_detached_and_returns_the_job_id(tmp_path):
    """The command line `bin/flink run --detached` amounts to; the job id comes from the client's own message."""
    job_id = "5d3a0f6bb1c0e5a6c0d1e2f3a4b5c6d7"
    client = tasks.FlinkClient(fake_java(tmp_path, f"Job has been submitted with JobID {job_id}"), "/opt/flink",
                               "/conf/jm", ["--add-opens=java.base/java.lang=ALL-UNNAMED"])
    secret = 'client:s3cret "quoted" \\'
    assert client.run_detached(tmp_path / "tiering.jar", "org.example.Main", ["--a", "b", "--c", secret]) == job_id
    # The process listing shows only the argument file (the launcher's @argfiles); the file is gone afterwards.
    (only,) = (tmp_path / "argv").read_text().split("\n")[:-1]
    assert only.startswith("@") and not Path(only[1:]).exists()
    argv = [json.loads(line) for line in (tmp_path / "argfile").read_text().splitlines()]  # "..." with \\ and \"
    assert argv == ["--add-opens=java.base/java.lang=ALL-UNNAMED", "-cp", "/opt/flink/lib/*",
                    "org.apache.flink.client.cli.CliFrontend", "run", "--detached", "--class", "org.example.Main",
                    str(tmp_path / "tiering.jar"), "--a", "b", "--c", secret]
    assert (tmp_path / "conf").read_text().strip() == "/conf/jm"


def test_flink_client_without_a_job_id_is_fatal_with_its_output(tmp_path):
    client = tasks.FlinkClient(fake_java(tmp_path, "Could not connect to 127.0.0.1:8081", 1), "/opt/flink", "/c", [])
    with pytest.raises(tasks.Fatal, match=r"exited 1 without a job id(.|\n)*Could not connect"):
        client.run_detached(tmp_path / "tiering.jar", "Main", [])
