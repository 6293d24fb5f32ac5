"""The `tinyfleet` command: one Typer app that mounts each area's sub-commands.

Each area owns its commands in its own module (signing/cli.py, server/cli.py, simulator/cli.py); this
module only assembles them and turns any escaped exception into one clear line instead of a traceback.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

from server.cli import register as register_server_commands
from signing.cli import keys_app, package_app
from simulator.cli import simulate

app = typer.Typer(
    name="tinyfleet",
    help="Ship compressed TinyML models to fleets of microcontrollers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(keys_app, name="keys")
app.add_typer(package_app, name="package")
register_server_commands(app)


@app.command("demo")
def demo(
    keep: bool = typer.Option(False, "--keep", help="leave the server up at the end and print its URL"),
    devices: int = typer.Option(200, min=1, max=5000, help="simulated devices"),
    processes: int = typer.Option(0, min=0, help="fleet worker processes (0: one per core)"),
) -> None:
    """The main job: 200 simulated devices get v1, v2 in three waves, and a bad v3 that is rolled back."""
    from tinyfleet.demo import main as demo_main

    raise typer.Exit(demo_main(keep=keep, devices=devices, processes=processes or None))


app.command("simulate")(simulate)


def main() -> None:
    """Console entry point: run the app; unexpected errors become one line and exit code 1."""
    try:
        app()
    except KeyboardInterrupt:
        Console(stderr=True).print("[yellow]interrupted[/]")
        sys.exit(130)
    except Exception as exc:  # last resort: users get one line, developers can ask for the traceback
        if os.environ.get("TINYFLEET_DEBUG"):
            raise
        Console(stderr=True).print(f"[red]error:[/] {type(exc).__name__}: {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
