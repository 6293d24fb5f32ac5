"""The fleet CA (services/fleet_ca.py): issuing device, broker and gateway certificates, CSRs, the CA
key's passphrase, revocation into a CRL, and rotation through the API in cert mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tinyfleet.server.config import ConfigError, Settings, settings_from_env
from tinyfleet.server.services.fleet_ca import BadCsr, FleetCA, FleetCAError


def _csr(common_name: str, key: ec.EllipticCurvePrivateKey | None = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_device_certificate_is_signed_by_the_ca_with_cn_the_device_id(tmp_path: Path) -> None:
    ca = FleetCA.open(tmp_path / "ca", "secret")
    issued = ca.issue_device("dev-0001")
    cert = x509.load_pem_x509_certificate(issued.cert_pem.encode())
    assert _cn(cert) == "dev-0001"
    cert.verify_directly_issued_by(ca.cert)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert issued.serial == format(cert.serial_number, "x")
    key = serialization.load_pem_private_key(issued.key_pem.encode() if issued.key_pem else b"", None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    # Loaded again (same directory, same passphrase): the same CA, and the CRL exists (empty).
    again = FleetCA.open(tmp_path / "ca", "secret")
    assert again.cert_pem == ca.cert_pem
    crl = x509.load_pem_x509_crl(again.crl_path.read_bytes())
    assert len(list(crl)) == 0


def test_csr_gets_a_certificate_for_its_own_key_and_no_private_key(tmp_path: Path) -> None:
    ca = FleetCA.open(tmp_path, None)
    key = ec.generate_private_key(ec.SECP256R1())
    issued = ca.issue_device("dev-0002", _csr("dev-0002", key))
    assert issued.key_pem is None
    cert = x509.load_pem_x509_certificate(issued.cert_pem.encode())
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]


def test_csr_naming_another_device_or_not_a_csr_is_refused(tmp_path: Path) -> None:
    ca = FleetCA.open(tmp_path, None)
    with pytest.raises(BadCsr, match="CN must be the device id 'dev-0002', got 'dev-0003'"):
        ca.issue_device("dev-0002", _csr("dev-0003"))
    with pytest.raises(BadCsr, match="not a PEM"):
        ca.issue_device("dev-0002", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n")
    # A CSR whose signature does not verify: the last byte of its DER (the signature's end) changed.
    der = x509.load_pem_x509_csr(_csr("dev-0002").encode()).public_bytes(serialization.Encoding.DER)
    forged = der[:-1] + bytes([der[-1] ^ 1])
    pem = x509.load_der_x509_csr(forged).public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(BadCsr, match="signature"):
        ca.issue_device("dev-0002", pem)


def test_ca_key_is_encrypted_and_needs_its_passphrase(tmp_path: Path) -> None:
    FleetCA.open(tmp_path, "right")
    assert b"ENCRYPTED" in (tmp_path / "ca.key").read_bytes()
    assert (tmp_path / "ca.key").stat().st_mode & 0o077 == 0
    with pytest.raises(FleetCAError, match="wrong TINYFLEET_CA_PASSPHRASE"):
        FleetCA.open(tmp_path, "wrong")
    with pytest.raises(FleetCAError, match="set TINYFLEET_CA_PASSPHRASE"):
        FleetCA.open(tmp_path, None)
    with pytest.raises(FleetCAError, match="required in production"):
        FleetCA.open(tmp_path / "other", None, production=True)


def test_production_cert_mode_needs_a_ca_passphrase() -> None:
    env = {
        "TINYFLEET_MODE": "production",
        "TINYFLEET_API_TOKEN": "Zq8v-Lm3xT9rWb2yKd7nPf4sHc6gJa1e",
        "TINYFLEET_SIGNING_KEY": "/etc/tinyfleet/key.pem",
        "TINYFLEET_DATABASE_URL": "postgresql://db/tinyfleet",
        "TINYFLEET_DEVICE_AUTH": "cert",
    }
    with pytest.raises(ConfigError, match="TINYFLEET_CA_PASSPHRASE is not set"):
        settings_from_env(env)
    settings = settings_from_env({**env, "TINYFLEET_CA_PASSPHRASE": "a long passphrase"})
    assert settings.device_auth == "cert"
    with pytest.raises(ConfigError, match="TINYFLEET_DEVICE_AUTH must be password or cert"):
        Settings(device_auth="token").validate()


def test_broker_and_gateway_certificates(tmp_path: Path) -> None:
    ca = FleetCA.open(tmp_path, None)
    broker = x509.load_pem_x509_certificate(
        ca.issue_broker(["mqtt.example.com", "10.0.0.5"]).cert_pem.encode()
    )
    sans = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "mqtt.example.com"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "10.0.0.5"]
    gateway = x509.load_pem_x509_certificate(ca.issue_service("tinyfleet-server").cert_pem.encode())
    assert _cn(gateway) == "tinyfleet-server"


def test_revoked_serials_are_in_the_crl(tmp_path: Path) -> None:
    ca = FleetCA.open(tmp_path, None)
    one, two = ca.issue_device("dev-0001"), ca.issue_device("dev-0002")
    ca.write_crl([(one.serial, 1_700_000_000.0)])
    crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    assert crl.is_signature_valid(ca.cert.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(int(one.serial, 16)) is not None
    assert crl.get_revoked_certificate_by_serial_number(int(two.serial, 16)) is None


def _cert_api(tmp_path: Path, db_url: str):  # type: ignore[no-untyped-def]
    import httpx

    from tests.support.inprocess_api import Api, SyncASGITransport
    from tinyfleet.server.app import create_app
    from tinyfleet.server.context import AppContext

    settings = Settings(database_url=db_url, data_dir=tmp_path / "data", device_auth="cert").validate()
    ctx = AppContext(settings)
    client = httpx.Client(
        transport=SyncASGITransport(create_app(ctx=ctx, background=False)),
        base_url="http://tinyfleet.test",
        headers={"Authorization": f"Bearer {settings.api_token}"},
    )
    return Api(client, ctx)


def test_rotation_and_revocation_through_the_api(tmp_path: Path, db_url: str) -> None:
    api = _cert_api(tmp_path, db_url)
    try:
        made = api.ok("POST", "/api/devices", 201, json={"id": "dev-0001", "hardware_class": 1})
        assert made["mqtt"]["password"] is None
        first = made["certificate"]
        assert first["private_key_pem"].startswith("-----BEGIN PRIVATE KEY-----")
        assert first["ca_pem"] == api.ok("GET", "/api/fleet-ca.pem").text
        # Rotation: a new certificate (here for a CSR: no key returned), the old serial revoked.
        rotated = api.ok("POST", "/api/devices/dev-0001/certificate", json={"csr": _csr("dev-0001")})
        assert rotated["mqtt"]["password"] is None and rotated["device"]["id"] == "dev-0001"
        second = rotated["certificate"]
        assert second["private_key_pem"] is None and second["serial"] != first["serial"]
        crl = x509.load_pem_x509_crl(api.ctx.fleet_ca.crl_path.read_bytes())
        assert crl.get_revoked_certificate_by_serial_number(int(first["serial"], 16)) is not None
        assert crl.get_revoked_certificate_by_serial_number(int(second["serial"], 16)) is None
        bad = api.client.post("/api/devices/dev-0001/certificate", json={"csr": _csr("dev-9999")})
        assert bad.status_code == 422 and "CN must be the device id" in bad.json()["detail"]
        # Revocation: every valid certificate, and the gateway now ignores the device.
        gone = api.ok("POST", "/api/devices/dev-0001/certificate/revoke")
        assert gone["revoked_serials"] == [second["serial"]]
        crl = x509.load_pem_x509_crl(api.ctx.fleet_ca.crl_path.read_bytes())
        assert crl.get_revoked_certificate_by_serial_number(int(second["serial"], 16)) is not None
        again = api.client.post("/api/devices/dev-0001/certificate/revoke")
        assert again.status_code == 409 and "no valid certificate" in again.json()["detail"]
    finally:
        api.client.close()
        api.ctx.db.dispose()


def test_certificate_routes_say_when_cert_mode_is_off(api) -> None:  # type: ignore[no-untyped-def]
    api.ok("POST", "/api/devices", 201, json={"id": "dev-0001", "hardware_class": 1})
    resp = api.client.post("/api/devices/dev-0001/certificate")
    assert resp.status_code == 409 and "TINYFLEET_DEVICE_AUTH=cert" in resp.json()["detail"]
    assert api.client.get("/api/fleet-ca.pem").status_code == 409
