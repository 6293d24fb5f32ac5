"""The fleet CA: the server's own certificate authority for device identity (TINYFLEET_DEVICE_AUTH=cert).

Every device gets an X.509 client certificate with subject CN = its device id; the broker checks it
against this CA (and its CRL) and takes the CN as the MQTT username (`use_identity_as_username`), so the
ACL's `tf/%u/...` patterns apply unchanged and adding a device never touches the broker. The broker's own
server certificate and the gateway's client certificate (CN = the service user) come from here too.

Keys are EC P-256 (fast to make and to verify: 10,000 devices in seconds). The CA key lives in
`ca.key` (PKCS#8), encrypted with TINYFLEET_CA_PASSPHRASE, which production mode requires.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
CRL_FILE = "crl.pem"
CA_DAYS = 3650
DEVICE_DAYS = 825
SERVER_DAYS = 825
# OpenSSL refuses every client once the CRL's nextUpdate has passed, and the server rewrites the CRL only
# at start and on revocation: the CRL is valid as long as the CA (the broker is its only reader).
CRL_DAYS = CA_DAYS
MAX_CSR_BYTES = 16 * 1024


class FleetCAError(Exception):
    """The CA cannot be created, loaded or used; the message is one line naming what to fix."""


class BadCsr(ValueError):
    """A certificate signing request that is malformed, badly signed or names another device."""


@dataclass(frozen=True)
class IssuedCert:
    serial: str  # lower-case hex, as stored in the database
    cert_pem: str
    key_pem: str | None  # the server-made private key (None when the device sent a CSR); shown once
    not_after: float  # Unix seconds


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _write_private(path: Path, data: bytes) -> None:
    """Write a file only the server's user can read, atomically (never half a key on disk)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def parse_csr(csr_pem: str | bytes, device_id: str) -> ec.EllipticCurvePublicKey:
    """The public key of a device's CSR, after checking its signature and that its CN is device_id."""
    raw = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
    if len(raw) > MAX_CSR_BYTES:
        raise BadCsr(f"CSR larger than {MAX_CSR_BYTES} bytes")
    try:
        csr = x509.load_pem_x509_csr(raw)
    except ValueError:
        raise BadCsr("CSR is not a PEM certificate signing request") from None
    try:
        valid = csr.is_signature_valid
    except (InvalidSignature, ValueError, TypeError):
        valid = False
    if not valid:
        raise BadCsr("CSR signature does not verify")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or names[0].value != device_id:
        got = names[0].value if names else None
        raise BadCsr(f"CSR subject CN must be the device id {device_id!r}, got {got!r}")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise BadCsr("CSR key must be EC P-256")
    return key


