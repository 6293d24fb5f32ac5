"""tinyfleet/device/frames.py on its own: COBS, frame layout, the streaming decoder and message bodies.

The C side is checked against the same layouts by agent_firmware/tests/test_frame.c and test_proto.c, and
the two meet in tests/test_runtime_frames.py, where every request is framed here and decoded in C.
"""

from __future__ import annotations

import contextlib
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyfleet.device import frames


def test_cobs_known_encodings() -> None:
    assert frames.cobs_encode(b"") == b"\x01"
    assert frames.cobs_encode(b"\x00") == b"\x01\x01"
    assert frames.cobs_encode(b"\x00\x00") == b"\x01\x01\x01"
    assert frames.cobs_encode(b"\x11\x22\x00\x33") == b"\x03\x11\x22\x02\x33"
    run = bytes(range(1, 255))  # 254 non-zero bytes: one full block, then the empty final block
    assert frames.cobs_encode(run) == b"\xff" + run + b"\x01"
    assert frames.cobs_encode(run + b"\x07") == b"\xff" + run + b"\x02\x07"
    assert frames.cobs_encode(b"\x07" + run) == b"\xff\x07" + run[:253] + b"\x02" + run[253:]


def test_cobs_decode_accepts_short_final_block_and_rejects_broken_ones() -> None:
    run = bytes(range(1, 255))
    assert frames.cobs_decode(b"\xff" + run) == run
    with pytest.raises(frames.ProtocolError):
        frames.cobs_decode(b"\x05\x01\x02")  # block promises 4 bytes, 2 arrive
    with pytest.raises(frames.ProtocolError):
        frames.cobs_decode(b"\x03\x00\x01")


def test_frame_bytes_match_the_documented_layout() -> None:
    # Same bytes as agent_firmware/tests/test_frame.c: CRC-32("123456789") = 0xCBF43926.
    assert frames.encode_frame(b"123456789") == b"\x00\x0e123456789\x26\x39\xf4\xcb\x00"
    assert frames.encode_frame(b"") == b"\x00\x01\x01\x01\x01\x01\x00"
    # The worked example of docs/PROTOCOL.md section 3.3: HELLO, request id 7.
    assert frames.encode_frame(frames.hello().encode(7)).hex(" ") == "00 03 01 07 05 e2 25 c2 b1 00"
    with pytest.raises(ValueError, match="above the maximum"):
        frames.encode_frame(bytes(frames.MAX_BODY + 1))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3 * 254 + 10))
def test_cobs_roundtrip(data: bytes) -> None:
    encoded = frames.cobs_encode(data)
    assert b"\x00" not in encoded
    assert len(encoded) <= len(data) + len(data) // 254 + 1
    assert frames.cobs_decode(encoded) == data


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=frames.MAX_BODY), min_size=1, max_size=5),
    st.lists(st.integers(min_value=0, max_value=6000), max_size=8),
)
def test_decoder_yields_every_frame_whatever_the_slicing(bodies: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frames.encode_frame(b) for b in bodies)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    dec = frames.FrameDecoder()
    events: list[frames.FrameEvent] = []
    start = 0
    for p in [*points, len(stream)]:
        events.extend(dec.feed(stream[start:p]))
        start = p
    assert [e.body for e in events] == bodies


def test_decoder_resynchronises_and_classifies_errors() -> None:
    good = frames.encode_frame(b"\x01\x07\x00")
    dec = frames.FrameDecoder()
    # Garbage before a frame is reported at the frame's leading delimiter; the frame still arrives.
    events = list(dec.feed(b"\x13\x99\xfe" + good))
    assert [e.error for e in events] == [frames.FRAME_DECODE, 0]
    assert events[1].body == b"\x01\x07\x00" and events[1].ok
    # CRC mismatch: flip a body byte inside a valid encoding.
    bad = bytearray(good)
    bad[2] ^= 0x40
    assert [e.error for e in dec.feed(bytes(bad))] == [frames.FRAME_CRC]
    # Shorter than the CRC.
    assert [e.error for e in dec.feed(b"\x00\x03\x01\x02\x00")] == [frames.FRAME_DECODE]
    # Too long, reported once at its delimiter, then the decoder is back in sync.
    too_long = b"\x00" + frames.cobs_encode(bytes(range(1, 256)) * 5) + b"\x00"
    assert [e.error for e in dec.feed(too_long + good)] == [frames.FRAME_TOO_LONG, 0]
    # Idle line: nothing.
    assert list(dec.feed(b"\x00" * 10)) == []


