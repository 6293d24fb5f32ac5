"""Compressed and delta packages (payload_encoding 1 and 2) installed through the host library's UART
frames, as an agent would: the vectors of tests/vectors/index.json "delta_vectors" against a device that
installed and confirmed good_active.tfpkg (its model is the delta's base).

Every decision is the C runtime's (decoder, resume point, digest check, self-test on the decoded model
with the reference TFLite Micro digest); these tests only send frames and read STATE and the flash image.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.paths import VECTORS
from tinyfleet.device import frames
from tinyfleet.device.runtime import CutMode, DeviceRuntime, NoResponse

MANIFEST = 292
MODEL_OFFSET = 304  # TFA_SLOT_MODEL_OFFSET
DEVICE: dict[str, Any] = json.loads((VECTORS / "device.json").read_text())
INDEX: dict[str, Any] = json.loads((VECTORS / "index.json").read_text())
DELTA_VECTORS: list[dict[str, Any]] = INDEX["delta_vectors"]
UPDATE = (VECTORS / INDEX["model_update"]["file"]).read_bytes()
GOOD = ["delta_good.tfpkg", "compressed_good.tfpkg"]


def new_device() -> DeviceRuntime:
    keys = []
    for name in DEVICE["trusted_keys"]:
        public = bytes.fromhex((VECTORS / name).read_text().split()[0])
        keys.append((hashlib.sha256(public).digest()[:8], public))
    return DeviceRuntime(
        hardware_class=DEVICE["hardware_class"],
        runtime_version=DEVICE["runtime_version"],
        ram_budget=DEVICE["ram_budget"],
        slot_size=DEVICE["slot_size"],
        sector_size=DEVICE["sector_size"],
        trusted_keys=keys,
    )


def package(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def ok(dev: DeviceRuntime, msg: frames.Request) -> bytes:
    return dev.send_frame(msg).raise_for_error().payload


def state(dev: DeviceRuntime) -> frames.DeviceState:
    return frames.parse_state(ok(dev, frames.state()))


def send_chunks(dev: DeviceRuntime, pkg: bytes, chunk: int, stop: int | None = None) -> int:
    """INSTALL_CHUNK from the device's resume offset up to stop (default: the end). 0 or the error code."""
    payload = len(pkg) - MANIFEST
    stop = payload if stop is None else min(stop, payload)
    offset = state(dev).download_offset
    while offset < stop:
        piece = pkg[MANIFEST + offset : MANIFEST + min(offset + chunk, stop)]
        r = dev.send_frame(frames.install_chunk(offset, piece))
        if r.is_error:
            return r.payload[0]
        offset += len(piece)
        assert frames.parse_progress(r.payload).offset == offset  # within a boot: the bytes received
    return 0


def install(dev: DeviceRuntime, pkg: bytes, chunk: int) -> tuple[int, str]:
    """begin, chunks, end: (0 or the first error code, the step that gave it)."""
    r = dev.send_frame(frames.install_begin(pkg[:MANIFEST]))
    if r.is_error:
        return r.payload[0], "begin"
    code = send_chunks(dev, pkg, chunk)
    if code:
        return code, "chunk"
    r = dev.send_frame(frames.install_end())
    if r.is_error:
        return r.payload[0], "end"
    return 0, "none"


def activate_selftest_confirm(dev: DeviceRuntime) -> None:
    assert frames.parse_phase(ok(dev, frames.activate())).phase is frames.Phase.TRIAL
    ok(dev, frames.selftest())  # the engine runs the decoded model against the TFLM digest
    assert frames.parse_phase(ok(dev, frames.confirm())).phase is frames.Phase.IDLE


def slot_bytes(dev: DeviceRuntime, slot: int) -> bytes:
    start = 2 * DEVICE["sector_size"] + slot * DEVICE["slot_size"]
    return dev.read_flash()[start : start + DEVICE["slot_size"]]


def check_updated(dev: DeviceRuntime, base_slot: bytes) -> None:
    st = state(dev)
    assert st.phase is frames.Phase.IDLE and st.active is not None and st.active_slot == 1
    assert st.active.sequence == 6 and st.active.model_sha256.hex() == INDEX["model_update"]["sha256"]
    model = slot_bytes(dev, 1)[MODEL_OFFSET : MODEL_OFFSET + len(UPDATE)]
    assert model == UPDATE
    assert slot_bytes(dev, 0) == base_slot  # the base model's slot never changed
    assert st.slots[0].valid and st.slots[0].sequence == DEVICE["active_sequence"]


@pytest.fixture(scope="module")
def setup_image() -> bytes:
    with new_device() as dev:
        assert install(dev, package(DEVICE["setup_package"]), 1024) == (0, "none")
        activate_selftest_confirm(dev)
        assert state(dev).active_slot == 0
        return dev.read_flash()


