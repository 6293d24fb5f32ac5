"""Run the scenarios in order and report: a rich table and JUnit XML."""

from __future__ import annotations

import logging
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tinyfleet.conformance.environment import Failed, KitError, open_environment
from tinyfleet.conformance.scenarios import SERVER_SCENARIOS, Context, Scenario
from tinyfleet.conformance.scenarios_played import PLAYED_SCENARIOS

ALL_SCENARIOS = SERVER_SCENARIOS + PLAYED_SCENARIOS


@dataclass(frozen=True)
class Outcome:
    scenario: Scenario
    passed: bool
    reason: str
    seconds: float


def run_scenarios(
    device_cmd: str,
    *,
    workdir: Path | None = None,
    device_id: str = "conformance-0001",
    hardware_class: int = 1,
    timeout: float = 120.0,
    only: frozenset[str] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Start everything, run the scenarios (all, or those named in `only`), stop everything."""
    outcomes: list[Outcome] = []
    # The server's own log lines (warnings about what the device sent) would drown the report.
    server_log = logging.getLogger("tinyfleet")
    level = server_log.level
    server_log.setLevel(logging.ERROR)
    with ExitStack() as stack:
        stack.callback(server_log.setLevel, level)  # runs last: the caller gets its own logging back
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tinyfleet-conformance-")))
        env = open_environment(stack, workdir, device_cmd, device_id, hardware_class)
        ctx = Context(env, timeout)
        for scenario in ALL_SCENARIOS:
            if scenario in PLAYED_SCENARIOS:
                env.stop_server()
            if only is not None and scenario.name not in only and scenario.name != "connect":
                continue
            if outcomes and not outcomes[0].passed:  # no device to judge
                outcome = Outcome(scenario, False, "not run: the device did not connect", 0.0)
            else:
                outcome = _run_one(ctx, scenario)
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
    return outcomes


def _run_one(ctx: Context, scenario: Scenario) -> Outcome:
    started = time.monotonic()
    try:
        if not ctx.env.device.running and scenario.name != "connect":
            ctx.env.device.start()  # a scenario that stopped it failed half-way
        reason = scenario.run(ctx)
        passed = True
    except Failed as exc:
        reason, passed = str(exc).splitlines()[0] if str(exc) else "failed", False
    except KitError:
        raise
    except Exception as exc:  # a device answer the kit did not expect: a failure, not a traceback
        reason, passed = f"{type(exc).__name__}: {exc}".splitlines()[0], False
    return Outcome(scenario, passed, reason[:300], time.monotonic() - started)


def table(outcomes: list[Outcome]) -> Table:
    t = Table(title="tinyfleet device conformance")
    t.add_column("scenario")
    t.add_column("PROTOCOL")
    t.add_column("result")
    t.add_column("s", justify="right")
    t.add_column("reason")
    for o in outcomes:
        result = "[green]pass[/]" if o.passed else "[red]FAIL[/]"
        t.add_row(o.scenario.name, o.scenario.section, result, f"{o.seconds:.1f}", o.reason)
    return t


def by_section(outcomes: list[Outcome]) -> dict[str, list[Outcome]]:
    """Outcomes per PROTOCOL section, sections in document order; a scenario that names several
    sections counts for each of them."""
    groups: dict[str, list[Outcome]] = {}
    for o in outcomes:
        for section in o.scenario.section.split(","):
            groups.setdefault(section.strip(), []).append(o)
    order = sorted(groups, key=lambda sec: tuple(int(part) for part in sec.split(".")))
    return {sec: groups[sec] for sec in order}


def section_table(outcomes: list[Outcome]) -> Table:
    t = Table(title="per PROTOCOL section")
    t.add_column("PROTOCOL")
    t.add_column("result")
    t.add_column("passed", justify="right")
    t.add_column("scenarios")
    for sec, group in by_section(outcomes).items():
        passed = sum(o.passed for o in group)
        result = "[green]pass[/]" if passed == len(group) else "[red]FAIL[/]"
        names = ", ".join(o.scenario.name + ("" if o.passed else " (FAIL)") for o in group)
        t.add_row(sec, result, f"{passed}/{len(group)}", names)
    return t


def print_report(outcomes: list[Outcome], console: Console | None = None) -> None:
    console = console or Console()
    console.print(table(outcomes))
    console.print(section_table(outcomes))
    failed = sum(not o.passed for o in outcomes)
    summary = f"{len(outcomes) - failed} passed, {failed} failed"
    console.print(f"[red]{summary}[/]" if failed else f"[green]{summary}[/]")


def junit_xml(outcomes: list[Outcome]) -> bytes:
    suite = ET.Element(
        "testsuite",
        name="tinyfleet-conformance",
        tests=str(len(outcomes)),
        failures=str(sum(not o.passed for o in outcomes)),
        errors="0",
        time=f"{sum(o.seconds for o in outcomes):.3f}",
    )
    properties = ET.SubElement(suite, "properties")  # the per-section verdicts, for a CI summary
    for sec, group in by_section(outcomes).items():
        passed = sum(o.passed for o in group)
        ET.SubElement(properties, "property", name=f"PROTOCOL {sec}", value=f"{passed}/{len(group)} passed")
    for o in outcomes:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"PROTOCOL {o.scenario.section}",
            name=o.scenario.name,
            time=f"{o.seconds:.3f}",
        )
        if o.passed:
            ET.SubElement(case, "system-out").text = o.reason
        else:
            ET.SubElement(case, "failure", message=o.reason).text = o.scenario.checks
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    out: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return out
