"""`tinyfleet simulate` against a running control plane, and its error messages."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.e2e_harness import e2e_env
from tinyfleet.cli import app

pytestmark = pytest.mark.timeout(180)


@pytest.mark.slow  # measured > 3 s
def test_simulate_provisions_and_runs_devices(tmp_path: Path) -> None:
    with e2e_env(tmp_path) as env:
        broker = f"mqtt://{env.broker.host}:{env.broker.port}"
        args = ["simulate", "--devices", "3", "--server", env.api.base_url, "--mqtt", broker]
        args += ["--token", "tinyfleet-dev-token", "--prefix", "cli", "--group", "cli", "--duration", "4"]
        # The server writes new device passwords into the broker's password file; an operator's broker
        # re-reads it on SIGHUP. Here a thread plays the operator while the command runs.
        stop = threading.Event()

        def reload_broker() -> None:
            while not stop.wait(0.3):
                env.broker.reload()

        reloader = threading.Thread(target=reload_broker, daemon=True)
        reloader.start()
        try:
            result = CliRunner().invoke(app, args)
        finally:
            stop.set()
            reloader.join()
        assert result.exit_code == 0, result.output
        devices = [d for d in env.api.devices() if d["id"].startswith("cli-")]
        assert sorted(d["id"] for d in devices) == ["cli-00000", "cli-00001", "cli-00002"]
        assert all(d["group"] == "cli" for d in devices)
        # Each one connected with its provisioned credentials and reported its runtime's state.
        assert all(d["reported"] is not None and d["reported"]["phase"] == "idle" for d in devices)
        assert "simulated fleet" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--server", "http://127.0.0.1:1"], "cannot reach the server"),
        (["--profile", "toaster"], "unknown device profile"),
        (["--mqtt", "http://broker"], "--mqtt must look like"),
        (["--qemu", "2"], "--qemu 2 is more than --devices 1"),
    ],
)
def test_simulate_reports_bad_input_clearly(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["simulate", "--devices", "1", *args])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_qemu_devices_are_the_first_ones_without_power_cut_injection() -> None:
    from tinyfleet.sim.cli import MAX_QEMU_DEVICES, run_on_qemu
    from tinyfleet.sim.fleet import DeviceSpec
    from tinyfleet.sim.profiles import get_profile

    base = get_profile("lan")
    cutting = replace(base, faults=replace(base.faults, power_cut_during_install=0.5))
    specs = [DeviceSpec(f"d{i}", cutting) for i in range(4)]
    out = run_on_qemu(specs, 2)
    assert [s.qemu for s in out] == [True, True, False, False]
    assert [s.profile.faults.power_cut_during_install for s in out] == [0.0, 0.0, 0.5, 0.5]
    assert out[0].profile.slot_size == cutting.slot_size
    with pytest.raises(ValueError, match="--qemu must be within"):
        run_on_qemu(specs, 5)
    many = [DeviceSpec(f"d{i}", base) for i in range(MAX_QEMU_DEVICES + 2)]
    with pytest.raises(ValueError, match="--qemu must be within"):
        run_on_qemu(many, MAX_QEMU_DEVICES + 1)


def test_provision_fleet_undoes_its_devices_when_an_id_appears_meanwhile(monkeypatch) -> None:
    """The ids are checked before the first bulk call; should another client create one of them between
    the check and a later call, the devices the earlier calls created are deleted again (nothing changed).
    Each bulk call is all or nothing on the server."""
    from tinyfleet.sim import cli
    from tinyfleet.sim.profiles import FleetMix, get_profile
    from tinyfleet.sim.server_api import DeviceExistsError, ProvisionedDevice

    class RacingApi:
        def __init__(self) -> None:
            self.created: list[str] = []
            self.deleted: list[str] = []

        def existing_device_ids(self, ids: list[str]) -> list[str]:
            return []

        def provision_bulk(self, devices: list[dict]) -> list[ProvisionedDevice]:
            ids = [d["id"] for d in devices]
            if "race-00002" in ids:
                raise DeviceExistsError(["race-00002"])
            self.created += ids
            return [ProvisionedDevice(i, i, "pw", None, None, (), 1024) for i in ids]

        def delete_device(self, device_id: str) -> None:
            self.deleted.append(device_id)

    monkeypatch.setattr(cli, "BULK_BATCH", 2)
    api = RacingApi()
    with pytest.raises(DeviceExistsError) as caught:
        cli.provision_fleet(api, 4, FleetMix.single(get_profile("lan")), "race", None)  # type: ignore[arg-type]
    assert caught.value.device_ids == ("race-00002",)
    assert api.deleted == api.created == ["race-00000", "race-00001"]
