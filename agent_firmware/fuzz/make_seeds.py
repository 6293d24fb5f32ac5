#!/usr/bin/env python3
"""Regenerate the seed corpora of the libFuzzer harnesses (agent_firmware/fuzz/corpus/<harness>/) from
the golden vectors: packages, models and delta streams of tests/vectors and agent_firmware/tests/vectors,
plus the shared TFLM models when ../shared/models exists. Standard library only; deterministic.

    python3 agent_firmware/fuzz/make_seeds.py
"""
import pathlib
import shutil
import struct
import zlib

FUZZ = pathlib.Path(__file__).resolve().parent
FW = FUZZ.parent
ROOT = FW.parent
VEC = ROOT / "tests" / "vectors"
FW_VEC = FW / "tests" / "vectors"
SHARED = ROOT.parent / "shared" / "models"
MANIFEST = 292
MAX_BODY = 1088
MAX_CHUNK = MAX_BODY - 3 - 4


def cobs(data):
    out, block = bytearray(), bytearray()
    for b in data:
        if b == 0:
            out += bytes([len(block) + 1]) + block
            block = bytearray()
        else:
            block.append(b)
            if len(block) == 254:
                out += bytes([255]) + block
                block = bytearray()
    out += bytes([len(block) + 1]) + block
    return bytes(out)


def frame(body):
    return b"\x00" + cobs(body + struct.pack("<I", zlib.crc32(body))) + b"\x00"


def msg(kind, rid, body=b""):
    return bytes([kind]) + struct.pack("<H", rid) + body


