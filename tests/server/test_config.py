"""Settings from the environment; production refuses development defaults."""

from __future__ import annotations

import pytest

from tinyfleet.server.config import DEFAULT_API_TOKEN, ConfigError, MqttUrl, settings_from_env


def test_development_defaults():
    s = settings_from_env({})
    assert (
        s.mode == "development" and s.api_token == DEFAULT_API_TOKEN and s.database_url.startswith("sqlite")
    )


def test_production_refuses_default_secret_key_and_database():
    with pytest.raises(ConfigError) as info:
        settings_from_env({"TINYFLEET_MODE": "production"})
    message = str(info.value)
    assert "TINYFLEET_API_TOKEN" in message and "TINYFLEET_SIGNING_KEY" in message
    assert "TINYFLEET_DATABASE_URL" in message
    with pytest.raises(ConfigError, match="shorter than 16"):
        settings_from_env(
            {
                "TINYFLEET_MODE": "production",
                "TINYFLEET_API_TOKEN": "short",
                "TINYFLEET_SIGNING_KEY": "/k.pem",
                "TINYFLEET_DATABASE_URL": "postgresql://x/y",
            }
        )
    ok = settings_from_env(
        {
            "TINYFLEET_MODE": "production",
            "TINYFLEET_API_TOKEN": "x" * 32,
            "TINYFLEET_SIGNING_KEY": "/k.pem",
            "TINYFLEET_DATABASE_URL": "postgresql://x/y",
        }
    )
    assert ok.production


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"TINYFLEET_MODE": "staging"}, "TINYFLEET_MODE"),
        ({"TINYFLEET_CHUNK_SIZE": "10"}, "TINYFLEET_CHUNK_SIZE"),
        ({"TINYFLEET_CHUNK_SIZE": "big"}, "must be a number"),
        ({"TINYFLEET_TICK_SECONDS": "0"}, "positive"),
        ({"TINYFLEET_MQTT_URL": "http://broker"}, "mqtt://"),
        ({"TINYFLEET_MQTT_URL": "mqtt://broker:99999"}, "invalid port"),
    ],
)
def test_bad_settings_are_one_clear_error(env, fragment):
    with pytest.raises(ConfigError, match=fragment):
        settings_from_env(env)


def test_mqtt_url():
    url = MqttUrl.parse("mqtts://user:pw@broker.example")
    assert (url.host, url.port, url.username, url.password, url.tls) == (
        "broker.example",
        8883,
        "user",
        "pw",
        True,
    )
    assert MqttUrl.parse("mqtt://h").port == 1883


def test_missing_signing_key_is_a_config_error(tmp_path):
    from pathlib import Path

    from tinyfleet.server.config import Settings
    from tinyfleet.server.services.signer import load_server_keys

    with pytest.raises(ConfigError, match="signing keys"):
        load_server_keys(Settings(signing_key_path=Path(tmp_path / "nope.pem"), data_dir=tmp_path))
    keys = load_server_keys(Settings(data_dir=tmp_path))
    again = load_server_keys(Settings(data_dir=tmp_path))
    assert keys.key_id_hex == again.key_id_hex  # the development key is kept across restarts
