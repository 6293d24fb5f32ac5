"""The host library driven only through UART frames, as an agent drives a board, with the golden packages
of tests/vectors (device settings in tests/vectors/device.json).

Every check on a package is the C runtime's; these tests only send frames and read STATE (and, to prove
that a refused package wrote nothing into the active slot, the flash image).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.device_frames import (
    DEVICE,
    MANIFEST,
    activate_selftest_confirm,
    call,
    has_engine,
    install,
    new_device,
    ok,
    package,
    slot_bytes,
    state,
)
from tests.support.paths import VECTORS
from tinyfleet.device import frames
from tinyfleet.device.runtime import CutMode, DeviceRuntime, NoResponse

INDEX: dict[str, Any] = json.loads((VECTORS / "index.json").read_text())


@pytest.fixture(scope="module")
def setup_image() -> bytes:
    """Flash of a device that installed and confirmed good_active (sequence 5, security counter 3),
    the starting point device.json describes."""
    with new_device() as dev:
        assert install(dev, package(DEVICE["setup_package"])) == 0
        activate_selftest_confirm(dev)
        st_ = state(dev)
        assert st_.security_floor == DEVICE["security_floor"]
        assert st_.active is not None and st_.active.sequence == DEVICE["active_sequence"]
        return dev.read_flash()


@pytest.fixture
def device(setup_image: bytes) -> Iterator[DeviceRuntime]:
    with new_device() as dev:
        dev.load_flash(setup_image)
        assert dev.power_on() == 0
        yield dev


# --------------------------------------------------------------------------- identity and lifecycle


def test_hello_reports_the_device_config() -> None:
    with new_device() as dev:
        hello = frames.parse_hello(ok(dev, frames.hello()))
        assert hello.protocol_version == frames.PROTOCOL_VERSION and hello.max_body == frames.MAX_BODY
        assert hello.runtime_version == DEVICE["runtime_version"]
        assert hello.hardware_class == DEVICE["hardware_class"]
        assert (hello.ram_budget, hello.slot_size) == (DEVICE["ram_budget"], DEVICE["slot_size"])
        fresh = state(dev)
        assert fresh.phase is frames.Phase.IDLE and fresh.active_slot is None
        assert not fresh.slots[0].valid and not fresh.slots[1].valid


def test_memory_per_device_is_its_flash_plus_a_few_kib() -> None:
    with new_device() as dev:
        flash = 2 * DEVICE["sector_size"] + 2 * DEVICE["slot_size"]
        assert len(dev.read_flash()) == flash
        # + about 6 KiB of the delta decoder's workspace (agent_firmware/core/include/tfa/delta.h)
        assert flash < dev.memory_bytes < flash + 16 * 1024


def test_many_devices_in_one_process() -> None:
    devices = [new_device() for _ in range(300)]
    try:
        for dev in devices:
            assert frames.parse_hello(ok(dev, frames.hello())).hardware_class == DEVICE["hardware_class"]
    finally:
        for dev in devices:
            dev.close()


def test_close_is_idempotent_and_final() -> None:
    dev = new_device()
    dev.close()
    dev.close()
    with pytest.raises(ValueError, match="closed"):
        dev.send_frame(frames.hello())


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="FIELD_RANGE"):
        new_device(sector_size=1000)
    with pytest.raises(ValueError, match="FIELD_RANGE"):
        new_device(slot_size=DEVICE["sector_size"] + 1)
    with pytest.raises(ValueError, match="trusted key"):
        new_device(trusted_keys=[(b"short", bytes(32))])


def test_flash_image_moves_a_device(device: DeviceRuntime) -> None:
    before = state(device)
    with new_device() as twin:
        twin.load_flash(device.read_flash())
        assert twin.is_powered_off()
        assert twin.power_on() == 0
        assert state(twin) == before
        with pytest.raises(ValueError, match="flash image"):
            twin.load_flash(b"\xff" * 10)


# --------------------------------------------------------------------------- installs


@pytest.mark.parametrize("chunk", [1, 7, 64, 254, 255, 1000, 1024, frames.MAX_CHUNK])
def test_good_package_installs_in_chunks_of_any_size(device: DeviceRuntime, chunk: int) -> None:
    pkg = package("good.tfpkg")
    old = state(device).active_slot
    assert install(device, pkg, chunk=chunk) == 0
    activate_selftest_confirm(device)
    st_ = state(device)
    assert st_.active_slot == 1 - (old or 0) and st_.active is not None
    assert st_.active.sequence == 6 and st_.active.model_sha256 == pkg[108:140]
    assert st_.active.model_sha256.hex() == INDEX["model"]["sha256"]
    assert st_.phase is frames.Phase.IDLE and st_.security_floor == DEVICE["security_floor"]
    tel = frames.parse_telemetry(ok(device, frames.telemetry()))
    assert tel.chunk_bytes == len(pkg) - MANIFEST and tel.installs_completed == 1


REFUSED = [v for v in INDEX["vectors"] if v["code"] != 0]


@pytest.mark.parametrize("vector", REFUSED, ids=[v["file"] for v in REFUSED])
def test_each_bad_package_is_refused_with_its_code(device: DeviceRuntime, vector: dict[str, Any]) -> None:
    if vector["layer"] == "selftest" and not has_engine(device):
        pytest.skip("inference engine not wired into the host device yet: the self-test is integrity only")
    before = state(device)
    assert before.active_slot is not None
    active_before = slot_bytes(device, before.active_slot)
    code = install(device, package(vector["file"]), chunk=1000)
    if code == 0:  # refusals after the download: the trial self-test
        ok(device, frames.activate())
        r = call(device, frames.selftest())
        code = r.payload[0] if r.is_error else 0
    assert frames.error_name(code) == vector["expected"], vector["description"]
    after = state(device)
    assert after.active_slot == before.active_slot and after.active == before.active
    assert after.security_floor == before.security_floor
    assert after.phase in (frames.Phase.IDLE, frames.Phase.DOWNLOADING)
    assert slot_bytes(device, before.active_slot) == active_before


def test_out_of_order_and_wrong_offsets(device: DeviceRuntime) -> None:
    pkg = package("good.tfpkg")
    for msg in (frames.activate(), frames.confirm(), frames.install_end()):
        err = call(device, msg).error()
        assert err is not None and err.name == "BAD_STATE"
    assert frames.parse_progress(ok(device, frames.install_begin(pkg[:MANIFEST]))).offset == 0
    err = call(device, frames.install_chunk(100, pkg[MANIFEST : MANIFEST + 10])).error()
    assert err is not None and err.name == "BAD_OFFSET"
    assert frames.parse_phase(ok(device, frames.install_abort())).phase is frames.Phase.IDLE
    assert state(device).phase is frames.Phase.IDLE


def test_download_resumes_after_a_power_cycle(device: DeviceRuntime) -> None:
    pkg = package("good.tfpkg")
    ok(device, frames.install_begin(pkg[:MANIFEST]))
    sent = 0
    for _ in range(2):
        ok(device, frames.install_chunk(sent, pkg[MANIFEST + sent : MANIFEST + sent + 700]))
        sent += 700
    assert device.power_cycle() == 0
    st_ = state(device)
    assert st_.phase is frames.Phase.DOWNLOADING and st_.download_offset == sent
    assert st_.target_slot is not None and st_.slots[st_.target_slot].sequence == 6
    # The same manifest again resumes where the download stopped.
    assert install(device, pkg, chunk=500) == 0
    activate_selftest_confirm(device)
    assert state(device).active.sequence == 6  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", list(CutMode))
def test_power_cut_mid_download_keeps_the_old_model_and_resumes(device: DeviceRuntime, mode: CutMode) -> None:
    pkg = package("good.tfpkg")
    before = state(device)
    ok(device, frames.install_begin(pkg[:MANIFEST]))
    ok(device, frames.install_chunk(0, pkg[MANIFEST : MANIFEST + 512]))
    device.cut_power_after(2, mode=mode, seed=7)
    with pytest.raises(NoResponse, match="off"):
        for off in range(512, len(pkg) - MANIFEST, 256):
            ok(device, frames.install_chunk(off, pkg[MANIFEST + off : MANIFEST + off + 256]))
    assert device.is_powered_off()
    with pytest.raises(NoResponse):
        device.send_frame(frames.hello())
    assert device.power_on() == 0
    after = state(device)
    assert after.active_slot == before.active_slot and after.active == before.active
    assert install(device, pkg, chunk=256) == 0
    activate_selftest_confirm(device)
    assert state(device).active.sequence == 6  # type: ignore[union-attr]


def test_revert_in_trial_and_rollback_after_confirm(device: DeviceRuntime) -> None:
    old = state(device)
    pkg = package("good.tfpkg")
    assert install(device, pkg) == 0
    ok(device, frames.activate())
    assert state(device).phase is frames.Phase.TRIAL
    report = frames.parse_phase(ok(device, frames.revert()))
    assert report.phase is frames.Phase.IDLE and report.active_slot == old.active_slot
    assert state(device).active == old.active
    # Install again, confirm, then roll back to the previous confirmed model without a download.
    assert install(device, pkg) == 0
    activate_selftest_confirm(device)
    assert state(device).active.sequence == 6  # type: ignore[union-attr]
    frames.parse_phase(ok(device, frames.revert()))
    assert state(device).active == old.active


def test_selftest_runs_the_model_and_infer_reproduces_its_digest(device: DeviceRuntime) -> None:
    if not has_engine(device):
        pytest.skip("no inference engine in this build")
    selftest = INDEX["selftest"]
    sample = bytes.fromhex(selftest["input_bytes"])
    err = call(device, frames.infer(sample)).error()  # the model from setup has no self-test, runs anyway
    assert err is None
    assert install(device, package("good_selftest.tfpkg")) == 0
    activate_selftest_confirm(device)  # the engine computed the digest and it matched
    result = frames.parse_infer(ok(device, frames.infer(sample)))
    assert result is not None and hashlib.sha256(result.output).hexdigest() == selftest["output_sha256"]
    # The same input in two slices, RUN on the last: same output.
    assert frames.parse_infer(ok(device, frames.infer(sample[:3], run=False))) is None
    split = frames.parse_infer(ok(device, frames.infer(sample[3:], offset=3)))
    assert split is not None and split.output == result.output
    err = call(device, frames.infer(b"\x01", offset=len(sample))).error()
    assert err is not None and err.name == "BAD_OFFSET"
    tel = frames.parse_telemetry(ok(device, frames.telemetry()))
    assert tel.inferences == 3 and tel.inference_errors == 0
    assert device.memory_bytes >= len(device.read_flash()) + DEVICE["ram_budget"]  # arena held for INFER


def test_infer_without_a_model_is_a_state_error() -> None:
    with new_device() as dev:
        err = call(dev, frames.infer(b"\x00")).error()
        expected = "BAD_STATE" if has_engine(dev) else "UNSUPPORTED_OP"
        assert err is not None and err.name == expected and err.request_type == frames.MsgType.INFER


def test_malformed_and_unknown_messages_over_the_wire(device: DeviceRuntime) -> None:
    cases = [
        (frames.Request(0x42), "UNKNOWN_MESSAGE"),
        (frames.Request(frames.MsgType.HELLO | frames.RESPONSE_BIT), "UNKNOWN_MESSAGE"),
        (frames.Request(frames.MsgType.STATE, b"\x00"), "BAD_MESSAGE"),
        (frames.Request(frames.MsgType.INSTALL_CHUNK, b"\x00\x00\x00\x00"), "BAD_MESSAGE"),
        (frames.Request(frames.MsgType.INFER, b"\x00\x00\x00\x00\x80"), "BAD_MESSAGE"),
    ]
    for msg, name in cases:
        err = call(device, msg).error()
        assert err is not None and err.name == name and err.detail == name


# --------------------------------------------------------------------------- line noise


def _frame_errors(raw: bytes) -> list[int]:
    out = []
    for event in frames.FrameDecoder().feed(raw):
        assert event.body is not None, "the device sent a broken frame"
        msg = frames.decode_message(event.body)
        err = msg.error()
        assert err is not None and msg.request_id == 0
        out.append(err.code)
    return out


def test_frame_errors_are_reported_with_request_id_zero(device: DeviceRuntime) -> None:
    good = frames.encode_frame(frames.hello().encode(1))
    corrupted = bytearray(good)
    corrupted[3] ^= 0x40  # a body byte changes, no zero appears: only the CRC can tell
    device.write(bytes(corrupted))
    device.write(b"\x00\x05\x01\x00")  # block promises 4 bytes
    device.write(b"\x00" + b"\x01" * 2000 + b"\x00")  # 2000 decoded zeros: too long
    assert _frame_errors(device.read()) == [frames.FRAME_CRC, frames.FRAME_DECODE, frames.FRAME_TOO_LONG]
    tel = frames.parse_telemetry(ok(device, frames.telemetry()))
    assert (tel.frame_crc_errors, tel.frame_decode_errors, tel.frame_too_long) == (1, 1, 1)


def test_a_large_write_is_absorbed_with_flow_control() -> None:
    with new_device() as dev:
        stream = b"".join(frames.encode_frame(frames.hello().encode(i)) for i in range(1, 200))
        dev.write(stream)
        events = list(frames.FrameDecoder().feed(dev.read()))
        assert [frames.decode_message(e.body or b"").request_id for e in events] == list(range(1, 200))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.binary(max_size=1500), st.sampled_from([b"\x00", b"\x00\x00"])), max_size=6))
def test_random_bytes_never_crash_and_hello_still_works(chunks: list[bytes]) -> None:
    with new_device() as dev:
        for chunk in chunks:
            dev.write(chunk)
        for event in frames.FrameDecoder().feed(dev.read()):
            assert event.body is not None  # whatever came in, the device's own frames are sound
            frames.decode_message(event.body)
        hello = frames.parse_hello(ok(dev, frames.hello()))
        assert hello.hardware_class == DEVICE["hardware_class"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(min_size=0, max_size=frames.MAX_BODY), max_size=8))
def test_random_messages_in_valid_frames_get_one_answer_each(bodies: list[bytes]) -> None:
    with new_device() as dev:
        for body in bodies:
            dev.write(frames.encode_frame(body))
            events = list(frames.FrameDecoder().feed(dev.read()))
            assert len(events) == 1 and events[0].body is not None
            answer = frames.decode_message(events[0].body)
            if len(body) >= frames.HEADER_SIZE:
                assert answer.request_id == int.from_bytes(body[1:3], "little")
            assert answer.is_error or answer.type == body[0] | frames.RESPONSE_BIT
        assert frames.parse_hello(ok(dev, frames.hello())).protocol_version == frames.PROTOCOL_VERSION


def test_infer_with_an_input_larger_than_a_frame(shared_models: Path) -> None:
    """micro_speech (int8 [1,1960]) needs two INFER slices. A first device computes the output for the
    self-test input through INFER; a package claiming that digest then passes the engine's own self-test
    on a second device, so the sliced input reached the tensor byte for byte."""
    model_path = shared_models / "micro_speech_quantized.tflite"
    from tinyfleet.signing.keys import load_private_key
    from tinyfleet.signing.package import build_package
    from tinyfleet.signing.selftest import selftest_input

    model = model_path.read_bytes()
    key = load_private_key(VECTORS / "key_trusted.pem")
    seed = 0x5EED
    geometry = {"slot_size": 64 * 1024, "ram_budget": 64 * 1024}

    def signed(sequence: int, digest: bytes | None) -> bytes:
        return build_package(
            model, key, name="micro-speech", version=(1, 0, sequence), sequence=sequence,
            security_counter=0, hardware_class=DEVICE["hardware_class"], min_runtime_version=0,
            arena_bytes=32 * 1024, selftest_seed=seed if digest else 0, selftest_output_sha256=digest,
        )  # fmt: skip

    with new_device(**geometry) as first:
        hello = frames.parse_hello(ok(first, frames.hello()))
        if not hello.has_inference:
            pytest.skip("no inference engine in this build")
        assert install(first, signed(1, None)) == 0
        activate_selftest_confirm(first)
        sample = selftest_input(seed, 1960)
        assert frames.parse_infer(ok(first, frames.infer(sample[:1000], run=False))) is None
        result = frames.parse_infer(ok(first, frames.infer(sample[1000:], offset=1000)))
        assert result is not None and len(result.output) == 4  # four keyword classes
    with new_device(**geometry) as second:
        assert install(second, signed(2, hashlib.sha256(result.output).digest())) == 0
        ok(second, frames.activate())
        assert frames.parse_phase(ok(second, frames.selftest())).phase is frames.Phase.TRIAL
        ok(second, frames.confirm())
