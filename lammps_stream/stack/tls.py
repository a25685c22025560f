"""Certificates for a local broker with a TLS listener, made with the ``openssl`` program.

``stack up`` with ``kafka.security_protocol`` SSL or SASL_SSL keeps a private CA in
``<state_dir>/tls/`` (made once, so a ``kafka.ssl_cafile`` pointing at it stays valid) and
issues the broker a fresh certificate at every start, for the bootstrap host, ``localhost``
and ``127.0.0.1``. Keys are unencrypted PEM (PKCS#8), readable by the user only.

>>> subject_alt_names("10.0.0.5")
['IP:10.0.0.5', 'DNS:localhost', 'IP:127.0.0.1']
>>> subject_alt_names("kafka.example.org")
['DNS:kafka.example.org', 'DNS:localhost', 'IP:127.0.0.1']
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lammps_stream.broker import stack_cafile
from lammps_stream.config import Config
from lammps_stream.errors import StackError, ToolMissingError

CA_DAYS = 3650
CERT_DAYS = 825


@dataclass(frozen=True)
class Issued:
    """A certificate (PEM), its unencrypted key (PEM), and the CA certificate that signed it."""

    cert: Path
    key: Path
    ca: Path


def tls_dir(config: Config) -> Path:
    """``<state_dir>/tls``: the stack's CA and the certificates it issued."""
    return stack_cafile(config).parent


def subject_alt_names(host: str) -> list[str]:
    """The names a broker certificate for ``host`` is valid for."""
    names = [_san(host), "DNS:localhost", "IP:127.0.0.1"]
    return list(dict.fromkeys(names))


def _san(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return f"DNS:{host}"
    return f"IP:{host}"


def ensure_ca(directory: Path) -> tuple[Path, Path]:
    """The CA certificate and key in ``directory``, made if either is missing."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    cert, key = directory / "ca.crt", directory / "ca.key"
    if cert.is_file() and key.is_file():
        return cert, key
    _openssl(
        "req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-sha256",
        "-days", str(CA_DAYS), "-subj", "/O=lammps-stream/CN=lammps-stream local CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    key.chmod(0o600)
    return cert, key


def issue(directory: Path, name: str, common_name: str, sans: list[str]) -> Issued:
    """``<name>.crt`` and ``<name>.key`` in ``directory``, signed by its CA (made if missing),
    valid for ``sans`` (``DNS:...``/``IP:...``) as a TLS server and as a TLS client."""
    ca_cert, ca_key = ensure_ca(directory)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    extensions = "\n".join(
        [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=serverAuth,clientAuth",
            "subjectKeyIdentifier=hash",
            "authorityKeyIdentifier=keyid,issuer",
            *([f"subjectAltName={','.join(sans)}"] if sans else []),
        ]
    )
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        csr, ext = Path(scratch) / "request.csr", Path(scratch) / "extensions.cnf"
        ext.write_text(extensions + "\n")
        _openssl(
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-sha256",
            "-subj", f"/O=lammps-stream/CN={common_name}",
            "-keyout", str(key), "-out", str(csr),
        )  # fmt: skip
        key.chmod(0o600)
        _openssl(
            "x509", "-req", "-in", str(csr), "-sha256", "-days", str(CERT_DAYS),
            "-CA", str(ca_cert), "-CAkey", str(ca_key), "-set_serial", _serial(),
            "-extfile", str(ext), "-out", str(cert),
        )  # fmt: skip
    return Issued(cert, key, ca_cert)


def broker_certificate(config: Config) -> Issued:
    """A fresh certificate for the local broker, signed by the stack's CA."""
    host = config.kafka.bootstrap.split(",")[0].strip().rpartition(":")[0]
    return issue(tls_dir(config), "broker", host, subject_alt_names(host))


def _serial() -> str:
    import secrets

    return str(secrets.randbits(63) | 1)


def _openssl(*args: str) -> str:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ToolMissingError(
            "openssl not found on PATH; install it (e.g. apt-get install openssl): the local "
            "stack makes its TLS certificates with it"
        )
    result = subprocess.run(
        [openssl, *args], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        last = " | ".join((result.stdout + result.stderr).strip().splitlines()[-3:])
        raise StackError(f"openssl {args[0]} failed: {last}")
    return result.stdout
