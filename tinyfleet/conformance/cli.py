"""`tinyfleet conformance run`: the device conformance kit on the command line (docs/CONFORMANCE.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from tinyfleet.conformance.environment import KitError

conformance_app = typer.Typer(
    add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True, help="Device conformance kit."
)


@conformance_app.command("run")
def run(
    device_cmd: str = typer.Option(
        ...,
        "--device-cmd",
        help="command that starts the device under test; {provisioning}, {state_dir}, {host}, {port}"
        " are replaced (also in the environment as TINYFLEET_PROVISIONING, TINYFLEET_STATE_DIR,"
        " TINYFLEET_MQTT_HOST, TINYFLEET_MQTT_PORT)",
    ),
    junit: Path | None = typer.Option(None, "--junit", help="write a JUnit XML report here"),
    workdir: Path | None = typer.Option(
        None,
        "--workdir",
        help="keep broker, server data and device log here (default: a temporary directory)",
    ),
    device_id: str = typer.Option("conformance-0001", "--device-id", help="id to provision the device with"),
    hardware_class: int = typer.Option(
        1, "--hardware-class", min=0, max=0xFFFFFFFF, help="The device's hardware class id (PROTOCOL 1.1)."
    ),
    timeout: float = typer.Option(
        120.0, "--timeout", min=5.0, help="seconds a scenario waits for the device"
    ),
    only: list[str] = typer.Option(
        [], "--only", help="run only these scenarios (repeatable; connect always runs)"
    ),
    list_scenarios: bool = typer.Option(False, "--list", help="list the scenarios and exit"),
) -> None:
    """Run every scenario against a device; exit status 0 only if all pass."""
    from tinyfleet.conformance.runner import ALL_SCENARIOS, junit_xml, print_report, run_scenarios

    # Not a terminal (CI logs): wide enough that each scenario's reason stays on one or two lines.
    console = Console(width=None if sys.stdout.isatty() else 160)
    if list_scenarios:
        for s in ALL_SCENARIOS:
            console.print(f"{s.name:26} {s.section:14} {s.checks}")
        raise typer.Exit(0)
    unknown = set(only) - {s.name for s in ALL_SCENARIOS}
    if unknown:
        Console(stderr=True).print(
            f"[red]error:[/] unknown scenario(s): {', '.join(sorted(unknown))} (see --list)"
        )
        raise typer.Exit(2)

    def progress(outcome: object) -> None:
        o = outcome  # runner.Outcome
        mark = "[green]pass[/]" if o.passed else "[red]FAIL[/]"  # type: ignore[attr-defined]
        console.print(f"{mark} {o.scenario.name}: {o.reason}")  # type: ignore[attr-defined]

    try:
        outcomes = run_scenarios(
            device_cmd,
            workdir=workdir,
            device_id=device_id,
            hardware_class=hardware_class,
            timeout=timeout,
            only=frozenset(only) if only else None,
            on_outcome=progress,
        )
    except KitError as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    print_report(outcomes, console)
    if junit is not None:
        junit.write_bytes(junit_xml(outcomes))
        console.print(f"JUnit XML: {junit}")
    raise typer.Exit(0 if outcomes and all(o.passed for o in outcomes) else 1)
