"""The one-shot tasks file: standalone (standard library only), correct S3 request signing, clear failures.

Its work against real servers (MinIO, Flink) is proven by the end-to-end tests, where every target runs it."""

from __future__ import annotations

import ast
import datetime
import subprocess
import sys

import pytest

from sagaz_lakehouse import tasks
from sagaz_lakehouse.components.tasks import TASKS_FILE

pytestmark = pytest.mark.unit


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