def test_decoder_rejects_a_decoded_frame_above_the_maximum() -> None:
    body = bytes(frames.MAX_BODY + 1)  # all zeros: the encoding is barely longer than the body
    wire = b"\x00" + frames.cobs_encode(body + struct.pack("<I", zlib.crc32(body))) + b"\x00"
    assert [e.error for e in frames.FrameDecoder().feed(wire)] == [frames.FRAME_TOO_LONG]


def test_request_encoding() -> None:
    assert frames.hello().encode(0x1234) == b"\x01\x34\x12"
    assert frames.install_chunk(0x01020304, b"ab").encode(1) == b"\x11\x01\x00\x04\x03\x02\x01ab"
    assert frames.infer(b"xy", offset=2, run=False).encode(9) == b"\x20\x09\x00\x02\x00\x00\x00\x00xy"
    assert frames.infer(b"").encode(9) == b"\x20\x09\x00\x00\x00\x00\x00\x01"
    assert frames.install_abort().encode(3) == b"\x17\x03\x00"
    with pytest.raises(ValueError):
        frames.install_chunk(0, bytes(frames.MAX_CHUNK + 1))
    with pytest.raises(ValueError):
        frames.hello().encode(0x10000)
    # The largest chunk fills a frame exactly.
    assert len(frames.install_chunk(0, bytes(frames.MAX_CHUNK)).encode(1)) == frames.MAX_BODY


def test_response_parsing() -> None:
    r = frames.decode_message(b"\xff\x05\x00\x23\x10REPLAYED")
    assert r.is_error and r.request_id == 5
    err = r.error()
    assert err is not None and err.code == 35 and err.name == "REPLAYED" and err.request_type == 0x10
    with pytest.raises(frames.DeviceError, match="REPLAYED"):
        r.raise_for_error()
    ok = frames.decode_message(b"\x91\x05\x00" + struct.pack("<II", 1024, 2752))
    assert ok.error() is None and frames.parse_progress(ok.payload) == frames.Progress(1024, 2752)
    with pytest.raises(frames.ProtocolError):
        frames.decode_message(b"\x81\x01")
    with pytest.raises(frames.ProtocolError):
        frames.decode_message(b"\xff\x01\x00\x23").error()
    with pytest.raises(frames.ProtocolError):
        frames.parse_state(b"\x00" * 10)
    with pytest.raises(frames.ProtocolError):
        frames.parse_phase(b"\x09\x00")
    assert frames.parse_phase(b"\x03\xff") == frames.PhaseReport(frames.Phase.TRIAL, None)
    assert frames.parse_infer(b"") is None
    assert frames.parse_infer(b"\x10\x00\x00\x00ab") == frames.InferResult(16, b"ab")


def test_state_parsing_of_a_handmade_body() -> None:
    slot = bytearray(frames.SLOT_SIZE)
    slot[0] = 1
    slot[1:6] = b"kws\x00\x00"
    struct.pack_into("<HHHIIII", slot, 33, 1, 2, 3, 9, 4, 2752, 640)
    slot[55:87] = bytes(range(32))
    header = struct.pack("<BBBBBBHIIIII", 1, 0, 1, 0, 0, 1, 0, 3, 512, 2752, 256, 7)
    state = frames.parse_state(header + bytes(slot) + bytes(frames.SLOT_SIZE))
    assert state.phase is frames.Phase.DOWNLOADING and state.active_slot == 0 and state.target_slot == 1
    assert state.selftest_passed and state.security_floor == 3 and state.download_offset == 512
    assert state.active is not None and state.active.model_name == "kws"
    assert state.active.version_str == "1.2.3" and state.active.sequence == 9
    assert state.active.model_sha256 == bytes(range(32)) and not state.slots[1].valid
    with pytest.raises(frames.ProtocolError, match="active slot"):
        frames.parse_state(b"\x00\x02" + header[2:] + bytes(2 * frames.SLOT_SIZE))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_parsers_never_raise_anything_but_protocol_error(data: bytes) -> None:
    for parse in (frames.parse_state, frames.parse_hello, frames.parse_progress, frames.parse_phase,
                  frames.parse_telemetry, frames.parse_infer):  # fmt: skip
        with contextlib.suppress(frames.ProtocolError):
            parse(data)
    with contextlib.suppress(frames.ProtocolError):
        frames.decode_message(data).error()
