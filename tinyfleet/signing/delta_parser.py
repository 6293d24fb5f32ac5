"""Parser of the delta encoder (tinyfleet/signing/delta.py): which ops code a stretch of the new model,
the copies found by hashing 4-byte strings of the base and of earlier output, weighed against literals
and against each other in bits at the models' current prices (delta_prices). The cheapest sequence of
ops is found by dynamic programming over the positions ahead (as LZMA's optimal parse): a shorter copy,
or a literal first, often lets the next op be a cheap repeat copy. Versions 1-4 asked for alone keep
the greedy parse (an estimated gain per copy, one byte of look-ahead) their golden vectors pin."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

from tinyfleet.signing.delta_prices import Prices
from tinyfleet.signing.rangecoder import zigzag as _zigzag

BASE, OUT = 0, 1  # the two sources a copy reads: the base model, or output already written
REP_MIN = 2
NEW_MIN = 4
HASH_LEN = 4
MAX_CANDIDATES = 16
LITERAL_BITS_ESTIMATE = 6  # the greedy parse's price of a literal, in bits
# A copy this long ends a plan: it is taken whole from the cheapest of its first NICE_LEN positions, so the
# plan weighs each length only of shorter copies (bounds the parser's work). 32: w16 requantized 236 B,
# 64: 211 B, 128: 206 B at twice the encode time of 64 (bench/delta.py pairs)
NICE_LEN = 64
WINDOW = 512  # positions a plan weighs at most


def _common_length(a: bytes, ai: int, b: bytes, bi: int, limit: int) -> int:
    limit = min(limit, len(a) - ai, len(b) - bi)
    n = 0
    while n + 32 <= limit and a[ai + n : ai + n + 32] == b[bi + n : bi + n + 32]:
        n += 32
    while n < limit and a[ai + n] == b[bi + n]:
        n += 1
    return n


def _index(data: bytes) -> dict[bytes, list[int]]:
    """Positions of every 4-byte string, ascending."""
    table: dict[bytes, list[int]] = {}
    for pos in range(len(data) - HASH_LEN + 1):
        table.setdefault(data[pos : pos + HASH_LEN], []).append(pos)
    return table


@dataclass
class _Copy:
    """A copy the parser may emit; `gain`: the greedy parse's estimate of the bits it saves over literals."""

    kind: str  # "rep", "base" or "out"
    length: int
    value: int  # rep index, new base displacement, or output distance
    gain: float = 0.0


Op = _Copy | None  # None: a literal
Match = tuple[int, int, int]  # (length up to the end of the model, BASE or OUT, displacement or distance)


def _source_start(rep: tuple[int, int], pos: int) -> int:
    kind, value = rep
    return pos + value if kind == BASE else pos - value


def _after(reps: list[tuple[int, int]], op: Op) -> list[tuple[int, int]]:
    """The repeat slots after `op` (as the encoder and decoder update them)."""
    if op is None:
        return reps
    if op.kind == "rep":
        return [reps[op.value], *reps[: op.value], *reps[op.value + 1 :]]
    return [(BASE if op.kind == "base" else OUT, op.value), *reps[:-1]]


