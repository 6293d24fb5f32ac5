"""Settings from the environment; production refuses development defaults."""

from __future__ import annotations

import pytest

from tinyfleet.server.config import DEFAULT_API_TOKEN, ConfigError, MqttUrl, settings_from_env


def test_development_defaults():
    s = settings_from_env({})
    assert (
        s.mode == "development" and s.api_token == DEFAULT_API_TOKEN and s.database_url.startswith("sqlite")
    )


STRONG_TOKEN = "q7Vx-3mZp_R8tLw2Kd9sYb4Nf6Hc1Je0GuAo5XiT"  # 40 random URL-safe characters
PRODUCTION = {
    "TINYFLEET_MODE": "production",
    "TINYFLEET_API_TOKEN": STRONG_TOKEN,
    "TINYFLEET_SIGNING_KEY": "/k.pem",
    "TINYFLEET_DATABASE_URL": "postgresql+psycopg://x/y",
}


def test_production_refuses_default_secret_key_and_database():
    with pytest.raises(ConfigError) as info:
        settings_from_env({"TINYFLEET_MODE": "production"})
    message = str(info.value)
    assert "TINYFLEET_API_TOKEN" in message and "TINYFLEET_SIGNING_KEY" in message
    assert "TINYFLEET_DATABASE_URL" in message
    assert "\n" not in message
    assert settings_from_env(PRODUCTION).production


@pytest.mark.parametrize(
    "token",
    [
        "short",
        "0123456789abcdef",  # the 16 characters production used to accept
        "x" * 64,
        "abcdefghijklmnopqrstuvwxyzABCDEF",  # sequential
        "0123456789" * 4,
        "passwordpasswordpasswordpassword",  # a repeated block
        "Tr0ub4dor&3Tr0ub4dor&3Tr0ub4dor&3",
        "aB1!" * 10,
        "12345678901234567890123456789012",  # 32 digits: about 106 bits at most
    ],
)
def test_production_refuses_weak_tokens(token):
    with pytest.raises(ConfigError, match="TINYFLEET_API_TOKEN is too weak"):
        settings_from_env({**PRODUCTION, "TINYFLEET_API_TOKEN": token})


def test_production_accepts_generated_tokens():
    import secrets

    for _ in range(50):
        for token in (secrets.token_urlsafe(32), secrets.token_hex(32), secrets.token_urlsafe(24)):
            assert settings_from_env({**PRODUCTION, "TINYFLEET_API_TOKEN": token}).production


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///./prod.db",
        "SQLITE:///prod.db",
        "Sqlite:////var/lib/prod.db",
        "sqlite+pysqlite:///prod.db",
        "sqlite+aiosqlite:///prod.db",
        "sqlite://",
        "  sqlite:///prod.db",
        "file:prod.db",
        "/var/lib/tinyfleet/prod.db",
        "./prod.db",
        "prod.db",
    ],
)
def test_production_refuses_sqlite_however_spelled(url):
    with pytest.raises(ConfigError, match="TINYFLEET_DATABASE_URL is SQLite"):
        settings_from_env({**PRODUCTION, "TINYFLEET_DATABASE_URL": url})


def test_body_limits_from_the_environment():
    s = settings_from_env({"TINYFLEET_MAX_UPLOAD_BYTES": "1000", "TINYFLEET_MAX_JSON_BYTES": "100"})
    assert (s.max_upload_bytes, s.max_json_bytes) == (1000, 100)
    assert settings_from_env({}).max_upload_bytes == 16 * 1024 * 1024
    with pytest.raises(ConfigError, match="must be positive"):
        settings_from_env({"TINYFLEET_MAX_UPLOAD_BYTES": "0"})


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


def test_model_check_wall_time_is_a_separate_backstop():
    settings = settings_from_env({"TINYFLEET_MODEL_CHECK_WALL_SECONDS": "300"})
    assert (settings.model_check_seconds, settings.model_check_wall_seconds) == (20.0, 300.0)
    assert settings_from_env({}).model_check_wall_seconds > settings_from_env({}).model_check_seconds
    with pytest.raises(ConfigError, match="TINYFLEET_MODEL_CHECK_WALL_SECONDS must be positive"):
        settings_from_env({"TINYFLEET_MODEL_CHECK_WALL_SECONDS": "0"})
