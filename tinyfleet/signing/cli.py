"""`tinyfleet keys ...` and `tinyfleet sign ...`: offline key management and package signing.

`tinyfleet package ...` is the former name of `sign`, kept hidden for one release (`PACKAGE_ALIAS_NOTE`);
the server's `tinyfleet packages ...` is a different group (packages stored on the server).

Every failure is one red line on stderr and a non-zero exit: 2 for a refused package (the error's
PROTOCOL code is in the line), 1 for anything else (missing file, bad key, invalid model, bad option).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tinyfleet.signing import keys as keylib
from tinyfleet.signing import manifest as mf
from tinyfleet.signing.errors import PackageError, SigningError
from tinyfleet.signing.package import Inspection, build_package, inspect, verify_package
from tinyfleet.signing.tflite import parse_model

keys_app = typer.Typer(help="Ed25519 signing keys.", no_args_is_help=True, pretty_exceptions_enable=False)
sign_app = typer.Typer(
    help="Build, verify and inspect signed model packages, offline (no server).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Whether the device engine can run a model: returns a one-line refusal or None. signing may not import
# tinyfleet.device, so the top-level command (tinyfleet/cli.py) registers the engine's check here.
ModelCheck = Callable[[bytes], "str | None"]
_model_check: ModelCheck | None = None
NO_ENGINE_CHECK_HINT = "pass --no-engine-check to sign it anyway"


def set_model_check(check: ModelCheck | None) -> None:
    """Register the check `sign build` runs on every model (None: no engine here, builds are refused)."""
    global _model_check
    _model_check = check


PACKAGE_ALIAS_NOTE = "note: 'tinyfleet package' is deprecated; use 'tinyfleet sign' (same commands)"


def package_alias_callback() -> None:
    """Callback of the hidden, deprecated `tinyfleet package` alias of `sign`: one line on stderr."""
    Console(stderr=True, soft_wrap=True, highlight=False).print(f"[yellow]{escape(PACKAGE_ALIAS_NOTE)}[/]")


def _out() -> Console:
    return Console(soft_wrap=True, highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    """One red line on stderr, then exit with `code`."""
    Console(stderr=True, soft_wrap=True, highlight=False).print(f"[red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def _fail_from(exc: Exception) -> NoReturn:
    message = " ".join(str(exc).split())  # always a single line
    fail(message, 2 if isinstance(exc, PackageError) else 1)


def _read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {what} {path}: {exc.strerror or exc}")


def _passphrase(env_var: str | None) -> bytes | None:
    if env_var is None:
        return None
    value = os.environ.get(env_var)
    if not value:
        fail(f"environment variable {env_var} (the passphrase) is not set or empty")
    return value.encode("utf-8")


@keys_app.command("generate")
def keys_generate(
    out: Annotated[str, typer.Option("--out", help="Path prefix: writes PREFIX.pem and PREFIX.pub.")],
    passphrase_env: Annotated[
        str | None,
        typer.Option("--passphrase-env", help="Encrypt the private key with the passphrase in $VAR."),
    ] = None,
) -> None:
    """Generate an Ed25519 key pair: PREFIX.pem (PKCS#8 private) and PREFIX.pub (public, hex)."""
    passphrase = _passphrase(passphrase_env)
    key = keylib.generate_private_key()
    try:
        pem, pub = keylib.save_keypair(out, key, passphrase)
    except SigningError as exc:
        _fail_from(exc)
    _out().print(f"[green]key id[/] {keylib.key_id(key).hex()}  private {pem}  public {pub}")


@keys_app.command("export-c")
def keys_export_c(
    public_keys: Annotated[list[Path], typer.Argument(help="Public key files (.pub hex or PEM).")],
    name: Annotated[str, typer.Option("--name", help="C array name.")] = "tfa_trusted_keys",
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout.")] = None,
) -> None:
    """Print a C header with the trusted keys as a tfa_trusted_key_t array for the firmware."""
    try:
        header = keylib.export_c_header(keylib.TrustStore.from_files(public_keys), array_name=name)
    except (SigningError, ValueError) as exc:
        _fail_from(exc)
    if out is None:
        typer.echo(header, nl=False)
        return
    try:
        out.write_text(header, encoding="ascii")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")


def _selftest_digest(model: bytes, seed: int, given: str | None) -> bytes | None:
    if not 0 <= seed <= 0xFFFFFFFF:
        fail(f"--selftest-seed must be in 0..{0xFFFFFFFF}")
    if given is not None:
        try:
            digest = bytes.fromhex(given)
        except ValueError:
            digest = b""
        if len(digest) != 32:
            fail("--selftest-sha256 must be 64 hex digits")
        return digest
    if seed == 0:
        return None
    from tinyfleet.signing.selftest import expected_output_sha256

    return expected_output_sha256(model, seed)


def _engine_check(model: bytes) -> None:
    """Refuse what the server's upload refuses (same message): a model the device engine cannot run."""
    if _model_check is None:
        fail(f"the device engine check is not available in this command; {NO_ENGINE_CHECK_HINT}")
    try:
        parse_model(model)
    except (SigningError, ValueError) as exc:
        _fail_from(exc)
    problem = _model_check(model)
    if problem is not None:
        fail(f"{' '.join(problem.split())} ({NO_ENGINE_CHECK_HINT})")


@sign_app.command("build")
def sign_build(
    model: Annotated[Path, typer.Argument(help="The int8 .tflite model.")],
    key: Annotated[Path, typer.Option("--key", help="Private key PEM.")],
    name: Annotated[str, typer.Option("--name", help="Model name, 1..31 UTF-8 bytes.")],
    version: Annotated[str, typer.Option("--version", help="Model version MAJOR.MINOR.PATCH.")],
    hardware_class: Annotated[int, typer.Option("--hardware-class", help="Target hardware class id.")],
    out: Annotated[Path, typer.Option("--out", help="Package file to write.")],
    sequence: Annotated[
        int | None,
        typer.Option("--sequence", help="Replay counter; default: the build time in Unix seconds."),
    ] = None,
    security_counter: Annotated[int, typer.Option("--security-counter", help="Anti-rollback counter.")] = 0,
    min_runtime: Annotated[
        str, typer.Option("--min-runtime", help="Oldest runtime version that may run it.")
    ] = "0.0.0",
    arena_bytes: Annotated[
        int | None, typer.Option("--arena-bytes", help="Tensor arena; default: a safe upper-bound estimate.")
    ] = None,
    passphrase_env: Annotated[
        str | None, typer.Option("--passphrase-env", help="Env variable holding the key's passphrase.")
    ] = None,
    created_at: Annotated[int | None, typer.Option("--created-at", help="Unix time; default: now.")] = None,
    selftest_seed: Annotated[
        int, typer.Option("--selftest-seed", help="Non-zero: add an inference self-test with this seed.")
    ] = 0,
    selftest_sha256: Annotated[
        str | None,
        typer.Option("--selftest-sha256", help="Expected output digest (hex); default: from tflite-micro."),
    ] = None,
    no_engine_check: Annotated[
        bool,
        typer.Option("--no-engine-check", help="Sign even a model the device engine cannot run (or check)."),
    ] = False,
) -> None:
    """Validate MODEL, check that the device engine runs it, and write a signed package."""
    model_bytes = _read_file(model, "model")
    if not no_engine_check:
        _engine_check(model_bytes)
    now = int(time.time()) if created_at is None else created_at
    try:
        expected = _selftest_digest(model_bytes, selftest_seed, selftest_sha256)
        private = keylib.load_private_key(key, _passphrase(passphrase_env))
        package = build_package(
            model_bytes,
            private,
            name=name,
            version=version,
            sequence=now if sequence is None else sequence,
            security_counter=security_counter,
            hardware_class=hardware_class,
            min_runtime_version=min_runtime,
            arena_bytes=arena_bytes,
            selftest_seed=selftest_seed,
            selftest_output_sha256=expected,
            created_at=now,
        )
    except SigningError as exc:
        _fail_from(exc)
    try:
        out.write_bytes(package)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    m = mf.parse_unverified(package)
    _out().print(
        f"[green]built[/] {out}: {m.model_name} {m.version_str}, {len(package)} bytes, "
        f"sequence {m.sequence}, arena {m.arena_bytes} bytes, key id {m.key_id.hex()}"
    )


@sign_app.command("verify")
def sign_verify(
    package: Annotated[Path, typer.Argument(help="Package file.")],
    trust: Annotated[list[Path], typer.Option("--trust", help="Trusted public key file (repeatable).")],
) -> None:
    """Check the package as a device would (format, key, signature, ranges, size, digest)."""
    data = _read_file(package, "package")
    try:
        store = keylib.TrustStore.from_files(trust)
        verified = verify_package(data, store)
    except SigningError as exc:
        _fail_from(exc)
    m = verified.manifest
    _out().print(
        f"[green]OK[/] {package}: {m.model_name} {m.version_str}, sequence {m.sequence}, "
        f"signed by key {m.key_id.hex()}" + (", payload encrypted" if m.flags & mf.FLAG_ENCRYPTED else "")
    )


def _fields(result: Inspection) -> dict[str, Any]:
    m = result.manifest
    return {
        "format_version": m.format_version,
        "header_size": m.header_size,
        "model_name": m.model_name,
        "version": m.version_str,
        "sequence": m.sequence,
        "security_counter": m.security_counter,
        "hardware_class": m.hardware_class,
        "min_runtime_version": m.min_runtime_str,
        "payload_encoding": m.encoding_name,
        "flags": m.flags,
        "encrypted": bool(m.flags & mf.FLAG_ENCRYPTED),
        "reserved0": m.reserved0,
        "reserved1": m.reserved1,
        "payload_size": m.payload_size,
        "payload_sha256": m.payload_sha256.hex(),
        "model_size": m.model_size,
        "model_sha256": m.model_sha256.hex(),
        "delta_base_sha256": m.delta_base_sha256.hex(),
        "arena_bytes": m.arena_bytes,
        "selftest_seed": m.selftest_seed,
        "selftest_output_sha256": m.selftest_output_sha256.hex(),
        "created_at": m.created_at,
        "key_id": m.key_id.hex(),
        "signature": m.signature.hex(),
        "file_size": result.file_size,
        "size_ok": result.size_ok,
        "payload_digest_ok": result.payload_digest_ok,
        "field_range_error": result.range_error,
    }


@sign_app.command("inspect")
def sign_inspect(
    package: Annotated[Path, typer.Argument(help="Package file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show every manifest field. Nothing is authenticated here: use `verify` for that."""
    data = _read_file(package, "package")
    try:
        result = inspect(data)
    except SigningError as exc:
        _fail_from(exc)
    fields = _fields(result)
    # An encrypted raw payload is ciphertext: there is no model to read without the content key.
    clear = not result.manifest.flags & mf.FLAG_ENCRYPTED
    if result.manifest.payload_encoding == mf.ENC_RAW and clear and result.payload_digest_ok:
        try:
            info = parse_model(data[mf.MANIFEST_SIZE :])
            fields["model_ops"] = list(info.operators)
            fields["model_inputs"] = [f"{t.dtype}{list(t.shape)}" for t in info.inputs]
            fields["model_outputs"] = [f"{t.dtype}{list(t.shape)}" for t in info.outputs]
        except SigningError as exc:
            fields["model_error"] = str(exc)
    if as_json:
        typer.echo(json.dumps(fields, indent=2))
        return
    table = Table(title=f"{package} (unverified)", show_header=True)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for key, value in fields.items():
        shown = ", ".join(value) if isinstance(value, list) else str(value)
        table.add_row(key, escape(shown))
    _out().print(table)
