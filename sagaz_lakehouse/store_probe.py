"""Before ``up`` starts anything against an external object store (``object_store.kind: external``): the bucket
exists, and each role's keys can do what that role needs (``identities.s3_grants``), proven with a probe object.

Per role: a bucket listing (every role lists object names); per prefix a role writes: put, get and delete a probe
object, and every role that only reads the prefix gets the object before it is deleted. Every refusal is reported at
once, each naming the role, the permission it lacks and where (exit 2: nothing was started). Requests are signed
with the same standard-library SigV4 code the bucket task uses (``tasks.s3_headers``); keys never leave the
process, and no message carries a secret.
"""

from __future__ import annotations

import re
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sagaz_lakehouse import addresses, identities, tasks
from sagaz_lakehouse.components import fluss
from sagaz_lakehouse.config import Credentials, Settings
from sagaz_lakehouse.errors import ConfigError, Problem

PROBE_NAME = ".sagaz-lakehouse-probe-"
TIMEOUT = 20.0
# What each S3 call needs (IAM action names, as a user writes them into a policy).
PERMISSION = {"list": "s3:ListBucket", "put": "s3:PutObject", "get": "s3:GetObject", "delete": "s3:DeleteObject",
              "head": "s3:GetObject"}
KEY_CODES = {"InvalidAccessKeyId": "the object store does not know its access key",
             "SignatureDoesNotMatch": "its secret key is wrong (the signature does not match)",
             "InvalidToken": "its credentials are not valid", "ExpiredToken": "its credentials have expired"}

Request = Callable[..., tuple[int, bytes]]


class BucketMissing(Exception):
    pass


@dataclass(frozen=True)
class Answer:
    status: int
    code: str  # the S3 error's <Code>, or "" (success, or no body)
    message: str

    @property
    def detail(self) -> str:
        """The refusal in a message's words: its code (or HTTP status) and the store's own message."""
        return f"{self.code or 'HTTP ' + str(self.status)}" + (f": {self.message}" if self.message else "")


def s3_error(status: int, body: bytes) -> Answer:
    text = body.decode(errors="replace")
    code = re.search(r"<Code>([^<]+)</Code>", text)
    message = re.search(r"<Message>([^<]*)</Message>", text)
    return Answer(status, code.group(1) if code else "", message.group(1) if message else "")


def refusal(role: str, call: str, where: str, answer: Answer) -> Problem:
    """What a refused call means for ``role``: a wrong key, or a permission its identity lacks."""
    field = f"object store, role {role}"
    variables = (f"s3_{role}_access_key and s3_{role}_secret_key in secrets.file, or "
                 f"SAGAZ_LAKEHOUSE_S3_{role.upper()}_ACCESS_KEY and ..._SECRET_KEY")
    if answer.code in KEY_CODES:
        return Problem(field, f"{KEY_CODES[answer.code]} ({answer.code}, HTTP {answer.status})",
                       f"check the {role} role's keys: {variables}")
    return Problem(field, f"lacks {PERMISSION[call]} on {where} ({answer.detail})",
                   f"grant the {role} identity {PERMISSION[call]} on {where} (README, Bring your own object store)")


