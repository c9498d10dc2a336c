"""A test certificate authority and moto serving https with a certificate it signed, for the SSE and https
tests: s3fuse must verify the server with the CA bundle it is given, and fail without it."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from s3fuse.embedded import LocalS3, clean_aws_environment, free_port, stop


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA bundle a client trusts
    cert: Path  # the server's certificate, for localhost and 127.0.0.1
    key: Path


def make_certificates(directory: Path) -> Certificates:
    """A throwaway CA and a server certificate it signed, valid for a day."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "s3fuse test CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    found = Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    found.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    found.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    found.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return found


@contextlib.contextmanager
def tls_moto(certificates: Certificates, log_path: Path) -> Iterator[LocalS3]:
    """moto in server mode on https://127.0.0.1:PORT with the test certificate."""
    port = free_port()
    executable = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or "moto_server"
    with log_path.open("ab") as log:
        process = subprocess.Popen([executable, "-H", "127.0.0.1", "-p", str(port), "-c", str(certificates.cert),
                                    "-k", str(certificates.key)], stdout=log, stderr=log,
                                   env=clean_aws_environment(), start_new_session=True)
    try:
        context = ssl.create_default_context(cafile=str(certificates.ca))
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"https://127.0.0.1:{port}/", timeout=1, context=context).close()
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto did not serve https on port {port}: see {log_path}") from None
                time.sleep(0.1)
        yield LocalS3(f"https://127.0.0.1:{port}")
    finally:
        stop(process)
