"""The stack's one-shot tasks, one implementation for every target: create the lake bucket, submit the tiering job.

This file uses only the Python standard library and imports nothing from sagaz_lakehouse, because it runs as it is
in three places: as a native process on the local target (``python .../tasks.py``), and mounted into a
``python`` container on compose and Kubernetes. Every input arrives as an argument; credentials arrive in the
environment (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``), never on the command line. Both tasks are
idempotent and wait (bounded) for the service they talk to, so they can start before it is ready.

    python3 tasks.py create-bucket --endpoint URL --bucket NAME --region REGION [--grant ROLE=PREFIX:rw ...]
    python3 tasks.py submit-tiering --flink URL --jar PATH --main-class CLASS --job-name NAME --taskmanagers N -- ARGS

``--grant`` makes ``create-bucket`` also create one object-store identity per role (prod), with MinIO's admin API.
Where the JobManager takes no jar uploads (``web.submit.enable: false``), ``--flink-client-java/-home/-conf`` make
``submit-tiering`` run Flink's own client (``CliFrontend run --detached``, what ``bin/flink run`` starts) instead.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

# Flink job states (JobStatus) in which a job counts as present: a second copy must not be submitted.
ACTIVE_STATES = ("CREATED", "INITIALIZING", "RUNNING", "RESTARTING", "RECONCILING")
WAIT_SECONDS = 300


class TaskError(Exception):
    """A task failed in a way worth one line on stderr and exit code 1."""


class Fatal(TaskError):
    """A failure that waiting longer cannot fix."""


# ----------------------------------------------------------------------------------------------------- HTTP


def http_request(url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None,
                 timeout: float = 60) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the stack's own endpoints
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _json(url: str, method: str = "GET", body: bytes | None = None, content_type: str = "",
          timeout: float = 60) -> Any:
    status, data = http_request(url, method, body, {"Content-Type": content_type} if content_type else {}, timeout)
    if status >= 300:
        raise TaskError(f"{method} {url} answered HTTP {status}: {data.decode(errors='replace')[:1000]}")
    return json.loads(data or b"null")


def _wait_for(what: str, attempt: Any, deadline: float) -> Any:
    """Call ``attempt`` until it returns something truthy or the deadline passes (connection errors retried)."""
    last = "no answer"
    while True:
        try:
            result = attempt()
            if result:
                return result
        except Fatal:
            raise
        except (OSError, TaskError) as exc:  # refused while the service starts
            last = str(exc)
        if time.monotonic() > deadline:
            raise TaskError(f"{what}: still not ready after {WAIT_SECONDS}s ({last})")
        time.sleep(2)


# ------------------------------------------------------------------------------------------------ S3 bucket


def _sign(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _uri_encode(text: str) -> str:
    return urllib.parse.quote(text, safe="-_.~")


def s3_headers(method: str, url: str, region: str, access_key: str, secret_key: str, body: bytes,
               now: datetime.datetime | None = None, extra: dict[str, str] | None = None,
               service: str = "s3") -> dict[str, str]:
    """AWS Signature Version 4 headers for one path-style S3 request (or, with ``service="sts"``, an STS call);
    ``extra`` headers are signed too."""
    now = now or datetime.datetime.now(datetime.UTC)
    parsed = urllib.parse.urlsplit(url)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(body).hexdigest()
    headers = {"host": parsed.netloc, "x-amz-content-sha256": payload, "x-amz-date": amz_date,
               **{k.lower(): v.strip() for k, v in (extra or {}).items()}}
    signed = ";".join(sorted(headers))
    query = "&".join(f"{_uri_encode(k)}={_uri_encode(v)}"
                     for k, v in sorted(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)))
    canonical = "\n".join([method, urllib.parse.quote(parsed.path or "/"), query,
                           *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed, payload])
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _sign(_sign(_sign(_sign(f"AWS4{secret_key}".encode(), day), region), service), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, "
                                f"Signature={signature}")
    return headers


def create_bucket(endpoint: str, bucket: str, region: str, access_key: str, secret_key: str,
                  deadline: float) -> str:
    """Create ``bucket`` unless it exists. Returns "created" or "exists"."""
    url = f"{endpoint.rstrip('/')}/{bucket}"

    def call(method: str, body: bytes = b"") -> tuple[int, bytes]:
        return http_request(url, method, body or None, s3_headers(method, url, region, access_key, secret_key, body))

    status, _ = _wait_for(f"object store at {endpoint}", lambda: call("HEAD"), deadline)
    if status == 200:
        return "exists"
    if status in (401, 403):
        raise TaskError(f"the object store at {endpoint} refused the credentials (HTTP {status})")
    body = b"" if region == "us-east-1" else (
        "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>"
        f"{region}</LocationConstraint></CreateBucketConfiguration>").encode()
    status, answer = call("PUT", body)
    if status == 200:
        return "created"
    if status == 409 and b"BucketAlreadyOwnedByYou" in answer:
        return "exists"  # created concurrently by another run of this task
    raise TaskError(f"creating bucket {bucket} failed: HTTP {status} {answer.decode(errors='replace')[:500]}")


# ----------------------------------------------------------------------------------- object-store identities
# One MinIO user per role, each with a policy that reaches only its own prefixes of the lake bucket (prod). The
# secrets are derived from the root secret (identity_secret), so the package that renders the components and this
# task agree on them without a second secret to store. Listing is bucket-wide: object names, never contents.

IDENTITY_PREFIX = "sagaz-"  # a role's access key is this plus the role's name
POLICY_PREFIX = "sagaz-lakehouse-"
READ_ACTIONS = ("s3:GetObject",)
WRITE_ACTIONS = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                 "s3:ListMultipartUploadParts")
BUCKET_ACTIONS = ("s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads")


def identity_secret(root_secret: str, role: str) -> str:
    """The secret key of ``role``'s identity: an HMAC of the root secret, so it is stable and needs no storage."""
    digest = hmac.new(root_secret.encode(), f"sagaz-lakehouse object-store identity {role}".encode(),
                      hashlib.sha256).hexdigest()
    return digest[:40]