class _Parser:
    def __init__(self, new: bytes, base: bytes) -> None:
        self.new, self.base = new, base
        self.base_index = _index(base)
        self.out_index = _index(new)
        self.found: dict[int, list[Match]] = {}  # matches per position, shared by every stream encoded

    def matches(self, pos: int) -> list[Match]:
        """The copies from the base and from earlier output that start at `pos` (MAX_CANDIDATES of the
        latest of each), an output copy only if it is longer than every nearer one."""
        found = self.found.get(pos)
        if found is not None:
            return found
        new, base = self.new, self.base
        key = new[pos : pos + HASH_LEN]
        found = []
        if len(key) == HASH_LEN:
            limit = len(new) - pos
            for cand in reversed(self.base_index.get(key, [])[-MAX_CANDIDATES:]):
                n = _common_length(base, cand, new, pos, limit)
                found.append((n, BASE, cand - pos))
            earlier = self.out_index.get(key, [])
            longest = NEW_MIN - 1
            first = bisect.bisect_left(earlier, pos)
            for cand in reversed(earlier[max(0, first - MAX_CANDIDATES) : first]):
                n = _common_length(new, cand, new, pos, limit)
                if n > longest:
                    found.append((n, OUT, pos - cand))
                    longest = n
        self.found[pos] = found
        return found

    def rep_length(self, rep: tuple[int, int], pos: int, limit: int) -> int:
        src = _source_start(rep, pos)
        source = self.base if rep[0] == BASE else self.new
        if 0 <= src < (len(self.base) if rep[0] == BASE else pos):
            return _common_length(source, src, self.new, pos, limit)
        return 0

    def greedy(self, pos: int, end: int, reps: list[tuple[int, int]]) -> Op:
        """The op the greedy parse takes at `pos` (versions 1-4 as asked for, the golden vectors): the copy
        with the largest estimated gain, unless a clearly better one starts a byte later."""
        copy = self.best_copy(pos, end, reps)
        if copy is not None and copy.length < end - pos:
            later = self.best_copy(pos + 1, end, reps)
            if later is not None and later.gain > copy.gain + LITERAL_BITS_ESTIMATE + 2:
                return None
        return copy

    def best_copy(self, pos: int, end: int, reps: list[tuple[int, int]]) -> _Copy | None:
        new = self.new
        limit = end - pos
        lit = LITERAL_BITS_ESTIMATE
        best: _Copy | None = None
        for k, rep in enumerate(reps):
            n = self.rep_length(rep, pos, limit)
            gain = n * lit - (4 + 2 * k + 2 * n.bit_length())
            if n >= REP_MIN and (best is None or gain > best.gain):
                best = _Copy("rep", n, k, gain)
        if pos + HASH_LEN > len(new):
            return best
        align = next((v for kind, v in reps if kind == BASE), 0)
        for n, kind, value in self.matches(pos):
            n = min(n, limit)
            if kind == BASE:
                gain = n * lit - (8 + 2 * _zigzag(value - align).bit_length() + 2 * n.bit_length())
            else:
                gain = n * lit - (8 + 2 * value.bit_length() + 2 * n.bit_length())
            if n >= NEW_MIN and (best is None or gain > best.gain):
                best = _Copy("base" if kind == BASE else "out", n, value, gain)
        return best if best is not None and best.gain > 0 else None

    def plan(
        self, pos: int, end: int, reps: list[tuple[int, int]], prev_kind: int, prices: Callable[[], Prices]
    ) -> list[Op]:
        """The cheapest ops from `pos` on (before `end`) until every path meets again, or to the end of the
        first copy of NICE_LEN or more (entered at its start or up to NICE_LEN bytes later, whichever
        path is cheapest), or WINDOW positions. `prices` gives the models' prices, asked only when ops
        compete."""
        new = self.new
        size = min(end - pos, WINDOW + 2 * NICE_LEN)
        inf = float("inf")
        cost = [inf] * (size + 1)
        back: list[tuple[int, Op]] = [(0, None)] * (size + 1)
        states: list[tuple[list[tuple[int, int]], int]] = [(reps, prev_kind)] * (size + 1)
        cost[0] = 0.0
        price: Prices | None = None
        reach, i = 0, 0
        long: tuple[int, int, int] | None = None  # the first long copy: source kind, value, where it ends
        long_at, finish, finish_at = 0, inf, 0  # where it was found, the cheapest way to its end
        while True:
            if i > 0:
                j, op = back[i]
                states[i] = (_after(states[j][0], op), 0 if op is None else 1)
            here, kind = states[i]
            p = pos + i
            avail = end - p
            rep_lens = [self.rep_length(rep, p, avail) for rep in here]
            # a source in a repeat slot is cheaper as a repeat copy
            found = [
                (min(n, avail), k, v)
                for n, k, v in self.matches(p)
                if min(n, avail) >= NEW_MIN and (k, v) not in here
            ]
            longest = max(rep_lens)
            if long is None:
                longest_new = max((n for n, _, _ in found), default=0)
                if longest >= NICE_LEN and longest >= longest_new:
                    long, long_at = (*here[rep_lens.index(longest)], i + longest), i
                elif longest_new >= NICE_LEN:
                    n, k, v = next(m for m in found if m[0] == longest_new)
                    long, long_at = (k, v, i + n), i
            if i == 0 and longest < REP_MIN and not found:
                return [None]
            if price is None:
                price = prices()
            c0 = cost[i]
            if long is not None:
                op = self._long_op(long, here, i)
                c = c0 + _copy_price(price, op, here, kind)
                if c < finish:
                    finish, finish_at = c, i
            # a literal
            match_at = p + next((v for k, v in here if k == BASE), 0)
            match = self.base[match_at] if 0 <= match_at < len(self.base) else None
            c = c0 + price.literal_flag[kind] + price.literal(new[p], match)
            if c < cost[i + 1]:
                cost[i + 1], back[i + 1] = c, (i, None)
            reach = max(reach, i + 1)
            # repeat copies, every length below NICE_LEN; not the one continuing the copy that led here
            # when that copy could have been longer instead (one op, cheaper)
            j, op = back[i]
            continued = i > 0 and op is not None and i + rep_lens[0] < j + NICE_LEN
            for k, n in enumerate(rep_lens):
                if n < REP_MIN or (k == 0 and continued):
                    continue
                n = min(n, NICE_LEN - 1)
                flag = c0 + price.rep_flag[kind][k]
                for length in range(REP_MIN, n + 1):
                    c = flag + price.rep_len.price(length - REP_MIN)
                    if c < cost[i + length]:
                        cost[i + length], back[i + length] = c, (i, _Copy("rep", length, k))
                reach = max(reach, i + n)
            # new copies: each length below NICE_LEN from the cheapest source at least that long
            if found:
                align = next((v for k, v in here if k == BASE), 0)
                priced = sorted(
                    (
                        (
                            min(n, NICE_LEN - 1),
                            price.base_flag[kind] + price.disp.price(_zigzag(v - align))
                            if k == BASE
                            else price.out_flag[kind] + price.dist.price(v - 1),
                            k,
                            v,
                        )
                        for n, k, v in found
                    ),
                    key=lambda m: -m[0],
                )
                best, source, at = inf, priced[0], 0
                for length in range(priced[0][0], NEW_MIN - 1, -1):
                    while at < len(priced) and priced[at][0] >= length:
                        if priced[at][1] < best:
                            best, source = priced[at][1], priced[at]
                        at += 1
                    c = c0 + best + price.new_len.price(length - NEW_MIN)
                    if c < cost[i + length]:
                        kind_name = "base" if source[2] == BASE else "out"
                        cost[i + length], back[i + length] = c, (i, _Copy(kind_name, length, source[3]))
                reach = max(reach, i + priced[0][0])
            i += 1
            if long is not None and (i > long_at + NICE_LEN or i > long[2] - NEW_MIN):
                path = self._path(back, finish_at)
                return [*path, self._long_op(long, states[finish_at][0], finish_at)]
            if long is None and (i >= reach or i >= WINDOW):
                return self._path(back, reach)

    @staticmethod
    def _long_op(long: tuple[int, int, int], reps: list[tuple[int, int]], i: int) -> _Copy:
        """The long copy's source from plan position `i` to its end: a repeat copy if a slot has it."""
        source, length = long[:2], long[2] - i
        if source in reps:
            return _Copy("rep", length, reps.index(source))
        return _Copy("base" if source[0] == BASE else "out", length, source[1])

    @staticmethod
    def _path(back: list[tuple[int, Op]], i: int) -> list[Op]:
        ops: list[Op] = []
        while i > 0:
            i, op = back[i]
            ops.append(op)
        ops.reverse()
        return ops


def _copy_price(price: Prices, op: _Copy, reps: list[tuple[int, int]], prev_kind: int) -> float:
    if op.kind == "rep":
        return price.rep_flag[prev_kind][op.value] + price.rep_len.price(op.length - REP_MIN)
    if op.kind == "base":
        align = next((v for k, v in reps if k == BASE), 0)
        flag = price.base_flag[prev_kind] + price.disp.price(_zigzag(op.value - align))
    else:
        flag = price.out_flag[prev_kind] + price.dist.price(op.value - 1)
    return flag + price.new_len.price(op.length - NEW_MIN)
