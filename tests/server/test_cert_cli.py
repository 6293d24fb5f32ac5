"""`tinyfleet devices provision / devices cert rotate|revoke / fleet-ca show|issue-*` in cert mode."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

from tinyfleet.cli import app
from tinyfleet.server.stack import Stack, run_stack


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with run_stack(data_dir=tmp_path / "server", background=False, device_auth="cert") as st:
        monkeypatch.setenv("TINYFLEET_API_URL", st.url)
        monkeypatch.setenv("TINYFLEET_API_TOKEN", st.token)
        monkeypatch.chdir(tmp_path)
        yield st


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_provision_rotate_revoke_and_show(server: Stack, tmp_path: Path) -> None:
    code, out = run("devices", "provision", "--hardware-class", "1", "--id", "dev-0001")
    assert code == 0, out
    assert "dev-0001.pem/.key, ca.pem" in out
    key = tmp_path / "dev-0001.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = x509.load_pem_x509_certificate((tmp_path / "dev-0001.pem").read_bytes())

    code, out = run("devices", "cert", "rotate", "dev-0001", "--out", str(tmp_path / "new"))
    assert code == 0, out
    second = x509.load_pem_x509_certificate((tmp_path / "new" / "dev-0001.pem").read_bytes())
    assert second.serial_number != first.serial_number and f"{second.serial_number:x}" in out

    code, out = run("devices", "cert", "revoke", "dev-0001", "--json")
    assert code == 0, out
    assert f"{second.serial_number:x}" in out
    code, out = run("devices", "cert", "revoke", "dev-0001")
    assert code == 1 and "holds no valid certificate" in out and "Traceback" not in out

    code, out = run("fleet-ca", "show")
    assert code == 0 and out == (tmp_path / "ca.pem").read_text()


def test_bulk_writes_certificates_beside_the_csv(server: Stack, tmp_path: Path) -> None:
    creds = tmp_path / "creds.csv"
    code, out = run(
        "devices", "provision", "--count", "3", "--prefix", "b", "--hardware-class", "1", "--out", str(creds)
    )
    assert code == 0, out
    folder = tmp_path / "creds-certs"
    assert sorted(p.name for p in folder.iterdir()) == [
        "b-00000.key",
        "b-00000.pem",
        "b-00001.key",
        "b-00001.pem",
        "b-00002.key",
        "b-00002.pem",
        "ca.pem",
    ]


def test_issue_broker_and_gateway_from_the_ca_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINYFLEET_CA_DIR", str(tmp_path / "ca"))
    monkeypatch.setenv("TINYFLEET_CA_PASSPHRASE", "correct horse")
    code, out = run("fleet-ca", "issue-broker", "--out", str(tmp_path / "b"), "--name", "mqtt.example.com")
    assert code == 0, out
    broker = x509.load_pem_x509_certificate((tmp_path / "b" / "broker.pem").read_bytes())
    assert "mqtt.example.com" in broker.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    code, out = run("fleet-ca", "issue-gateway", "--out", str(tmp_path / "g"))
    assert code == 0 and "TINYFLEET_MQTT_CERT_FILE=" in out
    monkeypatch.setenv("TINYFLEET_CA_PASSPHRASE", "wrong")
    code, out = run("fleet-ca", "issue-gateway", "--out", str(tmp_path / "g"))
    assert code == 1 and "wrong TINYFLEET_CA_PASSPHRASE" in out and "Traceback" not in out