def role_policy(bucket: str, grants: list[tuple[str, str]]) -> dict[str, Any]:
    """An IAM policy for ``grants``, each (prefix, "r" or "rw"), in ``bucket``."""
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Action": list(BUCKET_ACTIONS), "Resource": [f"arn:aws:s3:::{bucket}"]}]
    for prefix, mode in grants:
        actions = WRITE_ACTIONS if mode == "rw" else READ_ACTIONS
        # The prefix's own name too: Hadoop's S3A (Fluss's S3 file system) makes a folder by asking for each parent
        # with a HEAD on its name without a slash (`fluss-remote`), and a 403 there fails the whole call: the Fluss
        # coordinator then could not write its lake offsets file, and tiering stalled (compose, prod).
        name = prefix.strip("/")
        statements.append({"Effect": "Allow", "Action": list(actions),
                           "Resource": [f"arn:aws:s3:::{bucket}/{name}", f"arn:aws:s3:::{bucket}/{name}/*"]})
    return {"Version": "2012-10-17", "Statement": statements}


def parse_grants(specs: list[str]) -> dict[str, list[tuple[str, str]]]:
    """``ROLE=PREFIX:MODE`` arguments, grouped by role."""
    grants: dict[str, list[tuple[str, str]]] = {}
    for spec in specs:
        match = re.fullmatch(r"([a-z][a-z0-9-]*)=([A-Za-z0-9._/-]+):(r|rw)", spec)
        if not match:
            raise Fatal(f"--grant {spec!r}: expected ROLE=PREFIX:r or ROLE=PREFIX:rw")
        grants.setdefault(match[1], []).append((match[2], match[3]))
    return grants


def ensure_identities(endpoint: str, bucket: str, region: str, access_key: str, secret_key: str,
                      grants: dict[str, list[tuple[str, str]]]) -> list[str]:
    """Create or update each role's policy and user, and attach the one to the other (MinIO admin API v3)."""
    admin = MinioAdmin(endpoint, region, access_key, secret_key)
    done = []
    for role, role_grants in sorted(grants.items()):
        user, policy = IDENTITY_PREFIX + role, POLICY_PREFIX + role
        admin.call("PUT", "add-canned-policy", {"name": policy},
                   json.dumps(role_policy(bucket, role_grants)).encode())
        secret = identity_secret(secret_key, role)
        admin.call("PUT", "add-user", {"accessKey": user},
                   madmin_encrypt(secret_key, json.dumps({"secretKey": secret, "status": "enabled"}).encode()))
        admin.call("PUT", "set-user-or-group-policy",
                   {"policyName": policy, "userOrGroup": user, "isGroup": "false"}, b"")
        done.append(f"{user} ({', '.join(f'{p}:{m}' for p, m in role_grants)})")
    return done


