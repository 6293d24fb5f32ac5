"""The conformance kit against real devices: the reference device (examples/), the simulated agent over
the host C runtime, the firmware under QEMU; and a deliberately broken device fails the right
scenarios (the kit can fail). Real broker, real control plane, device processes."""

from __future__ import annotations

import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.support.e2e_harness import require_tools
from tests.support.paths import REPO
from tinyfleet.conformance.runner import ALL_SCENARIOS, Outcome, junit_xml, run_scenarios

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PY = shlex.quote(sys.executable)
REFERENCE = (
    f"{PY} {shlex.quote(str(REPO / 'examples' / 'reference_device' / 'device.py'))}"
    " --provisioning {provisioning} --state-dir {state_dir} --telemetry-period 1"
)
SIMULATED = f"{PY} -m tinyfleet.sim.one_device --provisioning {{provisioning}} --state-dir {{state_dir}}"


def _verdicts(outcomes: list[Outcome]) -> dict[str, bool]:
    return {o.scenario.name: o.passed for o in outcomes}


def _all_pass(outcomes: list[Outcome]) -> None:
    failed = [f"{o.scenario.name}: {o.reason}" for o in outcomes if not o.passed]
    assert not failed, "\n".join(failed)
    assert [o.scenario.name for o in outcomes] == [s.name for s in ALL_SCENARIOS]


def _kit_logins_kept(kit_dir: Path) -> None:
    """No login of a kit account closed another of the same account (the broker takes the username as
    client id): two player connections that took turns so stalled duplicated-chunks under load."""
    log = (kit_dir / "broker" / "mosquitto.log").read_text(errors="replace").splitlines()
    taken = [line for line in log if "Client tinyfleet-" in line and "already connected" in line]
    assert not taken, taken


def test_the_reference_device_passes_every_scenario(tmp_path: Path) -> None:
    require_tools()
    outcomes = run_scenarios(REFERENCE, workdir=tmp_path / "kit")
    _all_pass(outcomes)
    _kit_logins_kept(tmp_path / "kit")
    # It reports no payload decoder: raw packages only, and the kit checked exactly that.
    assert "encoding 0" in {o.scenario.name: o.reason for o in outcomes}["install-delta"]
    suite = ET.fromstring(junit_xml(outcomes)).find("testsuite")
    assert (
        suite is not None and suite.get("failures") == "0" and suite.get("tests") == str(len(ALL_SCENARIOS))
    )


def test_a_broken_device_fails_the_scenarios_of_its_defects(tmp_path: Path) -> None:
    """The reference device with four defects: it accepts bad signatures, never re-asks for a lost
    chunk, starts downloads over after a restart and ignores the arena size. Exactly those scenarios
    fail."""
    require_tools()
    broken = (
        REFERENCE + " --fault accept-bad-signature --fault no-reask --fault no-resume --fault ignore-arena"
    )
    judged = {"resume-after-restart", "refuses-bad-signature", "refuses-replayed", "lost-and-garbled-chunks"}
    judged |= {"refuses-oversized", "duplicated-chunks"}
    outcomes = run_scenarios(broken, workdir=tmp_path / "kit", only=frozenset(judged), timeout=40)
    verdicts = _verdicts(outcomes)
    assert verdicts == {
        "connect": True,
        "resume-after-restart": False,
        "refuses-bad-signature": False,
        "refuses-replayed": True,  # a correct check of this device, run in the same session
        "lost-and-garbled-chunks": False,
        "refuses-oversized": False,
        "duplicated-chunks": True,
    }, [(o.scenario.name, o.reason) for o in outcomes]
    reasons = {o.scenario.name: o.reason for o in outcomes}
    assert "instead of resuming" in reasons["resume-after-restart"]
    assert "BAD_SIGNATURE (5)" in reasons["refuses-bad-signature"]  # a different code, or none
    assert "no final status" in reasons["lost-and-garbled-chunks"]
    assert "expected failed with ARENA_TOO_LARGE (37)" in reasons["refuses-oversized"]


def test_the_cli_exits_non_zero_and_writes_junit_for_a_failing_device(tmp_path: Path) -> None:
    require_tools()
    junit = tmp_path / "report.xml"
    broken = REFERENCE + " --fault accept-bad-signature"
    cmd = [sys.executable, "-m", "tinyfleet.cli", "conformance", "run", "--device-cmd", broken]
    cmd += ["--only", "refuses-bad-signature", "--junit", str(junit), "--workdir", str(tmp_path / "kit")]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "1 passed, 1 failed" in result.stdout
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert cases["connect"].find("failure") is None
    failure = cases["refuses-bad-signature"].find("failure")
    assert failure is not None and "BAD_SIGNATURE" in (failure.get("message") or "")


def test_the_simulated_agent_passes_every_scenario(tmp_path: Path) -> None:
    require_tools()
    outcomes = run_scenarios(SIMULATED, workdir=tmp_path / "kit")
    _all_pass(outcomes)
    _kit_logins_kept(tmp_path / "kit")
    reasons = {o.scenario.name: o.reason for o in outcomes}
    # It decodes (capabilities), so it got the compressed and the delta variants.
    assert "encoding 1" in reasons["install-compressed"] and "encoding 2" in reasons["install-delta"]


@pytest.mark.qemu
def test_the_qemu_firmware_passes_every_scenario(tmp_path: Path) -> None:
    require_tools()
    from tinyfleet.sim.qemu_transport import qemu_unavailable

    missing = qemu_unavailable()
    if missing:
        pytest.skip(missing)
    outcomes = run_scenarios(SIMULATED + " --qemu", workdir=tmp_path / "kit", timeout=240)
    _all_pass(outcomes)
    _kit_logins_kept(tmp_path / "kit")


def test_a_broker_acl_that_is_too_wide_fails_acl_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kit's broker with one extra ACL line letting every device read and write all of tf/: the
    acl-limits scenario must catch it (the kit can fail it)."""
    require_tools()
    from tinyfleet.server import devbroker
    from tinyfleet.server.broker_acl import render_acl

    monkeypatch.setattr(devbroker, "render_acl", lambda users: render_acl(users) + "pattern readwrite tf/#\n")
    outcomes = run_scenarios(REFERENCE, workdir=tmp_path / "kit", only=frozenset({"acl-limits"}), timeout=40)
    assert _verdicts(outcomes) == {"connect": True, "acl-limits": False}, [o.reason for o in outcomes]
    assert "credentials could read tf/conformance-other/" in outcomes[-1].reason
