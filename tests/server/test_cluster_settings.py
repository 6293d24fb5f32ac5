"""Issue 16 settings: the gateway's MQTT version, a cluster's other nodes, the AMQP intake URLs."""

from __future__ import annotations

import pytest

from tinyfleet.server.amqp_intake import AmqpIntake, topic_of
from tinyfleet.server.config import ConfigError, settings_from_env


def test_defaults_keep_mqtt_5_and_no_cluster() -> None:
    s = settings_from_env({})
    assert (s.mqtt_protocol, s.mqtt_other_nodes, s.amqp_url, s.broker_auth_http) == ("5", (), None, False)


def test_cluster_settings_are_read() -> None:
    s = settings_from_env(
        {
            "TINYFLEET_MQTT_PROTOCOL": "3.1.1",
            "TINYFLEET_MQTT_OTHER_NODES": "n2:1883, n3:1884",
            "TINYFLEET_AMQP_URL": "amqp://u:p@n1:5672/%2F,amqp://u:p@n2:5672/%2F",
            "TINYFLEET_BROKER_AUTH_HTTP": "on",
        }
    )
    assert s.mqtt_protocol == "3.1.1"
    assert s.mqtt_other_nodes == (("n2", 1883), ("n3", 1884))
    assert s.broker_auth_http


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("TINYFLEET_MQTT_PROTOCOL", "4", "5 or 3.1.1"),
        ("TINYFLEET_MQTT_OTHER_NODES", "n2", "host:port"),
        ("TINYFLEET_MQTT_OTHER_NODES", "n2:99999", "host:port"),
        ("TINYFLEET_AMQP_URL", "http://n1", "amqp://"),
    ],
)
def test_bad_values_are_one_line_errors(name: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        settings_from_env({name: value})


def test_routing_keys_map_back_to_topics() -> None:
    assert topic_of("tf.pump-1.chunk.req") == "tf/pump-1/chunk/req"
    assert topic_of("tf.pump-1.status") == "tf/pump-1/status"


def test_intake_takes_one_url_per_node() -> None:
    intake = AmqpIntake.from_setting(" amqp://a/%2F , amqp://b/%2F,", lambda *_a: None)
    assert intake._urls == ["amqp://a/%2F", "amqp://b/%2F"]
    with pytest.raises(ValueError, match="at least one"):
        AmqpIntake.from_setting(" , ", lambda *_a: None)
