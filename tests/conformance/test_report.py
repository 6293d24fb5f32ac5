"""The kit's report (JUnit XML, table) and command line, without a device."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from tests.support.paths import REPO
from tinyfleet.cli import app
from tinyfleet.conformance.environment import DeviceProcess, KitError
from tinyfleet.conformance.runner import ALL_SCENARIOS, Outcome, by_section, junit_xml, print_report

LOST = next(s for s in ALL_SCENARIOS if s.name == "lost-and-garbled-chunks")


def _outcomes() -> list[Outcome]:
    return [
        Outcome(ALL_SCENARIOS[0], True, "online", 1.5),
        Outcome(LOST, False, "did not ask again for offset 292", 40.0),
    ]


def test_junit_has_one_testcase_per_scenario_and_the_failure_reason() -> None:
    root = ET.fromstring(junit_xml(_outcomes()))
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    cases = list(suite.iter("testcase"))
    assert [c.get("name") for c in cases] == [ALL_SCENARIOS[0].name, LOST.name]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("message") == "did not ask again for offset 292"
    assert cases[1].get("classname") == f"PROTOCOL {LOST.section}"


def test_the_table_names_each_scenario_and_counts() -> None:
    console = Console(record=True, width=200)
    print_report(_outcomes(), console)
    text = console.export_text()
    assert "lost-and-garbled-chunks" in text and "FAIL" in text and "1 passed, 1 failed" in text


def test_scenario_names_are_unique() -> None:
    names = [s.name for s in ALL_SCENARIOS]
    assert len(names) == len(set(names)) and names[0] == "connect"


def test_cli_lists_scenarios_and_refuses_unknown_ones() -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["conformance", "run", "--device-cmd", "x", "--list"])
    assert listed.exit_code == 0 and "refuses-replayed" in listed.output
    bad = runner.invoke(app, ["conformance", "run", "--device-cmd", "x", "--only", "nope"])
    assert bad.exit_code == 2 and "unknown scenario" in bad.output


def test_a_device_command_that_cannot_be_parsed_is_one_clear_error(tmp_path: Path) -> None:
    values = {"provisioning": "p.json", "state_dir": "s", "host": "127.0.0.1", "port": "1883"}
    with pytest.raises(KitError, match="cannot be parsed"):
        DeviceProcess("device --x {nope}", values, tmp_path / "log")
    with pytest.raises(KitError, match="cannot be parsed"):
        DeviceProcess("device 'unclosed", values, tmp_path / "log")
    argv = DeviceProcess("dev --p {provisioning} --port {port}", values, tmp_path / "log").argv
    assert argv == ["dev", "--p", "p.json", "--port", "1883"]


def test_the_report_groups_outcomes_per_protocol_section() -> None:
    outcomes = _outcomes()
    groups = by_section(outcomes)
    assert list(groups) == ["4.2", "4.3", "4.6"]  # document order; a scenario counts for each section
    assert [o.scenario.name for o in groups["4.2"]] == ["connect"]
    console = Console(record=True, width=200)
    print_report(outcomes, console)
    text = console.export_text()
    assert "per PROTOCOL section" in text and "lost-and-garbled-chunks (FAIL)" in text
    suite = ET.fromstring(junit_xml(outcomes)).find("testsuite")
    assert suite is not None
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props == {
        "PROTOCOL 4.2": "1/1 passed",
        "PROTOCOL 4.3": "0/1 passed",
        "PROTOCOL 4.6": "1/1 passed",
    }


def test_every_scenario_names_sections_that_exist_in_protocol() -> None:
    protocol = (REPO / "docs" / "PROTOCOL.md").read_text()
    for scenario in ALL_SCENARIOS:
        for section in scenario.section.split(","):
            number = section.strip()
            heading = f"## {number}. " if "." not in number else f"### {number} "
            assert heading in protocol, (scenario.name, number)