class FleetCA:
    """A loaded fleet CA in `directory` (ca.pem, ca.key, crl.pem)."""

    def __init__(self, directory: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.directory = directory
        self.cert = cert
        self._key = key
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def cert_path(self) -> Path:
        return self.directory / CA_CERT

    @property
    def crl_path(self) -> Path:
        return self.directory / CRL_FILE

    @classmethod
    def open(cls, directory: Path, passphrase: str | None, *, production: bool = False) -> FleetCA:
        """Load the CA from directory, creating it (and an empty CRL) the first time."""
        if production and not passphrase:
            raise FleetCAError("TINYFLEET_CA_PASSPHRASE is required in production mode")
        cert_path, key_path = directory / CA_CERT, directory / CA_KEY
        if not key_path.exists():
            ca = cls.create(directory, passphrase)
        else:
            try:
                key = serialization.load_pem_private_key(
                    key_path.read_bytes(), passphrase.encode() if passphrase else None
                )
                cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            except OSError as exc:
                raise FleetCAError(
                    f"cannot read the fleet CA in {directory}: {exc.strerror or exc}"
                ) from None
            except TypeError:
                hint = "set TINYFLEET_CA_PASSPHRASE" if not passphrase else "it is not encrypted"
                raise FleetCAError(f"cannot load {key_path}: {hint}") from None
            except ValueError:
                raise FleetCAError(f"cannot load {key_path}: wrong TINYFLEET_CA_PASSPHRASE?") from None
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise FleetCAError(f"{key_path} is not an EC private key")
            ca = cls(directory, cert, key)
        if not ca.crl_path.exists():
            ca.write_crl([])
        return ca

    @classmethod
    def create(
        cls, directory: Path, passphrase: str | None, common_name: str = "tinyfleet fleet CA"
    ) -> FleetCA:
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase.encode())
            if passphrase
            else serialization.NoEncryption()
        )
        key_bytes = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
        _write_private(directory / CA_KEY, key_bytes)
        (directory / CA_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(directory, cert, key)

    # --- issuing ------------------------------------------------------------------------------------

    def _issue(
        self,
        common_name: str,
        public: ec.EllipticCurvePublicKey,
        usage: x509.ObjectIdentifier,
        days: int,
        sans: Sequence[x509.GeneralName] = (),
    ) -> tuple[str, str, float]:
        now = _now()
        not_after = now + dt.timedelta(days=days)
        serial = x509.random_serial_number()
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(public)
            .serial_number(serial)
            .not_valid_before(now - dt.timedelta(minutes=5))  # devices' clocks are rarely exact
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return (
            serial_hex(serial),
            cert.public_bytes(serialization.Encoding.PEM).decode(),
            not_after.timestamp(),
        )

    def issue_device(self, device_id: str, csr_pem: str | None = None, days: int = DEVICE_DAYS) -> IssuedCert:
        """A client certificate with CN = device_id: for the CSR's key, or a new key returned with it."""
        key_pem = None
        if csr_pem is not None:
            public = parse_csr(csr_pem, device_id)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            public, key_pem = key.public_key(), _key_pem(key)
        serial, cert_pem, not_after = self._issue(device_id, public, ExtendedKeyUsageOID.CLIENT_AUTH, days)
        return IssuedCert(serial, cert_pem, key_pem, not_after)

    def issue_service(self, username: str, days: int = SERVER_DAYS) -> IssuedCert:
        """The gateway's client certificate: CN = its service user (broker_acl gives it all of tf/#)."""
        key = ec.generate_private_key(ec.SECP256R1())
        serial, cert_pem, not_after = self._issue(
            username, key.public_key(), ExtendedKeyUsageOID.CLIENT_AUTH, days
        )
        return IssuedCert(serial, cert_pem, _key_pem(key), not_after)

    def issue_broker(self, names: Iterable[str] = (), days: int = SERVER_DAYS) -> IssuedCert:
        """The broker's server certificate, valid for localhost, 127.0.0.1 and the given names."""
        sans: list[x509.GeneralName] = []
        for name in ("localhost", "127.0.0.1", *names):
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        key = ec.generate_private_key(ec.SECP256R1())
        serial, cert_pem, not_after = self._issue(
            "tinyfleet broker",
            key.public_key(),
            ExtendedKeyUsageOID.SERVER_AUTH,
            days,
            list(dict.fromkeys(sans)),
        )
        return IssuedCert(serial, cert_pem, _key_pem(key), not_after)

    # --- revocation ---------------------------------------------------------------------------------

    def write_crl(self, revoked: Iterable[tuple[str, float]]) -> Path:
        """Write crl.pem listing these (serial hex, revoked at) pairs, atomically (the broker reads it)."""
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + dt.timedelta(days=CRL_DAYS))
        )
        for serial, at in revoked:
            entry = (
                x509.RevokedCertificateBuilder()
                .serial_number(int(serial, 16))
                .revocation_date(dt.datetime.fromtimestamp(at, dt.UTC))
                .build()
            )
            builder = builder.add_revoked_certificate(entry)
        crl = builder.sign(self._key, hashes.SHA256())
        tmp = self.crl_path.with_name(CRL_FILE + ".tmp")
        tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        os.replace(tmp, self.crl_path)
        return self.crl_path


def write_pair(directory: Path, stem: str, issued: IssuedCert) -> tuple[Path, Path]:
    """Store an issued certificate and its key as stem.pem / stem.key (key mode 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_text(issued.cert_pem)
    if issued.key_pem is not None:
        _write_private(key_path, issued.key_pem.encode())
    return cert_path, key_path
