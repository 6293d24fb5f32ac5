"""`tinyfleet simulate` finds its server like every other command (TINYFLEET_API_URL, TINYFLEET_API_TOKEN)
and never takes over a device it did not create.

Before the fix it provisioned against the default port whatever TINYFLEET_API_URL said, and when an id
existed (HTTP 409) it re-issued that device's credentials: the real device using them was locked out of
the broker for good. Now a 409 stops it with one line before anything changes on the server, unless
`--take-over` asks for exactly that.

A real broker (per-device passwords) and the real control plane in-process, which reloads the broker
itself (pid file) whenever it issues credentials.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.e2e_harness import require_tools, wait_for
from tests.support.mqtt_probe import connects, try_login
from tinyfleet.cli import app
from tinyfleet.server.devbroker import DevBroker
from tinyfleet.server.services.credentials import hash_password, write_password_file
from tinyfleet.server.stack import Stack, run_stack

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]  # real broker, server and fleet processes

TOKEN = "simulate-test-token"


@dataclass
class Env:
    stack: Stack
    broker: DevBroker
    password_file: Path

    def devices(self, prefix: str) -> dict[str, dict[str, object]]:
        with self.stack.client() as c:
            return {d["id"]: d for d in c.get("/api/devices").json() if d["id"].startswith(prefix + "-")}

    def provision(self, device_id: str) -> tuple[str, str]:
        """A device of someone else's (a real board): its MQTT username and password."""
        with self.stack.client() as c:
            resp = c.post("/api/devices", json={"id": device_id, "hardware_class": 1})
            resp.raise_for_status()
            mqtt = resp.json()["mqtt"]
        return mqtt["username"], mqtt["password"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    require_tools()
    tmp = tmp_path_factory.mktemp("simulate-server")
    passwd = tmp / "mosquitto.passwd"
    write_password_file(passwd, [("tinyfleet-server", hash_password("gateway-secret"))])
    with DevBroker(password_file=passwd, admin_users=["tinyfleet-server"]) as broker:
        pid_file = tmp / "mosquitto.pid"
        pid_file.write_text(f"{broker.pid}\n")
        url = f"mqtt://tinyfleet-server:gateway-secret@127.0.0.1:{broker.port}"
        with run_stack(
            url,
            data_dir=tmp / "server",
            mqtt_password_file=passwd,
            mqtt_broker_pid_file=pid_file,
            api_token=TOKEN,
        ) as stack:
            yield Env(stack, broker, passwd)


def _simulate(*args: str, env_vars: dict[str, str] | None = None) -> tuple[int, str]:
    cmd = ["simulate", "--processes", "1", *args]
    result = CliRunner().invoke(app, cmd, env=env_vars)
    return result.exit_code, result.output


def test_simulate_honours_tinyfleet_api_url_and_token(env: Env) -> None:
    # No --api and no --token: only the environment names this server (not on the default port 8000).
    assert not env.stack.url.endswith(":8000")
    code, out = _simulate(
        "--devices",
        "2",
        "--prefix",
        "envurl",
        "--duration",
        "3",
        env_vars={"TINYFLEET_API_URL": env.stack.url, "TINYFLEET_API_TOKEN": TOKEN},
    )
    assert code == 0, out
    devices = env.devices("envurl")
    assert sorted(devices) == ["envurl-00000", "envurl-00001"]
    assert all(d["reported"] is not None for d in devices.values()), "every device came online"
    last = out.strip().splitlines()[-1]
    assert last.startswith("ran 2 devices for "), f"a one-line summary at the end, got: {last!r}"
    assert "2 online at the end" in last and "0 failed" in last


def test_simulate_refuses_to_take_over_an_existing_device(env: Env) -> None:
    username, password = env.provision("plant-00001")
    assert connects(env.broker.port, username, password)
    before = env.devices("plant")
    passwd_before = env.password_file.read_bytes()

    code, out = _simulate("--devices", "3", "--prefix", "plant", "--api", env.stack.url, "--token", TOKEN)

    assert code == 1
    assert "Traceback" not in out
    line = out.strip()
    assert "\n" not in line, f"one line, got: {out!r}"
    assert "plant-00001 already exist" in line
    assert "--prefix" in line and "--take-over" in line
    # Nothing changed on the server: no new device, no new password for the existing one.
    assert env.devices("plant") == before
    assert env.password_file.read_bytes() == passwd_before
    assert try_login(env.broker.port, username, password), "the real device's credentials still work"


def test_simulate_refusal_names_many_existing_ids_briefly(env: Env) -> None:
    for i in range(6):
        env.provision(f"many-{i:05d}")
    code, out = _simulate("--devices", "8", "--prefix", "many", "--api", env.stack.url, "--token", TOKEN)
    assert code == 1
    assert "many-00000, many-00001, many-00002, ... many-00005 (6 devices) already exist" in out
    assert sorted(env.devices("many")) == [f"many-{i:05d}" for i in range(6)]


def test_simulate_take_over_reissues_credentials_and_runs_the_devices(env: Env) -> None:
    username, password = env.provision("taken-00000")
    assert connects(env.broker.port, username, password)

    code, out = _simulate(
        "--devices", "2", "--prefix", "taken", "--api", env.stack.url, "--token", TOKEN,
        "--take-over", "--duration", "3",
    )  # fmt: skip

    assert code == 0, out
    assert "taking over taken-00000" in out
    devices = env.devices("taken")
    assert sorted(devices) == ["taken-00000", "taken-00001"]
    assert all(d["reported"] is not None for d in devices.values()), "every device came online"
    # The old credentials were replaced (the server reloads the broker asynchronously).
    wait_for(
        lambda: not try_login(env.broker.port, username, password), 20, "the old password to stop working"
    )


def test_take_over_gives_the_device_a_new_encryption_key(env: Env) -> None:
    """A taken-over device needs an X25519 private key too: the server keeps only the public half, so the
    take-over issues a new pair (the old wraps dropped) and the simulated device gets its private key."""
    import base64

    from tinyfleet.signing.encryption import public_key_of
    from tinyfleet.sim.server_api import ServerApi

    env.provision("keyed-00000")
    old_public = env.devices("keyed")["keyed-00000"]["encryption_public_key"]
    with ServerApi(env.stack.url, TOKEN) as api:
        got = api.provision("keyed-00000", 1, take_over=True)
    assert got.encryption_key is not None
    new_public = env.devices("keyed")["keyed-00000"]["encryption_public_key"]
    assert new_public != old_public
    assert public_key_of(base64.b64decode(got.encryption_key)).hex() == new_public
