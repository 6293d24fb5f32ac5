"""CLI: `keys` and `sign` commands; every error is one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests.support.model_edits import SVDF, with_operator
from tests.support.paths import REPO
from tinyfleet.device.engine_check import refusal as engine_refusal
from tinyfleet.signing import cli as signing_cli
from tinyfleet.signing.cli import keys_app, sign_app

VECTORS = REPO / "tests" / "vectors"
MODEL = VECTORS / "model.tflite"

app = typer.Typer()
app.add_typer(keys_app, name="keys")
app.add_typer(sign_app, name="sign")
runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(autouse=True)
def engine_check() -> Iterator[None]:
    """What tinyfleet/cli.py registers: `sign build` asks the device engine (the host library)."""
    signing_cli.set_model_check(engine_refusal)
    yield
    signing_cli.set_model_check(None)


@pytest.fixture
def keypair(tmp_path: Path) -> Path:
    code, out, _ = run("keys", "generate", "--out", str(tmp_path / "release"))
    assert code == 0 and "key id" in out
    return tmp_path / "release"


def build_args(tmp_path: Path, prefix: Path) -> list[str]:
    return [
        "sign",
        "build",
        str(MODEL),
        "--key",
        f"{prefix}.pem",
        "--name",
        "kws",
        "--version",
        "1.2.0",
        "--hardware-class",
        "1",
        "--out",
        str(tmp_path / "kws.tfpkg"),
    ]


def build(
    tmp_path: Path, prefix: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    return run(*build_args(tmp_path, prefix), *extra, env=env)


def test_generate_build_verify_inspect(tmp_path: Path, keypair: Path) -> None:
    code, out, _ = build(
        tmp_path,
        keypair,
        "--sequence",
        "9",
        "--security-counter",
        "2",
        "--min-runtime",
        "0.1.0",
        "--created-at",
        "1700000000",
    )
    assert code == 0 and "built" in out and "sequence 9" in out
    pkg = tmp_path / "kws.tfpkg"
    code, out, _ = run("sign", "verify", str(pkg), "--trust", f"{keypair}.pub")
    assert code == 0 and out.startswith("OK ")
    code, out, _ = run("sign", "inspect", str(pkg), "--json")
    fields = json.loads(out)
    assert fields["model_name"] == "kws" and fields["sequence"] == 9 and fields["security_counter"] == 2
    assert fields["min_runtime_version"] == "0.1.0" and fields["created_at"] == 1700000000
    assert fields["payload_digest_ok"] and fields["model_ops"] == ["FULLY_CONNECTED", "SOFTMAX"]
    code, out, _ = run("sign", "inspect", str(pkg))
    assert code == 0 and "model_sha256" in out and "arena_bytes" in out


def test_default_sequence_increases_with_time(tmp_path: Path, keypair: Path) -> None:
    code, _, _ = build(tmp_path, keypair, "--created-at", "1800000000")
    assert code == 0
    _, out, _ = run("sign", "inspect", str(tmp_path / "kws.tfpkg"), "--json")
    assert json.loads(out)["sequence"] == 1800000000


def test_passphrase_env(tmp_path: Path) -> None:
    env = {"TF_PASS": "s3cret", "TF_WRONG": "nope"}
    code, _, _ = run(
        "keys", "generate", "--out", str(tmp_path / "enc"), "--passphrase-env", "TF_PASS", env=env
    )
    assert code == 0
    code, _, err = build(tmp_path, tmp_path / "enc")
    assert code == 1 and "encrypted" in one_error_line(err)
    code, _, err = build(tmp_path, tmp_path / "enc", "--passphrase-env", "TF_WRONG", env=env)
    assert code == 1 and "wrong passphrase" in one_error_line(err)
    code, _, _ = build(tmp_path, tmp_path / "enc", "--passphrase-env", "TF_PASS", env=env)
    assert code == 0
    code, _, err = run("keys", "generate", "--out", str(tmp_path / "x"), "--passphrase-env", "TF_UNSET_VAR")
    assert code == 1 and "TF_UNSET_VAR" in one_error_line(err)


@pytest.mark.parametrize(
    ("vector", "name"),
    [
        ("bad_sig_body.tfpkg", "BAD_SIGNATURE (5)"),
        ("payload_digest.tfpkg", "DIGEST_MISMATCH (6)"),
        ("trunc_100.tfpkg", "TRUNCATED (1)"),
        ("unknown_key.tfpkg", "UNKNOWN_KEY (4)"),
        ("range_flags.tfpkg", "FIELD_RANGE (8)"),
        ("bad_magic_tflite.tfpkg", "BAD_MAGIC (2)"),
    ],
)
def test_verify_refusals_are_one_line_with_exit_2(vector: str, name: str) -> None:
    code, out, err = run("sign", "verify", str(VECTORS / vector), "--trust", str(VECTORS / "key_trusted.pub"))
    assert code == 2 and out == ""
    assert name in one_error_line(err)


def test_verify_good_vector_with_two_trusted_keys() -> None:
    code, out, _ = run(
        "sign",
        "verify",
        str(VECTORS / "good.tfpkg"),
        "--trust",
        str(VECTORS / "key_untrusted.pub"),
        "--trust",
        str(VECTORS / "key_trusted.pub"),
    )
    assert code == 0 and "OK" in out


def _build(**override: str) -> tuple[str, ...]:
    """`sign build` arguments that would succeed, with one of them made bad."""
    a = {
        "model": str(MODEL),
        "key": str(VECTORS / "key_trusted.pem"),
        "name": "x",
        "version": "1.0.0",
        "hardware_class": "1",
    } | override
    return (
        "sign", "build", a["model"], "--key", a["key"], "--name", a["name"], "--version", a["version"],
        "--hardware-class", a["hardware_class"], "--out", "/tmp/never-written.tfpkg",
    )  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        ("sign", "verify", "/nonexistent.tfpkg", "--trust", str(VECTORS / "key_trusted.pub")),
        ("sign", "verify", str(VECTORS / "good.tfpkg"), "--trust", "/nonexistent.pub"),
        ("sign", "verify", str(VECTORS / "good.tfpkg"), "--trust", str(MODEL)),
        ("sign", "inspect", str(VECTORS / "short_garbage.tfpkg")),
        _build(model=str(VECTORS / "index.json")),
        _build(key=str(VECTORS / "key_trusted.pub")),
        _build(name="x" * 40),
        _build(version="one"),
        _build(hardware_class="-1"),
        ("keys", "export-c", "/nonexistent.pub"),
        ("keys", "export-c", str(VECTORS / "key_trusted.pub"), "--name", "not valid"),
    ],
)
def test_errors_are_one_red_line(args: tuple[str, ...]) -> None:
    code, _, err = run(*args)
    assert code != 0
    one_error_line(err)
    assert not Path("/tmp/never-written.tfpkg").exists()


def test_export_c_to_file_and_stdout(tmp_path: Path) -> None:
    code, out, _ = run("keys", "export-c", str(VECTORS / "key_trusted.pub"))
    assert code == 0 and "tfa_trusted_key_t tfa_trusted_keys" in out and "TFA_TRUSTED_KEYS_COUNT 1u" in out
    target = tmp_path / "keys.h"
    code, _, _ = run(
        "keys",
        "export-c",
        str(VECTORS / "key_trusted.pub"),
        str(VECTORS / "key_untrusted.pub"),
        "--name",
        "fleet_keys",
        "--out",
        str(target),
    )
    assert code == 0 and "FLEET_KEYS_COUNT 2u" in target.read_text()


@pytest.mark.skipif(
    not (REPO / ".venv" / "bin" / "tinyfleet").exists(), reason="console script not installed"
)
def test_installed_command_prints_no_traceback(tmp_path: Path) -> None:
    exe = REPO / ".venv" / "bin" / "tinyfleet"
    proc = subprocess.run(
        [
            str(exe),
            "sign",
            "verify",
            str(VECTORS / "range_flags.tfpkg"),
            "--trust",
            str(VECTORS / "key_trusted.pub"),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "40"},
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert one_error_line(proc.stderr).startswith("error: FIELD_RANGE (8)")


def test_demo_runs_and_reports_every_refusal(capsys: pytest.CaptureFixture[str]) -> None:
    from tinyfleet.signing.demo import run as demo_run

    assert demo_run() == 0
    out = capsys.readouterr().out
    for name in ("DIGEST_MISMATCH", "BAD_SIGNATURE", "UNKNOWN_KEY", "TRUNCATED", "demo OK"):
        assert name in out


def test_build_with_selftest_seed_uses_the_reference_digest(tmp_path: Path, keypair: Path) -> None:
    pytest.importorskip("tflite_micro")
    facts = json.loads((VECTORS / "index.json").read_text())["selftest"]
    code, _, err = build(tmp_path, keypair, "--selftest-seed", str(facts["seed"]))
    assert code == 0, err
    _, out, _ = run("sign", "inspect", str(tmp_path / "kws.tfpkg"), "--json")
    fields = json.loads(out)
    assert fields["selftest_seed"] == facts["seed"]
    assert fields["selftest_output_sha256"] == facts["output_sha256"]


def test_build_with_explicit_selftest_digest(tmp_path: Path, keypair: Path) -> None:
    code, _, _ = build(tmp_path, keypair, "--selftest-seed", "9", "--selftest-sha256", "ab" * 32)
    assert code == 0
    _, out, _ = run("sign", "inspect", str(tmp_path / "kws.tfpkg"), "--json")
    assert json.loads(out)["selftest_output_sha256"] == "ab" * 32
    code, _, err = build(tmp_path, keypair, "--selftest-seed", "9", "--selftest-sha256", "xyz")
    assert code == 1 and "64 hex digits" in one_error_line(err)
    code, _, err = build(tmp_path, keypair, "--selftest-sha256", "ab" * 32)
    assert code == 2 and "non-zero seed" in one_error_line(err)


def test_build_refuses_a_model_the_engine_cannot_run(tmp_path: Path, keypair: Path) -> None:
    svdf = tmp_path / "svdf.tflite"
    svdf.write_bytes(with_operator(MODEL.read_bytes(), 0, SVDF))
    args = [str(svdf) if a == str(MODEL) else a for a in build_args(tmp_path, keypair)]
    code, _, err = run(*args)
    line = one_error_line(err)
    # The server's upload says the same (services/model_check.py): one wording for one refusal.
    assert code == 1 and line == (
        "error: the device engine refuses this model: UNSUPPORTED_OP: SVDF (builtin 27, operator #0)"
        " (pass --no-engine-check to sign it anyway)"
    )
    assert not (tmp_path / "kws.tfpkg").exists()
    code, out, err = run(*args, "--no-engine-check")
    assert code == 0 and "built" in out, err


def test_build_without_an_engine_says_so(tmp_path: Path, keypair: Path) -> None:
    signing_cli.set_model_check(lambda _model: "the device engine is not available: no compiler")
    code, _, err = build(tmp_path, keypair)
    assert code == 1 and "the device engine is not available: no compiler" in one_error_line(err)
    signing_cli.set_model_check(None)  # signing on its own, nothing registered
    code, _, err = build(tmp_path, keypair)
    assert code == 1 and "--no-engine-check" in one_error_line(err)
    code, out, _ = build(tmp_path, keypair, "--no-engine-check")
    assert code == 0 and "built" in out