class MinioAdmin:
    """MinIO's admin API (``/minio/admin/v3``), signed like S3 requests with the root credentials."""

    def __init__(self, endpoint: str, region: str, access_key: str, secret_key: str) -> None:
        self.endpoint, self.region = endpoint.rstrip("/"), region
        self.access_key, self.secret_key = access_key, secret_key

    def call(self, method: str, action: str, query: dict[str, str], body: bytes) -> bytes:
        url = f"{self.endpoint}/minio/admin/v3/{action}?{urllib.parse.urlencode(sorted(query.items()))}"
        headers = s3_headers(method, url, self.region, self.access_key, self.secret_key, body)
        status, answer = http_request(url, method, body, headers)
        if status != 200:
            raise Fatal(f"MinIO admin {action} {query} answered HTTP {status}: "
                        f"{answer.decode(errors='replace')[:300]}")
        return answer


# madmin's EncryptData format with its PBKDF2 variant (madmin-go v3 encrypt.go, id 0x02, which MinIO's DecryptData
# accepts whatever its FIPS mode): salt(32) | 0x02 | nonce(8) | one sio-go stream fragment (secure-io/sio-go
# v0.3.1: AES-256-GCM, the final fragment sealed with sequence number 1 and associated data 0x80 || the tag of an
# empty seal at sequence number 0). AES and GCM below are FIPS-197 and NIST SP 800-38D in plain Python: the
# task runs in a bare Python image, and the bodies are a few dozen bytes.
MADMIN_PBKDF2_AES_GCM = 0x02
MADMIN_PBKDF2_ROUNDS = 8192


def madmin_encrypt(password: str, data: bytes, salt: bytes | None = None, nonce: bytes | None = None) -> bytes:
    salt = salt if salt is not None else os.urandom(32)
    nonce = nonce if nonce is not None else os.urandom(8)
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, MADMIN_PBKDF2_ROUNDS, 32)
    header_tag = aes_gcm_seal(key, nonce + (0).to_bytes(4, "little"), b"", b"")
    sealed = aes_gcm_seal(key, nonce + (1).to_bytes(4, "little"), data, b"\x80" + header_tag)
    return salt + bytes([MADMIN_PBKDF2_AES_GCM]) + nonce + sealed


def _aes_sbox() -> list[int]:
    sbox, p, q = [0] * 256, 1, 1
    while True:  # p runs through GF(2^8)* multiplying by 3, q dividing by 3: q is p's inverse
        p = (p ^ (p << 1) ^ (0x1B if p & 0x80 else 0)) & 0xFF
        q ^= q << 1
        q ^= q << 2
        q ^= q << 4
        q &= 0xFF
        q ^= 0x09 if q & 0x80 else 0
        rotated = [((q << n) | (q >> (8 - n))) & 0xFF for n in range(1, 5)]
        sbox[p] = q ^ rotated[0] ^ rotated[1] ^ rotated[2] ^ rotated[3] ^ 0x63
        if p == 1:
            break
    sbox[0] = 0x63
    return sbox


AES_SBOX = _aes_sbox()


def _xtime(b: int) -> int:
    return ((b << 1) ^ 0x1B) & 0xFF if b & 0x80 else b << 1


def _aes256_round_keys(key: bytes) -> list[list[int]]:
    words = [list(key[i:i + 4]) for i in range(0, 32, 4)]
    rcon = 1
    for i in range(8, 60):
        word = list(words[i - 1])
        if i % 8 == 0:
            word = [AES_SBOX[b] for b in word[1:] + word[:1]]
            word[0] ^= rcon
            rcon = _xtime(rcon)
        elif i % 8 == 4:
            word = [AES_SBOX[b] for b in word]
        words.append([a ^ b for a, b in zip(words[i - 8], word, strict=True)])
    return [[b for word in words[r * 4:r * 4 + 4] for b in word] for r in range(15)]


def _aes_encrypt_block(round_keys: list[list[int]], block: bytes) -> bytes:
    state = [b ^ k for b, k in zip(block, round_keys[0], strict=True)]
    for rnd in range(1, 15):
        state = [AES_SBOX[b] for b in state]
        state = [state[(i + 4 * (i % 4)) % 16] for i in range(16)]  # ShiftRows (column-major state)
        if rnd < 14:
            mixed = []
            for c in range(4):
                a = state[4 * c:4 * c + 4]
                total = a[0] ^ a[1] ^ a[2] ^ a[3]
                mixed += [a[i] ^ total ^ _xtime(a[i] ^ a[(i + 1) % 4]) for i in range(4)]
            state = mixed
        state = [b ^ k for b, k in zip(state, round_keys[rnd], strict=True)]
    return bytes(state)


def _gf128_multiply(x: int, y: int) -> int:
    z = 0
    for bit in range(127, -1, -1):
        if (x >> bit) & 1:
            z ^= y
        y = (y >> 1) ^ (0xE1 << 120) if y & 1 else y >> 1
    return z


