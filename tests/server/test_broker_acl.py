"""One ACL from one source (tinyfleet.server.broker_acl), device ids that can never name a service
account (services/ids.py), and the password-file lines the server writes from them."""

from __future__ import annotations

import pytest

from tests.support.paths import REPO
from tinyfleet.server.broker_acl import DEPLOY_SERVICE_USER, device_reads, device_writes, render_acl
from tinyfleet.server.config import ConfigError, Settings
from tinyfleet.server.context import AppContext
from tinyfleet.server.services.credentials import password_entries
from tinyfleet.server.services.ids import check_device_id, check_service_username, is_device_id
from tinyfleet.server.services.messages import KINDS


def test_deploy_acl_is_the_generated_one() -> None:
    expected = render_acl([DEPLOY_SERVICE_USER]).encode()
    assert (REPO / "deploy" / "mosquitto.acl").read_bytes() == expected, (
        "deploy/mosquitto.acl is stale: python -m tinyfleet.server.broker_acl > deploy/mosquitto.acl"
    )


def test_acl_table_matches_what_the_gateway_handles() -> None:
    # Devices write exactly the kinds the gateway subscribes to, and read only what it publishes.
    assert sorted(device_writes()) == sorted(KINDS)
    assert device_reads() == ["desired", "chunk"]


def test_deploy_config_pins_client_ids_to_usernames() -> None:
    lines = (REPO / "deploy" / "mosquitto.conf").read_text().splitlines()
    assert "use_username_as_clientid true" in lines


@pytest.mark.parametrize("name", ["tinyfleet-server", "tinyfleet-x1", "Gateway", "svc.gw"])
def test_service_names_outside_the_device_namespace(name: str) -> None:
    assert not is_device_id(name)
    assert check_service_username(name) == name


@pytest.mark.parametrize("name", ["gateway", "dev-1", "srv"])
def test_service_names_a_device_could_take_are_refused(name: str) -> None:
    assert is_device_id(name)
    with pytest.raises(ValueError, match="could also be a device id"):
        check_service_username(name)


def test_reserved_device_ids() -> None:
    assert check_device_id("dev-1") == "dev-1"
    with pytest.raises(ValueError, match="reserved"):
        check_device_id("tinyfleet-server")
    with pytest.raises(ValueError, match=r"3\.\.64 characters"):
        check_device_id("A")


def test_password_entries_never_let_a_device_shadow_the_gateway() -> None:
    services = [("tinyfleet-server", "$7$gw")]
    devices = [("dev-a", "$7$a"), ("tinyfleet-server", "$7$evil"), ("Bad:Id", "$7$b")]
    assert password_entries(services, devices) == [("tinyfleet-server", "$7$gw"), ("dev-a", "$7$a")]


def test_server_refuses_an_mqtt_user_in_the_device_namespace(tmp_path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'db'}",
        data_dir=tmp_path / "data",
        mqtt_url="mqtt://gateway:secret@127.0.0.1:1883",
    ).validate()
    with pytest.raises(ConfigError, match=r"TINYFLEET_MQTT_URL: MQTT user 'gateway' could also be a device"):
        AppContext(settings)


def test_server_refuses_an_unknown_password_file_group(tmp_path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'db'}",
        data_dir=tmp_path / "data",
        mqtt_password_file=tmp_path / "passwd",
        mqtt_password_file_group="no-such-group-tf",
    ).validate()
    with pytest.raises(ConfigError, match="TINYFLEET_MQTT_PASSWORD_FILE_GROUP: no group 'no-such-group-tf'"):
        AppContext(settings)


def test_provisioning_refuses_reserved_ids(api) -> None:
    r = api.client.post("/api/devices", json={"id": "tinyfleet-server", "hardware_class": 1})
    assert r.status_code == 422
    assert "reserved" in r.text and "tinyfleet-" in r.text
    assert api.client.post("/api/devices", json={"id": "dev-ok", "hardware_class": 1}).status_code == 201