class Prober:
    def __init__(self, settings: Settings, credentials: Credentials, request: Request | None = None) -> None:
        self.settings, self.credentials = settings, credentials
        self.endpoint = addresses.external_s3(settings)
        self.bucket = settings.lake.bucket
        self.request: Request = request or tasks.http_request

    def url(self, key: str = "", query: str = "") -> str:
        parts = urllib.parse.urlsplit(self.endpoint)
        if self.settings.s3_path_style:
            path, netloc = f"/{self.bucket}/{urllib.parse.quote(key)}" if key else f"/{self.bucket}", parts.netloc
        else:
            path, netloc = f"/{urllib.parse.quote(key)}", f"{self.bucket}.{parts.netloc}"
        return urllib.parse.urlunsplit((parts.scheme, netloc, path, query, ""))

    def call(self, role: str, method: str, key: str = "", query: str = "", body: bytes = b"") -> Answer:
        """One request signed with ``role``'s keys."""
        return self._signed(self.credentials.s3_keys(role), method, self.url(key, query), body)

    def session_call(self, session: tuple[str, str, str], method: str, key: str, body: bytes = b"") -> Answer:
        """One request signed with temporary credentials (access key, secret key, session token)."""
        return self._signed(session[:2], method, self.url(key), body, {"x-amz-security-token": session[2]})

    def _signed(self, keys: tuple[str, str], method: str, url: str, body: bytes,
                extra: dict[str, str] | None = None) -> Answer:
        headers = tasks.s3_headers(method, url, self.settings.s3_region, *keys, body, extra=extra)
        try:
            status, answer = self.request(url, method, body or None, headers, TIMEOUT)
        except OSError as exc:
            raise ConfigError([Problem("object_store.endpoint", f"cannot reach the object store at {self.endpoint}: "
                                       f"{exc}", "check object_store.endpoint and that the store is running")],
                              "object store") from exc
        return Answer(status, "", "") if status < 300 else s3_error(status, answer)

    def _bucket_missing(self) -> ConfigError:
        return ConfigError([Problem("lake.bucket", f"bucket {self.bucket} does not exist at {self.endpoint}",
                                    "create it in your object store (object_store.kind external: the stack never "
                                    "creates it), or correct lake.bucket")], "object store")

    def run(self) -> list[str]:
        """Probe every role; returns what was proven, or raises ConfigError naming every refusal."""
        grants = identities.s3_grants(self.settings)
        problems: list[Problem] = []
        able = set()
        for role in grants:
            answer = self.call(role, "GET", query="list-type=2&max-keys=1")
            if answer.code == "NoSuchBucket" or (answer.status == 404 and not answer.code):
                raise self._bucket_missing()
            if answer.status >= 300:
                problems.append(refusal(role, "list", f"bucket {self.bucket}", answer))
            else:
                able.add(role)
        if not able and all(p.message.startswith("lacks s3:ListBucket") for p in problems):
            # A store that checks policies before the bucket (MinIO) answers a name outside every role's policy
            # AccessDenied whether or not the bucket exists: both are named.
            raise ConfigError([Problem("lake.bucket", f"no role may list bucket {self.bucket} at {self.endpoint} "
                                       f"(AccessDenied for {', '.join(grants)}): it does not exist under that name, "
                                       "or no role has s3:ListBucket on it",
                                       "check lake.bucket; create the bucket, or grant each role s3:ListBucket on "
                                       "it (README, Bring your own object store)")], "object store")
        done = [f"bucket {self.bucket} at {self.endpoint}: listed by {', '.join(sorted(able))}"] if able else []
        for prefix, writer in _writers(grants).items():
            if writer not in able:
                continue
            name = prefix.strip("/")
            key = f"{name}/{PROBE_NAME}{uuid.uuid4().hex}"
            where = f"s3://{self.bucket}/{name}/*"
            answer = self.call(writer, "PUT", key, body=b"sagaz-lakehouse probe")
            if answer.status >= 300:
                problems.append(refusal(writer, "put", where, answer))
                continue
            readers = [writer, *(r for r, g in grants.items() if r != writer and r in able and (prefix, "r") in g)]
            for reader in readers:
                answer = self.call(reader, "GET", key)
                if answer.status >= 300:
                    problems.append(refusal(reader, "get", where, answer))
            answer = self.call(writer, "DELETE", key)
            if answer.status >= 300:
                problem = refusal(writer, "delete", where, answer)
                problems.append(Problem(problem.field, f"{problem.message}; the probe object s3://{self.bucket}/"
                                        f"{key} is left behind", problem.hint))
                continue
            # Hadoop's S3A (Fluss) asks for a folder's own name when it makes one below it: 404 is right, 403 is not.
            answer = self.call(writer, "HEAD", name)
            if answer.status in (401, 403):
                problems.append(refusal(writer, "head", f"s3://{self.bucket}/{name} (the prefix's own name, which "
                                        "Fluss's S3 file system asks for)", answer))
                continue
            done.append(f"{where}: {writer} wrote, read and deleted a probe object; read by {', '.join(readers)}")
        if not problems:
            done += self.assume_role(problems)
        if problems:
            raise ConfigError(problems, f"the object store at {self.endpoint} (nothing was started)")
        return done

    def assume_role(self, problems: list[Problem]) -> list[str]:
        """What the Fluss servers will do for their clients' temporary credentials (fluss.token_properties): STS
        AssumeRole with the fluss role's keys at the store's endpoint, then, with the session's keys, write, read
        and delete a probe object under the fluss role's prefix. AWS S3 itself is left to AWS STS (not probed)."""
        properties = fluss.token_properties(self.settings, self.endpoint)
        sts, arn = properties.get("s3.assumed.role.sts.endpoint", ""), properties.get("s3.assumed.role.arn", "")
        if not sts:
            return []
        field, hint = "object_store.sts_role_arn", (
            f"create role {arn} in your object store, trusted for the fluss role's identity (sts:AssumeRole), with "
            "the fluss role's grants, or set object_store.sts_role_arn (README, What Fluss needs from the object "
            "store)")
        status, body = self.assume(sts, arn)
        keys = session_keys(body) if status < 300 else None
        if keys is None:
            problems.append(Problem(field, f"the fluss role cannot assume role {arn} at {sts} "
                                    f"({s3_error(status, body).detail}); Fluss servers need it to hand their "
                                    "clients temporary credentials", hint))
            return []
        prefix = identities.REMOTE_DATA_PREFIX.strip("/")
        key = f"{prefix}/{PROBE_NAME}{uuid.uuid4().hex}"
        for method in ("PUT", "GET", "DELETE"):
            answer = self.session_call(keys, method, key, b"sagaz-lakehouse probe" if method == "PUT" else b"")
            if answer.status >= 300:
                problems.append(Problem(field, f"a session of role {arn} cannot {method} s3://{self.bucket}/{prefix}/* "
                                        f"({answer.code or 'HTTP ' + str(answer.status)})", hint))
                return []
        return [f"role {arn} at {sts}: assumed by fluss; its session wrote, read and deleted a probe object in "
                f"s3://{self.bucket}/{prefix}/*"]

    def assume(self, sts: str, arn: str) -> tuple[int, bytes]:
        """AssumeRole as Fluss 0.9.1 calls it (AWS SDK v1: a signed form POST to the STS endpoint, no policy)."""
        body = urllib.parse.urlencode({"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": arn,
                                       "RoleSessionName": f"sagaz-lakehouse-probe-{uuid.uuid4().hex[:8]}"}).encode()
        url = sts.rstrip("/") + "/"
        access_key, secret_key = self.credentials.s3_keys("fluss")
        headers = tasks.s3_headers("POST", url, self.settings.s3_region, access_key, secret_key, body,
                                   extra={"content-type": "application/x-www-form-urlencoded; charset=utf-8"},
                                   service="sts")
        try:
            return self.request(url, "POST", body, headers, TIMEOUT)
        except OSError as exc:
            return 0, f"<Message>{exc}</Message>".encode()