def _ghash(h: int, data: bytes) -> int:
    y = 0
    for i in range(0, len(data), 16):
        y = _gf128_multiply(y ^ int.from_bytes(data[i:i + 16].ljust(16, b"\0"), "big"), h)
    return y


def aes_gcm_seal(key: bytes, nonce: bytes, plaintext: bytes, associated: bytes) -> bytes:
    """AES-256-GCM with a 12-byte nonce: ciphertext followed by the 16-byte tag."""
    round_keys = _aes256_round_keys(key)
    h = int.from_bytes(_aes_encrypt_block(round_keys, bytes(16)), "big")
    counter = int.from_bytes(nonce + b"\0\0\0\1", "big")
    out = bytearray()
    for i in range(0, len(plaintext), 16):
        counter = (counter & ~0xFFFFFFFF) | ((counter + 1) & 0xFFFFFFFF)
        stream = _aes_encrypt_block(round_keys, counter.to_bytes(16, "big"))
        out += bytes(a ^ b for a, b in zip(plaintext[i:i + 16], stream, strict=False))

    def padded(data: bytes) -> bytes:
        return data + bytes(-len(data) % 16)

    lengths = (8 * len(associated)).to_bytes(8, "big") + (8 * len(out)).to_bytes(8, "big")
    s = _ghash(h, padded(associated) + padded(bytes(out)) + lengths)
    first = _aes_encrypt_block(round_keys, nonce + b"\0\0\0\1")
    return bytes(out) + (s ^ int.from_bytes(first, "big")).to_bytes(16, "big")


# ------------------------------------------------------------------------------------------- tiering job


def jobs(flink: str) -> list[dict[str, Any]]:
    return list(_json(f"{flink}/jobs/overview", timeout=15).get("jobs", []))


def active_job(flink: str, name: str) -> dict[str, Any] | None:
    return next((j for j in jobs(flink) if j.get("name") == name and j.get("state") in ACTIVE_STATES), None)


def registered_taskmanagers(flink: str) -> int:
    return len(_json(f"{flink}/taskmanagers", timeout=15).get("taskmanagers", []))


def upload_jar(flink: str, jar: Path) -> str:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"jarfile\"; filename=\"{jar.name}\"\r\n"
            "Content-Type: application/x-java-archive\r\n\r\n").encode() + jar.read_bytes() + \
        f"\r\n--{boundary}--\r\n".encode()
    uploaded = _json(f"{flink}/jars/upload", "POST", body, f"multipart/form-data; boundary={boundary}")
    return str(uploaded["filename"]).rsplit("/", 1)[1]


def run_uploaded_jar(flink: str, jar: Path, main_class: str, args: list[str]) -> str:
    """Upload the jar and run it through the REST API (/jars); returns the job id."""
    jar_id = upload_jar(flink, jar)
    run = {"entryClass": main_class, "programArgsList": args}
    return str(_json(f"{flink}/jars/{jar_id}/run", "POST", json.dumps(run).encode(), "application/json",
                     timeout=180)["jobid"])


class FlinkClient:
    """Flink's command-line client as ``bin/flink`` starts it: CliFrontend from the distribution's lib/, reading
    ``config.yaml`` in ``conf`` (where rest.address and rest.port name the cluster)."""

    def __init__(self, java: str, home: str, conf: str, jvm_options: list[str]) -> None:
        self.java, self.home, self.conf, self.jvm_options = java, Path(home), conf, jvm_options

    def run_detached(self, jar: Path, main_class: str, args: list[str]) -> str:
        # Everything after `java` goes in an argument file (the launcher's @argfiles, JDK 9+): the job's arguments
        # may hold a catalog credential, which a process listing would show. Quoted tokens, '\\' and '"' escaped.
        tokens = [*self.jvm_options, "-cp", f"{self.home / 'lib'}/*", "org.apache.flink.client.cli.CliFrontend",
                  "run", "--detached", "--class", main_class, str(jar), *args]
        env = {**os.environ, "FLINK_CONF_DIR": self.conf, "FLINK_LIB_DIR": str(self.home / "lib"),
               "FLINK_PLUGINS_DIR": str(self.home / "plugins")}
        with tempfile.TemporaryDirectory(prefix="flink-client-") as folder:  # 0700
            argfile = Path(folder) / "arguments"
            argfile.write_text("".join('"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"\n' for t in tokens))
            argfile.chmod(0o600)
            result = subprocess.run([self.java, f"@{argfile}"], env=env, capture_output=True, text=True, timeout=300,
                                    check=False)
        found = re.search(r"JobID ([0-9a-f]{32})", result.stdout)
        if result.returncode != 0 or not found:
            raise Fatal(f"Flink's client exited {result.returncode} without a job id:\n"
                        f"{(result.stdout + result.stderr)[-3000:]}")
        return found.group(1)