def install(pkg, rid):
    """INSTALL_BEGIN, the chunks, INSTALL_END, ACTIVATE, SELFTEST, CONFIRM for one package."""
    out = [msg(0x10, rid, pkg[:MANIFEST])]
    payload = pkg[MANIFEST:]
    for off in range(0, len(payload), 1024):
        out.append(msg(0x11, rid + 1 + off // 1024, struct.pack("<I", off) + payload[off:off + 1024]))
    rid += 100
    out += [msg(0x12, rid), msg(0x13, rid + 1), msg(0x14, rid + 2), msg(0x15, rid + 3)]
    return out


def records(msgs):
    return b"".join(struct.pack("<H", len(m)) + m for m in msgs)


def state_record(seq, active=0, phase=0, floor=3, offset=0, size=0):
    rec = struct.pack("<IIBBBBBBBBIII", 0x52534654, seq, 1, active, phase, 0, 0, 0xFF, 1, 0, floor,
                      offset, size) + bytes(12)
    rec += bytes(44 - len(rec))
    return rec + struct.pack("<I", zlib.crc32(rec))


def main():
    out = {}
    pkgs = sorted(VEC.glob("*.tfpkg"))
    # manifest: the first 292 bytes of every package (signed range vectors reach the range checks)
    out["manifest"] = {p.stem: p.read_bytes()[:MANIFEST] for p in pkgs}
    # frame: encoded messages, a bad CRC, an overlong frame, noise between frames
    good = VEC.joinpath("good.tfpkg").read_bytes()
    fr = {"hello": frame(msg(1, 1)), "begin": frame(msg(0x10, 2, good[:MANIFEST])),
          "chunk_max": frame(msg(0x11, 3, struct.pack("<I", 0) + good[MANIFEST:MANIFEST + MAX_CHUNK])),
          "two": frame(msg(2, 4)) + frame(msg(0x30, 5))}
    bad = bytearray(frame(msg(1, 6)))
    bad[2] ^= 0x40
    fr["bad_crc"] = bytes(bad)
    fr["too_long"] = frame(bytes(range(256)) * 5)
    out["frame"] = {k: b"\x00" + v for k, v in fr.items()}  # first byte: buffer size selector
    # proto: whole conversations
    sel = VEC.joinpath("good_selftest.tfpkg").read_bytes()
    active = VEC.joinpath("good_active.tfpkg").read_bytes()
    delta = VEC.joinpath("delta_good.tfpkg").read_bytes()
    comp = VEC.joinpath("compressed_good.tfpkg").read_bytes()
    out["proto"] = {
        "hello_state": records([msg(1, 1), msg(2, 2), msg(0x30, 3), msg(0x20, 4, b"\x01\x00\x00\x00\x00"),
                                msg(0x77, 5), b"\x01"]),
        "install_good": records([msg(1, 1)] + install(good, 10) + [msg(2, 200), msg(0x30, 201)]),
        "install_selftest": records(install(sel, 10) + [msg(0x16, 300)]),
        "delta_after_active": records(install(active, 10) + install(delta, 400)),
        "compressed": records(install(comp, 10)),
        "abort": records([msg(0x10, 1, good[:MANIFEST]), msg(0x17, 2), msg(0x12, 3)]),
    }
    # delta: u32 model size, u16 base size, u8 chunk selector, stream (agent_firmware/tests/vectors/delta)
    dv = FW_VEC / "delta"
    new_len = dv.joinpath("new.bin").stat().st_size
    base_len = dv.joinpath("base.bin").stat().st_size
    out["delta"] = {
        "delta": struct.pack("<IHB", new_len, base_len, 9) + dv.joinpath("delta.bin").read_bytes(),
        "blk": struct.pack("<IHB", new_len, base_len, 0) + dv.joinpath("blk.bin").read_bytes(),
        "full": struct.pack("<IHB", new_len, 0, 40) + dv.joinpath("full.bin").read_bytes(),
    }
    # format version 2 (weight runs; diff runs read the harness's own base, which the decoder does not judge)
    t_new, t_base = dv.joinpath("t_new.bin").stat().st_size, dv.joinpath("t_base.bin").stat().st_size
    for name, b_len, sel in (("t_delta", t_base, 9), ("t_blk", t_base, 0), ("t_full", 0, 40)):
        out["delta"][name] = struct.pack("<IHB", t_new, b_len, sel) + dv.joinpath(f"{name}.bin").read_bytes()
    # format version 3 (table runs: exact and bucketed tables, plain and diff)
    for name, b_len, sel in (("t3_delta", t_base, 9), ("t3_blk", t_base, 0), ("t3_full", 0, 40)):
        out["delta"][name] = struct.pack("<IHB", t_new, b_len, sel) + dv.joinpath(f"{name}.bin").read_bytes()
    # format version 4 (literal runs reusing their block's table): t4_delta and t4_blk carry t4_new.bin
    t4_new = dv.joinpath("t4_new.bin").stat().st_size
    # and versions 5 (ladder numbers) and 6 (adaptive frequency symbols), the same pairs
    for v in ("t4", "t5", "t6"):
        for name, size, b_len, sel in ((f"{v}_delta", t4_new, base_len, 9), (f"{v}_blk", t4_new, base_len, 0),
                                       (f"{v}_full", t_new, 0, 40)):  # fmt: skip
            data = dv.joinpath(f"{name}.bin").read_bytes()
            out["delta"][name] = struct.pack("<IHB", size, b_len, sel) + data
    # state: two 256-byte sectors (48-byte records)
    ff = b"\xff" * 256
    s0 = state_record(1) + state_record(2, phase=1, offset=1024, size=4096)
    out["state"] = {
        "empty": ff + ff,
        "two_records": (s0 + ff)[:256] + ff,
        "other_sector": ff + (state_record(7, active=1) + ff)[:256],
        "torn": (state_record(3) + state_record(4)[:30] + ff)[:256] + ff,
        "full_sector": (b"".join(state_record(i + 1) for i in range(5)) + ff)[:256] + ff,
    }
    # engine: models
    models = [FW_VEC / "engine" / "engine_ops.tflite", VEC / "model.tflite", VEC / "model_two_inputs.tflite"]
    models += [SHARED / n for n in ("hello_world_int8.tflite", "micro_speech_quantized.tflite")]
    out["engine"] = {p.stem: p.read_bytes() for p in models if p.exists()}
    # crypto: device key || wrap || manifest, from the key wraps of the encryption vectors (a good one and
    # a refused one); the harness also runs X25519 and ChaCha20 on the same bytes
    unwraps = [ln.split() for ln in FW_VEC.joinpath("encryption.txt").read_text().splitlines()
               if ln.startswith("unwrap ")]
    good = next(f for f in unwraps if f[5] != "KEY_UNWRAP")
    bad = next(f for f in unwraps if f[5] == "KEY_UNWRAP")
    out["crypto"] = {"good_wrap": bytes.fromhex(good[1] + good[4] + good[3]),
                     "bad_wrap": bytes.fromhex(bad[1] + bad[4] + bad[3])}

    for harness, seeds in out.items():
        d = FUZZ / "corpus" / harness
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        for name, data in seeds.items():
            d.joinpath(name).write_bytes(data)
        print(f"{harness}: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")


if __name__ == "__main__":
    main()