@pytest.fixture
def device(setup_image: bytes) -> Iterator[DeviceRuntime]:
    with new_device() as dev:
        dev.load_flash(setup_image)
        assert dev.power_on() == 0
        yield dev


def test_vectors_describe_the_update() -> None:
    assert hashlib.sha256(UPDATE).hexdigest() == INDEX["model_update"]["sha256"]
    names = {v["file"]: v for v in DELTA_VECTORS}
    for name in GOOD:
        pkg = package(name)
        assert len(pkg) == names[name]["size"] and pkg[64] == names[name]["payload_encoding"]
        assert pkg[108:140] == hashlib.sha256(UPDATE).digest()
    assert len(package("delta_good.tfpkg")) < len(package("compressed_good.tfpkg")) < MANIFEST + len(UPDATE)


@pytest.mark.parametrize("chunk", [1, 13, 256, frames.MAX_CHUNK])
@pytest.mark.parametrize("name", GOOD)
def test_encoded_package_installs(device: DeviceRuntime, name: str, chunk: int) -> None:
    base_slot = slot_bytes(device, 0)
    assert install(device, package(name), chunk) == (0, "none")
    activate_selftest_confirm(device)
    check_updated(device, base_slot)
    assert device.power_cycle() == 0
    check_updated(device, base_slot)


@pytest.mark.parametrize("vector", DELTA_VECTORS, ids=[v["file"] for v in DELTA_VECTORS])
def test_delta_vector_gives_its_code(device: DeviceRuntime, vector: dict[str, Any]) -> None:
    before = state(device)
    base_slot = slot_bytes(device, 0)
    code, stage = install(device, package(vector["file"]), 64)
    assert (frames.error_name(code), stage) == (vector["expected"], vector["stage"]), vector["description"]
    after = state(device)
    assert after.active == before.active and after.security_floor == before.security_floor
    assert slot_bytes(device, 0) == base_slot
    if code:
        assert after.phase is frames.Phase.IDLE and after.last_error == code


def test_download_resumes_at_the_recorded_block_boundary(device: DeviceRuntime) -> None:
    pkg = package("compressed_good.tfpkg")
    base_slot = slot_bytes(device, 0)
    ok(device, frames.install_begin(pkg[:MANIFEST]))
    sent = (len(pkg) - MANIFEST) * 2 // 3
    assert send_chunks(device, pkg, 100, sent) == 0
    assert state(device).download_offset == sent
    assert device.power_cycle() == 0
    st = state(device)
    assert st.phase is frames.Phase.DOWNLOADING and 0 < st.download_offset < sent
    # The same manifest again resumes there; a chunk at the pre-reboot offset is refused.
    assert (
        frames.parse_progress(ok(device, frames.install_begin(pkg[:MANIFEST]))).offset == st.download_offset
    )
    err = device.send_frame(frames.install_chunk(sent, pkg[MANIFEST + sent : MANIFEST + sent + 10])).error()
    assert err is not None and err.name == "BAD_OFFSET"
    assert send_chunks(device, pkg, 100) == 0
    ok(device, frames.install_end())
    activate_selftest_confirm(device)
    check_updated(device, base_slot)


@pytest.mark.parametrize("mode", list(CutMode))
@pytest.mark.parametrize("cut_at", [3, 12, 30, 44, 49, 51])
def test_power_cut_during_a_delta_download_resumes(device: DeviceRuntime, mode: CutMode, cut_at: int) -> None:
    pkg = package("delta_good.tfpkg")
    base_slot = slot_bytes(device, 0)
    device.cut_power_after(cut_at, mode, seed=cut_at)
    with pytest.raises(NoResponse):  # the install takes 52 flash operations: the cut lands in it
        assert install(device, pkg, 8) == (0, "none")
        activate_selftest_confirm(device)
    assert device.is_powered_off()
    assert device.power_on() == 0
    st = state(device)
    assert st.active is not None and st.active.sequence in (5, 6)
    assert slot_bytes(device, 0) == base_slot
    if st.phase is frames.Phase.IDLE and st.active.sequence == 5:
        assert install(device, pkg, 8) == (0, "none")
    elif st.phase is frames.Phase.DOWNLOADING:
        assert frames.parse_progress(ok(device, frames.install_begin(pkg[:MANIFEST]))).offset == (
            st.download_offset
        )
        assert send_chunks(device, pkg, 8) == 0
        ok(device, frames.install_end())
    if state(device).phase is not frames.Phase.IDLE:
        if state(device).phase is frames.Phase.DOWNLOADED:
            ok(device, frames.activate())
        ok(device, frames.selftest())
        ok(device, frames.confirm())
    check_updated(device, base_slot)