def submit_tiering(flink: str, jar: Path, main_class: str, job_name: str, taskmanagers: int, args: list[str],
                   deadline: float, client: FlinkClient | None = None) -> str:
    """Submit the tiering job unless a job of that name is active; wait until it runs. Returns what happened."""
    flink = flink.rstrip("/")
    _wait_for(f"{taskmanagers} TaskManager(s) registered at {flink}",
              lambda: registered_taskmanagers(flink) >= taskmanagers, deadline)
    existing = active_job(flink, job_name)
    if existing is not None:
        job_id, outcome = str(existing["jid"]), "already active"
    else:
        job_id = (client.run_detached(jar, main_class, args) if client
                  else run_uploaded_jar(flink, jar, main_class, args))
        outcome = "submitted" + (" with Flink's client" if client else "")

    def running() -> bool:
        state = next((j.get("state") for j in jobs(flink) if j.get("jid") == job_id), None)
        if state in ("FAILED", "CANCELED", "FINISHED"):
            raise Fatal(f"job {job_id} is {state}; see the JobManager and TaskManager logs")
        return state == "RUNNING"

    _wait_for(f"tiering job {job_id} RUNNING", running, deadline)
    return f"tiering job {job_id} {outcome}, RUNNING"


# ---------------------------------------------------------------------------------------------------- main


def command_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tasks.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="", help="ignored: names the stack in process listings")
    sub = parser.add_subparsers(dest="task", required=True)
    bucket = sub.add_parser("create-bucket")
    bucket.add_argument("--endpoint", required=True)
    bucket.add_argument("--bucket", required=True)
    bucket.add_argument("--region", required=True)
    bucket.add_argument("--grant", action="append", default=[], metavar="ROLE=PREFIX:r|rw",
                        help="give ROLE's identity (access key sagaz-ROLE) this grant (repeatable)")
    tiering = sub.add_parser("submit-tiering")
    tiering.add_argument("--flink", required=True)
    tiering.add_argument("--jar", required=True, type=Path)
    tiering.add_argument("--main-class", required=True)
    tiering.add_argument("--job-name", required=True)
    tiering.add_argument("--taskmanagers", type=int, default=1)
    tiering.add_argument("--flink-client-java", help="submit with Flink's client run by this java (no jar upload)")
    tiering.add_argument("--flink-client-home", help="the Flink distribution whose lib/ holds the client")
    tiering.add_argument("--flink-client-conf", help="the folder of the cluster's config.yaml")
    tiering.add_argument("--flink-client-jvm-option", action="append", default=[], help="a JVM option (repeatable)")
    tiering.add_argument("job_args", nargs=argparse.REMAINDER)
    return parser


CATALOG_CREDENTIAL_VARIABLE = "CATALOG_CREDENTIAL"


def main(argv: list[str]) -> int:
    options = command_parser().parse_args(argv)
    deadline = time.monotonic() + WAIT_SECONDS
    try:
        if options.task == "create-bucket":
            access, secret = os.environ.get("AWS_ACCESS_KEY_ID", ""), os.environ.get("AWS_SECRET_ACCESS_KEY", "")
            if not access or not secret:
                raise TaskError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set")
            grants = parse_grants(options.grant)
            outcome = create_bucket(options.endpoint, options.bucket, options.region, access, secret, deadline)
            print(f"bucket {options.bucket} {outcome}", flush=True)
            for identity in ensure_identities(options.endpoint, options.bucket, options.region, access, secret,
                                              grants):
                print(f"identity {identity} ready", flush=True)
        else:
            args = options.job_args[1:] if options.job_args[:1] == ["--"] else options.job_args
            # An external catalog's client credentials reach the job here, not in this task's own arguments (the
            # job takes its catalog properties as arguments only: FlussLakeTiering, 0.9.1).
            credential = os.environ.get(CATALOG_CREDENTIAL_VARIABLE, "")
            if credential:
                args = [*args, "--datalake.iceberg.credential", credential]
            client = (FlinkClient(options.flink_client_java, options.flink_client_home, options.flink_client_conf,
                                  options.flink_client_jvm_option) if options.flink_client_java else None)
            print(submit_tiering(options.flink, options.jar, options.main_class, options.job_name,
                                 options.taskmanagers, args, deadline, client), flush=True)
    except TaskError as exc:
        print(f"{options.task}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