def session_keys(body: bytes) -> tuple[str, str, str] | None:
    """The temporary credentials of an STS AssumeRole answer (access key, secret key, session token), or None."""
    text = body.decode(errors="replace")
    found = [re.search(f"<{name}>([^<]+)</{name}>", text)
             for name in ("AccessKeyId", "SecretAccessKey", "SessionToken")]
    if not all(found):
        return None
    access_key, secret_key, token = (match.group(1) for match in found if match)
    return access_key, secret_key, token


def _writers(grants: dict[str, tuple[tuple[str, str], ...]]) -> dict[str, str]:
    """Each prefix some role writes, with that role."""
    return {prefix: role for role, role_grants in grants.items() for prefix, mode in role_grants if mode == "rw"}


def preflight(settings: Settings, credentials: Credentials, request: Request | None = None) -> list[str]:
    """``up``'s check of an external store (nothing for the bundled one, which the stack itself sets up)."""
    if not settings.external_store:
        return []
    return Prober(settings, credentials, request).run()


def shared_key_warning(settings: Settings, credentials: Credentials) -> str:
    """A warning where roles share one key of an external store in prod: each can then do what any role may."""
    from sagaz_lakehouse.config import shared_key_roles
    from sagaz_lakehouse.profiles import profile

    shared = shared_key_roles(credentials)
    if not settings.external_store or not shared or profile(settings.profile).dev_credentials:
        return ""
    return (f"warning: roles {', '.join(shared)} share one object-store key, so each can read and delete what the "
            "others write (Trino included); give each role its own identity (s3_<role>_access_key and "
            "s3_<role>_secret_key in secrets.file; README, Bring your own object store)")
