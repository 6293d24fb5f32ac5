"""Match finder of the delta encoder (tinyfleet/signing/delta.py): for each output position, the copy
from the base model or from earlier output that saves the most bits over literals, if any."""

from __future__ import annotations

from dataclasses import dataclass

from tinyfleet.signing.rangecoder import zigzag as _zigzag

BASE, OUT = 0, 1  # the two sources a copy reads: the base model, or output already written
REP_MIN = 2
NEW_MIN = 4
HASH_LEN = 4
MAX_CANDIDATES = 16
LITERAL_BITS_ESTIMATE = 6  # what the parser assumes a literal costs when it weighs a copy against literals


def _common_length(a: bytes, ai: int, b: bytes, bi: int, limit: int) -> int:
    limit = min(limit, len(a) - ai, len(b) - bi)
    n = 0
    while n + 32 <= limit and a[ai + n : ai + n + 32] == b[bi + n : bi + n + 32]:
        n += 32
    while n < limit and a[ai + n] == b[bi + n]:
        n += 1
    return n


class _Index:
    """Positions of every 4-byte string, newest last."""

    def __init__(self) -> None:
        self.table: dict[bytes, list[int]] = {}

    def add(self, data: bytes, pos: int) -> None:
        if pos + HASH_LEN <= len(data):
            self.table.setdefault(data[pos : pos + HASH_LEN], []).append(pos)

    def candidates(self, key: bytes) -> list[int]:
        return self.table.get(key, [])[-MAX_CANDIDATES:]


@dataclass
class _Copy:
    """A copy the parser may emit, with its estimated gain in bits over coding the bytes as literals."""

    kind: str  # "rep", "base" or "out"
    length: int
    value: int  # rep index, new base displacement, or output distance
    gain: float


def _source_start(rep: tuple[int, int], pos: int) -> int:
    kind, value = rep
    return pos + value if kind == BASE else pos - value


class _Parser:
    def __init__(self, new: bytes, base: bytes) -> None:
        self.new, self.base = new, base
        self.base_index = _Index()
        for i in range(len(base) - HASH_LEN + 1):
            self.base_index.add(base, i)
        self.out_index = _Index()
        self.indexed = 0

    def restart(self) -> None:
        """Forget the output indexed so far (before encoding the stream again)."""
        self.out_index, self.indexed = _Index(), 0

    def best_copy(self, pos: int, end: int, reps: list[tuple[int, int]]) -> _Copy | None:
        new, base = self.new, self.base
        while self.indexed < pos:
            self.out_index.add(new, self.indexed)
            self.indexed += 1
        limit = end - pos
        lit = LITERAL_BITS_ESTIMATE
        best: _Copy | None = None
        for k, rep in enumerate(reps):
            src = _source_start(rep, pos)
            source = base if rep[0] == BASE else new
            if 0 <= src < (len(base) if rep[0] == BASE else pos):
                n = _common_length(source, src, new, pos, limit)
                gain = n * lit - (4 + 2 * k + 2 * n.bit_length())
                if n >= REP_MIN and (best is None or gain > best.gain):
                    best = _Copy("rep", n, k, gain)
        key = new[pos : pos + HASH_LEN]
        if len(key) < HASH_LEN:
            return best
        align = next((v for kind, v in reps if kind == BASE), 0)
        for cand in reversed(self.base_index.candidates(key)):
            n = _common_length(base, cand, new, pos, limit)
            disp = cand - pos
            gain = n * lit - (8 + 2 * _zigzag(disp - align).bit_length() + 2 * n.bit_length())
            if n >= NEW_MIN and (best is None or gain > best.gain):
                best = _Copy("base", n, disp, gain)
        for cand in reversed(self.out_index.candidates(key)):
            n = _common_length(new, cand, new, pos, limit)
            gain = n * lit - (8 + 2 * (pos - cand).bit_length() + 2 * n.bit_length())
            if n >= NEW_MIN and (best is None or gain > best.gain):
                best = _Copy("out", n, pos - cand, gain)
        return best if best is not None and best.gain > 0 else None
