"""The encoder's choice by decode speed (issue 17): the fastest stream within SPEED_MARGIN of the smallest,
or, when that one is estimated above SPEED_TARGET instructions per output byte, the smallest stream that
meets the target and is at most SPEED_CAP larger; the estimate (decode_cost) adds up the work counted."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tinyfleet.signing import delta, tensor_coder

ROOT = Path(__file__).resolve().parents[2]
V1_MODEL = (ROOT / "examples" / "vibration-1.0.0.tflite").read_bytes()
OUT = 1000  # output bytes of the made-up candidates below


def _stream(size: int, tag: int) -> bytes:
    return bytes([tag]) * size


def test_fastest_within_the_margin_when_it_meets_the_target() -> None:
    small = (_stream(100, 1), 59 * OUT)
    near_faster = (_stream(103, 2), 30 * OUT)
    far_fastest = (_stream(110, 3), 10 * OUT)
    assert delta.choose([small, near_faster, far_fastest], OUT) == near_faster[0]


def test_a_larger_stream_that_meets_the_target_when_the_near_ones_do_not() -> None:
    small = (_stream(100, 1), 200 * OUT)
    near = (_stream(102, 2), 150 * OUT)
    meets = (_stream(115, 3), 60 * OUT)
    meets_larger = (_stream(118, 4), 20 * OUT)  # faster, but the smallest that meets the target is kept
    too_large = (_stream(146, 5), 10 * OUT)  # beyond SPEED_CAP
    assert delta.choose([small, near, meets, meets_larger, too_large], OUT) == meets[0]
    assert delta.choose([small, near, too_large], OUT) == near[0]


def test_decode_cost_adds_each_unit_of_work() -> None:
    assert delta.decode_cost(delta.Work(out_bytes=10)) == 10 * delta.COSTS.out_bytes
    for field in delta.Work._fields:
        work = delta.Work(**{field: 3})
        assert delta.decode_cost(work) == 3 * getattr(delta.COSTS, field)
    assert delta.Work(bits=1, freqs=2) + delta.Work(bits=4, steps=5) == delta.Work(bits=5, freqs=2, steps=5)


def _pruned(model: bytes) -> bytes:
    """The example model with its small weights zeroed and the others moved by at most one step: literals
    with base matches are smallest, table runs much faster."""
    rng = random.Random(1)
    new = bytearray(model)
    for t in tensor_coder.find_weight_tensors(model):
        for i in range(t.start, t.start + t.length):
            v = (new[i] + 128) % 256 - 128
            new[i] = 0 if abs(v) < 20 else (v + rng.choice((-1, 0, 0, 1))) % 256
    return bytes(new)


def test_a_slow_smallest_stream_gives_way_to_a_fast_one(monkeypatch: pytest.MonkeyPatch) -> None:
    new = _pruned(V1_MODEL)
    kept, cap = delta.encode(new, V1_MODEL), delta.SPEED_CAP
    monkeypatch.setattr(delta, "SPEED_CAP", 0.0)
    near = delta.encode(new, V1_MODEL)
    assert delta.decode(kept, V1_MODEL) == new and delta.decode(near, V1_MODEL) == new
    assert len(near) < len(kept) <= len(near) * (1 + cap)


def test_calls_count_the_numbers_of_binary_models() -> None:
    """A version 5 stream's numbers are calls out of the C decoder's op loop (Work.calls, priced apart);
    version 6 decodes its op numbers inline, as frequency symbols."""
    new = _pruned(V1_MODEL)
    work = {s[2]: w for s, w in delta.candidate_work(new, V1_MODEL) if s[5] == 4}
    assert work[delta.FORMAT_NUMBERS].calls > 0 and work[delta.FORMAT_NUMBERS].freqs == 0
    assert work[delta.FORMAT_SYMBOLS].calls == 0 and work[delta.FORMAT_SYMBOLS].freqs > 0
    copies = work[delta.FORMAT_NUMBERS].copies
    assert copies <= work[delta.FORMAT_NUMBERS].calls  # one or two numbers per copy op, more in runs
