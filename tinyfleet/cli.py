"""The `tinyfleet` command: one Typer app that mounts each area's sub-commands.

Each area owns its commands in its own module (signing/cli.py, server/cli/, sim/cli.py); this
module only assembles them and turns any escaped exception into one clear line instead of a traceback.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

from tinyfleet.conformance.cli import conformance_app
from tinyfleet.device.engine_check import refusal as engine_refusal
from tinyfleet.server.cli import register as register_server_commands
from tinyfleet.signing.cli import keys_app, package_alias_callback, set_model_check, sign_app
from tinyfleet.sim.cli import simulate

app = typer.Typer(
    name="tinyfleet",
    help="Ship compressed TinyML models to fleets of microcontrollers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # -h everywhere: Click hands these names down to every sub-command's context.
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tinyfleet")
    except PackageNotFoundError:  # running from a source tree that is not installed
        from tinyfleet import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tinyfleet {_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """Ship compressed TinyML models to fleets of microcontrollers."""


# `sign build` refuses models the device engine cannot run, with the server's upload message.
set_model_check(engine_refusal)
app.add_typer(keys_app, name="keys")
app.add_typer(sign_app, name="sign")
# The former name of `sign` (easily confused with the server's `packages`): hidden, for one release.
app.add_typer(
    sign_app,
    name="package",
    hidden=True,
    callback=package_alias_callback,
    help="Deprecated alias of 'sign'.",
)
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
app.add_typer(conformance_app, name="conformance", help="Device conformance kit (docs/CONFORMANCE.md).")


def _is_usage_error(exc: BaseException) -> bool:
    """Click's usage errors (missing or bad arguments). Typer bundles its own copy of Click, so they
    are recognised by what they carry rather than by class."""
    return callable(getattr(exc, "format_message", None)) and getattr(exc, "exit_code", None) == 2


def main() -> None:
    """Console entry point. Usage mistakes and unexpected errors become one line, never a traceback."""
    try:
        code = app(standalone_mode=False)
    except KeyboardInterrupt:
        Console(stderr=True, soft_wrap=True).print("[yellow]interrupted[/]")
        sys.exit(130)
    except Exception as exc:  # last resort: users get one line, developers can ask for the traceback
        if os.environ.get("TINYFLEET_DEBUG"):
            raise
        if _is_usage_error(exc):
            context = getattr(exc, "ctx", None)
            command = context.command_path if context is not None else "tinyfleet"
            message = exc.format_message()  # type: ignore[attr-defined]
            if message:  # empty when Click has just printed the help of a group called without a command
                err = Console(stderr=True, soft_wrap=True)
                err.print(f"[red]error:[/] {message} (see '{command} --help')")
            sys.exit(2)
        if type(exc).__name__ == "Abort":
            Console(stderr=True, soft_wrap=True).print("[yellow]interrupted[/]")
            sys.exit(130)
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {type(exc).__name__}: {exc}")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
