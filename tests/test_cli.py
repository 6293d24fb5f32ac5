"""The `tinyfleet` entry point: usage mistakes and failures are one line with a non-zero exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.paths import VECTORS


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tinyfleet.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("sign", "verify"), "Missing argument"),
        (("no-such-command",), "No such command"),
        (("models", "compress", "--task", "imagenet", "--out", "x.tflite"), "unknown task"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(args: tuple[str, ...], needle: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "--help" in lines[0]
    assert "Traceback" not in result.stderr


def test_a_refused_package_is_one_line() -> None:
    result = run("sign", "inspect", "/no/such/file.tfpkg")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1


def test_the_package_alias_of_sign_still_works_and_is_hidden() -> None:
    """`tinyfleet package ...` is the former name of `sign`: hidden from --help, kept for one release."""
    listed = run("--help")
    assert listed.returncode == 0
    assert " sign " in listed.stdout and " packages " in listed.stdout
    assert " package " not in listed.stdout

    alias = run("package", "inspect", str(VECTORS / "good.tfpkg"), "--json")
    direct = run("sign", "inspect", str(VECTORS / "good.tfpkg"), "--json")
    assert alias.returncode == direct.returncode == 0
    assert alias.stdout == direct.stdout and json.loads(alias.stdout)["model_name"]
    assert [line for line in alias.stderr.splitlines() if line.strip()] == [
        "note: 'tinyfleet package' is deprecated; use 'tinyfleet sign' (same commands)"
    ]
    assert direct.stderr.strip() == ""

    refused = run("package", "inspect", "/no/such/file.tfpkg")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr + refused.stdout
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "/no/such/file.tfpkg" in errors[0]


def _walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _walk(sub, (*path, name))


def _command_tree() -> list[tuple[tuple[str, ...], Any]]:
    import typer.main

    from tinyfleet.cli import app

    return list(_walk(typer.main.get_command(app), ("tinyfleet",)))


def test_every_option_and_argument_has_help() -> None:
    """Walks the whole command tree (every group, every command, hidden ones too)."""
    tree = _command_tree()
    assert len(tree) > 30  # the walk did reach the sub-commands
    missing = [
        f"{' '.join(path)} {param.param_type_name} {param.name}"
        for path, command in tree
        for param in command.params
        if not (getattr(param, "help", None) or "").strip()
    ]
    assert missing == [], "options or arguments without help:\n" + "\n".join(missing)


def test_every_command_has_help_text() -> None:
    undocumented = [" ".join(path) for path, command in _command_tree() if not (command.help or "").strip()]
    assert undocumented == []


def test_version() -> None:
    from tinyfleet import __version__

    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"tinyfleet {__version__}"


@pytest.mark.parametrize(
    "args", [(), ("rollouts",), ("rollouts", "create"), ("sign", "inspect"), ("server", "status")]
)
def test_h_is_an_alias_of_help_everywhere(args: tuple[str, ...]) -> None:
    short, long = run(*args, "-h"), run(*args, "--help")
    assert short.returncode == long.returncode == 0, short.stderr
    assert short.stdout == long.stdout and "Usage:" in short.stdout
