"""`tinyfleet devices provision --count / --from`: one call, credentials to a new 0600 file, never printed."""

from __future__ import annotations

import csv
import json
import stat

import pytest
from typer.testing import CliRunner

from tinyfleet.cli import app
from tinyfleet.server.cli.bulk_devices import CsvError, read_devices_csv


def _rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_count_and_from_write_credentials_to_a_private_file(cli_server, tmp_path):
    creds = tmp_path / "creds.csv"
    code, out = run(
        "devices",
        "provision",
        "--count",
        "25",
        "--prefix",
        "cli",
        "--hardware-class",
        "2",
        "--out",
        str(creds),
    )
    assert code == 0, out
    assert "provisioned 25 devices (cli-00000 .. cli-00024)" in out and str(creds) in out
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    rows = _rows(creds)
    assert len(rows) == 25 and rows[3]["id"] == rows[3]["username"] == "cli-00003"
    assert all(r["password"] not in out for r in rows)  # never on the terminal
    # the file is never overwritten: those passwords exist nowhere else
    code, out = run("devices", "provision", "--count", "2", "--hardware-class", "2", "--out", str(creds))
    assert code == 1 and "exists already" in out and len(_rows(creds)) == 25

    src = tmp_path / "devices.csv"
    src.write_text("id,hardware_class,group,tags\nlab-1,7,lab,a;b\nlab-2,7,,\n")
    code, out = run("devices", "provision", "--from", str(src), "--out", str(tmp_path / "lab.csv"), "--json")
    assert code == 0, out
    code, out = run("devices", "show", "lab-1", "--json")
    shown = json.loads(out)
    assert (shown["group"], shown["tags"], shown["hardware_class"]) == ("lab", ["a", "b"], 7)

    # a conflict creates nothing and leaves no credentials file behind
    code, out = run("devices", "provision", "--from", str(src), "--out", str(tmp_path / "again.csv"))
    assert code == 1 and "exist already" in out and len(out.strip().splitlines()) == 1
    assert not (tmp_path / "again.csv").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,hardware_class\nx,1\n", "line 1: the header must name id and hardware_class"),
        (
            "id,hardware_class\nabc,one\n",
            "line 2: hardware_class must be an integer 0..4294967295, got 'one'",
        ),
        ("id,hardware_class\n,1\n", "line 2: id is empty"),
        ("id,hardware_class\nabc,1,extra\n", "line 2: more fields than the header has"),
        ("id,hardware_class\n", "no devices"),
    ],
)
def test_csv_errors_are_one_line(tmp_path, text, message):
    src = tmp_path / "devices.csv"
    src.write_text(text)
    with pytest.raises(CsvError) as caught:
        read_devices_csv(src)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    code, out = run("devices", "provision", "--from", str(src), "--out", str(tmp_path / "c.csv"))
    assert code == 1 and message in out and len(out.strip().splitlines()) == 1
    assert not (tmp_path / "c.csv").exists()
