"""TLS material for Trino's HTTPS listener (prod profile, every target): a self-signed certificate for the names
clients connect to (loopback; in a container network or cluster also the trino Service), made once and kept beside
the stack's files (the local run folder, the compose project, the Kubernetes state folder), or the operator's own
(``secrets.trino_tls``).

``keystore.pem`` (mode 0600) holds the private key and the certificate, the PEM keystore Trino's
``http-server.https.keystore.path`` takes (Trino docs, "PEM files"); ``ca.pem`` holds the certificate
alone, which clients verify the server against. A certificate that expires within ``RENEW_DAYS`` is replaced.
``cryptography`` is imported only here, and only when the prod profile needs a certificate.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

KEYSTORE = "keystore.pem"
CA = "ca.pem"
VALID_DAYS = 365
RENEW_DAYS = 30
COMMON_NAME = "sagaz-lakehouse trino"


@dataclass(frozen=True)
class TrinoTls:
    keystore_pem: str  # private key + certificate: a secret
    ca_file: Path  # the certificate alone: what clients trust


def ensure(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> TrinoTls:
    """The certificate in ``directory``, made (or renewed) when missing, about to expire, or not naming every one of
    ``hosts``."""
    keystore, ca = directory / KEYSTORE, directory / CA
    if not (keystore.exists() and ca.exists() and _valid_for(ca.read_bytes(), RENEW_DAYS, hosts)):
        key_pem, cert_pem = _self_signed(hosts)
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        _write(keystore, key_pem + cert_pem, 0o600)
        _write(ca, cert_pem, 0o644)
    return TrinoTls(keystore.read_text(), ca)


def self_signed_keystore(hosts: tuple[str, ...]) -> str:
    """A keystore (key + certificate) naming ``hosts``, in memory: what ``ensure`` would keep."""
    key_pem, cert_pem = _self_signed(hosts)
    return (key_pem + cert_pem).decode()


def install(directory: Path, keystore_pem: str) -> TrinoTls:
    """An operator's keystore (secrets.trino_tls, checked by ``keystore_problem``) in place of the made one: the
    same two files, ``ca.pem`` holding every certificate of its chain."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    _write(directory / KEYSTORE, keystore_pem.encode(), 0o600)
    _write(directory / CA, certificate_part(keystore_pem).encode(), 0o644)
    return TrinoTls(keystore_pem, directory / CA)


def reusable(keystore_pem: str, hosts: tuple[str, ...]) -> bool:
    """Whether a keystore holds a certificate made here that is valid for another ``RENEW_DAYS`` and names every one
    of ``hosts`` (``ensure`` would keep it)."""
    certificate = certificate_part(keystore_pem)
    return bool(certificate) and _valid_for(certificate.encode(), RENEW_DAYS, hosts)


def certificate_part(pem: str) -> str:
    """The certificate blocks of a PEM keystore (key + certificate), without the key."""
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    blocks, rest = [], pem
    while begin in rest:
        start = rest.index(begin)
        stop = rest.index(end, start) + len(end)
        blocks.append(rest[start:stop] + "\n")
        rest = rest[stop:]
    return "".join(blocks)


def keystore_problem(pem: str, names: tuple[tuple[str, ...], ...] = (("127.0.0.1", "localhost"),)) -> str:
    """What is wrong with a keystore Trino and its clients could not use ("" when nothing): an unencrypted private
    key, then certificates, the first of which holds that key's public half, is valid now and names one name of each
    group in ``names`` (the addresses clients connect to: loopback; in a container network, the trino Service)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        return f"no unencrypted PEM private key ({exc})"
    try:
        chain = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        return "no PEM certificate"
    leaf = chain[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(serialization.Encoding.PEM, public) != key.public_key().public_bytes(
            serialization.Encoding.PEM, public):
        return "the first certificate does not belong to the private key"
    now = datetime.datetime.now(datetime.UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        return f"the first certificate is not valid now (valid {leaf.not_valid_before_utc:%Y-%m-%d} to " \
               f"{leaf.not_valid_after_utc:%Y-%m-%d})"
    if not certificate_names(leaf):
        return "the first certificate has no subject alternative names"
    for group in names:
        if not certificate_names(leaf) & set(group):
            return f"the first certificate names none of {', '.join(group)}, which clients connect to"
    return ""


def certificate_names(certificate: object) -> set[str]:
    """The DNS names and IP addresses (as text) a certificate's subject alternative names carry."""
    from cryptography import x509

    assert isinstance(certificate, x509.Certificate)
    try:
        alternative = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {*alternative.get_values_for_type(x509.DNSName),
            *(str(ip) for ip in alternative.get_values_for_type(x509.IPAddress))}


def first_name(pem: str, candidates: tuple[str, ...]) -> str:
    """The first of ``candidates`` the keystore's (or certificate's) first certificate names ("" when none)."""
    from cryptography import x509

    try:
        leaf = x509.load_pem_x509_certificates(pem.encode())[0]
    except (ValueError, IndexError):
        return ""
    named = certificate_names(leaf)
    return next((name for name in candidates if name in named), "")


def _write(path: Path, data: bytes, mode: int) -> None:
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(temporary, mode)
    temporary.replace(path)


def _valid_for(cert_pem: bytes, days: int, hosts: tuple[str, ...]) -> bool:
    from cryptography import x509

    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return False
    remaining = certificate.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    # Only a certificate made here: one an operator supplied earlier (install) is replaced once the setting is gone.
    ours = certificate.subject.rfc4514_string() == f"CN={COMMON_NAME}"
    return ours and remaining > datetime.timedelta(days=days) and set(hosts) <= certificate_names(certificate)


def _self_signed(hosts: tuple[str, ...]) -> tuple[bytes, bytes]:
    """An RSA key (PKCS#8, unencrypted: the file's mode protects it) and a certificate naming ``hosts``."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, COMMON_NAME)])
    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
                   .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
                   # Its own trust anchor: a CA that may sign (Python 3.13's strict verification checks these).
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                key_encipherment=True, data_encipherment=False, key_agreement=False,
                                                key_cert_sign=True, crl_sign=False, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)
