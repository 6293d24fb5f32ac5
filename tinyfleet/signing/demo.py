"""Stage-1 demo (`tinyfleet demo`): sign a real model offline, verify it, and watch tampering fail."""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from tinyfleet.signing import keys as keylib
from tinyfleet.signing import manifest as mf
from tinyfleet.signing.errors import PackageError
from tinyfleet.signing.package import build_package, verify_package
from tinyfleet.signing.tflite import estimate_arena_bytes, parse_model

REPO = Path(__file__).resolve().parents[2]


def demo_model() -> Path:
    """The real hello_world model when the shared models are present, else the project's test model."""
    shared = REPO.parent / "shared" / "models" / "hello_world_int8.tflite"
    return shared if shared.is_file() else REPO / "tests" / "vectors" / "model.tflite"


def _attempt(console: Console, label: str, data: bytes, store: keylib.TrustStore) -> bool:
    try:
        verify_package(data, store)
    except PackageError as exc:
        console.print(f"  [bold]{label}[/]: [red]refused[/] {exc}")
        return True
    console.print(f"  [bold]{label}[/]: [green]accepted[/]")
    return False


def run() -> int:
    """Run the demo; returns 0 when every step behaved as expected, 1 otherwise."""
    console = Console(highlight=False, soft_wrap=True)
    console.print(Panel.fit("tinyfleet stage 1: offline signing of a TinyML model", style="bold cyan"))
    model_path = demo_model()
    model = model_path.read_bytes()
    info = parse_model(model)
    console.print(f"[bold]1. model[/] {model_path} ({len(model)} bytes)")
    console.print(
        f"   ops {', '.join(info.operators)}; input "
        + ", ".join(f"{t.dtype}{list(t.shape)}" for t in info.inputs)
        + "; output "
        + ", ".join(f"{t.dtype}{list(t.shape)}" for t in info.outputs)
        + f"; arena estimate {estimate_arena_bytes(info)} bytes"
    )
    ok = True
    with tempfile.TemporaryDirectory(prefix="tinyfleet-demo-") as tmp:
        key = keylib.generate_private_key()
        pem, pub = keylib.save_keypair(Path(tmp) / "release", key)
        console.print(
            f"[bold]2. key[/] generated Ed25519 key id {keylib.key_id(key).hex()} ({pem.name}, {pub.name})"
        )

        package = build_package(
            model,
            keylib.load_private_key(pem),
            name="hello_world",
            version="1.0.0",
            sequence=1,
            security_counter=1,
            hardware_class=1,
            min_runtime_version="0.1.0",
        )
        pkg_path = Path(tmp) / "hello_world-1.0.0.tfpkg"
        pkg_path.write_bytes(package)
        m = mf.parse_unverified(package)
        table = Table(title=f"3. signed package {pkg_path.name}: {len(package)} bytes", show_header=False)
        for field, value in (
            ("model", f"{m.model_name} {m.version_str}"),
            ("sequence / security counter", f"{m.sequence} / {m.security_counter}"),
            ("hardware class / min runtime", f"{m.hardware_class} / {m.min_runtime_str}"),
            (
                "payload",
                f"{m.encoding_name}, {m.payload_size} bytes, sha256 {m.payload_sha256.hex()[:16]}...",
            ),
            ("arena bytes", str(m.arena_bytes)),
            ("key id / signature", f"{m.key_id.hex()} / {m.signature.hex()[:16]}..."),
        ):
            table.add_row(field, value)
        console.print(table)

        store = keylib.TrustStore.from_files([pub])
        console.print("[bold]4. verify[/] as a device would, trusting only the generated key")
        ok &= not _attempt(console, "original package", pkg_path.read_bytes(), store)

        console.print("[bold]5. tamper[/] with copies; each must be refused")
        payload_flip = bytearray(package)
        payload_flip[mf.MANIFEST_SIZE + len(model) // 2] ^= 0x01
        ok &= _attempt(console, "payload byte flipped", bytes(payload_flip), store)
        manifest_flip = bytearray(package)
        manifest_flip[mf.OFFSETS["sequence"][0]] ^= 0x01
        ok &= _attempt(console, "manifest byte flipped (sequence)", bytes(manifest_flip), store)
        ok &= _attempt(
            console, "trusting a different key", package, keylib.TrustStore([keylib.generate_private_key()])
        )
        ok &= _attempt(console, "truncated to 200 bytes", package[:200], store)

    if ok:
        console.print(
            "[bold green]demo OK[/]: the signed package verifies and every tampered copy is refused"
        )
        return 0
    console.print("[bold red]demo FAILED[/]: a step did not behave as expected")
    return 1
