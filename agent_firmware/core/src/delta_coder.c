/* The delta decoder's range decoder (PROTOCOL 5.2; tinyfleet/signing/rangecoder.py) and its output
 * through the flash contract. */
#include <string.h>

#include "delta_internal.h"
#include "tfa/errors.h"

/* ---- range decoder over the buffered bytes of the current block ---- */

/* A block's coder: full range, code = its first 4 bytes, big-endian. The caller starts it once 4 bytes
 * are buffered or the whole block is (then zeros follow it, TFA_DELTA_PAD): read unchecked (flash). */
void tfa_delta_coder_start(tfa_delta_t *d)
{
    const uint8_t *in = d->in;
    d->range = 0xFFFFFFFFu;
    d->code = (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
    d->in_pos = d->in_len < 4u ? d->in_len : 4u;
}

uint32_t tfa_delta_bit_rate(tfa_delta_t *d, uint16_t *prob, uint32_t shift)
{
    uint32_t p = *prob;
    uint32_t range = d->range;
    uint32_t code = d->code;
    uint32_t bound = (range >> PROB_BITS) * p;
    uint32_t bit;
    if (code < bound) {
        range = bound;
        *prob = (uint16_t)(p + (((1u << PROB_BITS) - p) >> shift));
        bit = 0;
    } else {
        code -= bound;
        range -= bound;
        *prob = (uint16_t)(p - (p >> shift));
        bit = 1;
    }
    while (range < TOP) {
        range <<= 8;
        code = (code << 8) | (d->in_pos < d->in_len ? d->in[d->in_pos++] : 0u);
    }
    d->range = range;
    d->code = code;
    return bit;
}

/* In locals: a word's number has up to 28 of these (they are most of a bias's bits). */
uint32_t tfa_delta_direct(tfa_delta_t *d, uint32_t count)
{
    uint32_t value = 0;
    uint32_t range = d->range;
    uint32_t code = d->code;
    for (uint32_t i = 0; i < count; i++) {
        range >>= 1;
        uint32_t bit = code >= range ? 1u : 0u;
        if (bit) {
            code -= range;
        }
        value = (value << 1) | bit;
        if (range < TOP) {
            range <<= 8; /* one step: range was at least 2^24 before the halving */
            code = (code << 8) | (d->in_pos < d->in_len ? d->in[d->in_pos++] : 0u);
        }
    }
    d->range = range;
    d->code = code;
    return value;
}

/* The coder's state in locals (through d it is stored and reloaded at each bit: trees are a third of a
 * stream's decisions). A bit reads at most 2 coded bytes (the smallest probability is 7/2048), so a tree
 * stays inside the look-ahead while the block is arriving and inside the TFA_DELTA_PAD zeros once it is
 * all buffered: unchecked, and in_pos is clamped after it as in the table-symbol loop. */
_Static_assert(2u * NUMBER_TREE_BITS <= TFA_DELTA_PAD, "the largest tree must fit in the padding");

/* `probs` is node 1's entry (node n uses probs[n - 1]): a caller's tree starts at its entry 1, and the
 * loops of single bits that were trees (run kind, weight class) are trees again (flash). */

uint32_t tfa_delta_tree_rate(tfa_delta_t *d, uint16_t *probs, uint32_t bits, uint32_t shift)
{
    uint32_t node = 1;
    const uint32_t end = 1u << bits;
    uint32_t range = d->range;
    uint32_t code = d->code;
    const uint8_t *in = &d->in[d->in_pos];
    while (node < end) {
        uint16_t *prob = &probs[node - 1u];
        uint32_t p = *prob;
        uint32_t bound = (range >> PROB_BITS) * p;
        if (code < bound) {
            range = bound;
            *prob = (uint16_t)(p + (((1u << PROB_BITS) - p) >> shift));
            node <<= 1;
        } else {
            code -= bound;
            range -= bound;
            *prob = (uint16_t)(p - (p >> shift));
            node = (node << 1) | 1u;
        }
        while (range < TOP) {
            range <<= 8;
            code = (code << 8) | *in++;
        }
    }
    d->range = range;
    d->code = code;
    uint32_t in_pos = (uint32_t)(in - d->in);
    d->in_pos = in_pos < d->in_len ? in_pos : d->in_len; /* past the end: the padding's zeros, read again */
    return node - end;
}

/* A number: its bit count through a tree (version 5: a ladder of classes, PROTOCOL 5.8), then the lower
 * bits (see tinyfleet/signing/rangecoder.py). The coder's state in locals and the input unchecked, as in a
 * tree: a number reads at most 22 coded bytes (escapes 6, count tree 12, equal-chance or direct bits 4,
 * low tree 6), an op at most about 70, inside the look-ahead and the padding (issue 17: the calls for
 * each escape bit and tree cost a third of a number's instructions). */
_Static_assert(22u <= TFA_DELTA_PAD && 3u * 22u + 8u + 6u + 5u <= TFA_DELTA_LOOKAHEAD,
               "a number fits the padding, an op's numbers the look-ahead");

/* Halve a version 6 model's counts, rounding up (none reaches 0); returns their new total. Rare: once per
 * few thousand symbols of one model. */
uint32_t tfa_delta_sym_halve(uint16_t *counts, uint32_t n)
{
    uint32_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        counts[i] = (uint16_t)((counts[i] + 1u) >> 1);
        total += counts[i];
    }
    return total;
}

int tfa_delta_number(tfa_delta_t *d, uint16_t *probs, uint32_t *out)
{
    const uint32_t ladder = d->checkpoint.has_base & FLAG_NUMBERS;
    const uint32_t shift = d->checkpoint.move_bits;
    uint32_t range = d->range;
    uint32_t code = d->code;
    const uint8_t *in = &d->in[d->in_pos];
    uint32_t first = 0;
    uint32_t depth = NUMBER_TREE_BITS;
    uint32_t value = 0;
    if (d->checkpoint.has_base & FLAG_SYMBOLS) {
        /* version 6: the bit count one adaptive symbol, the bits below the top one at equal chances */
        if (tfa_delta_number_local(probs, &value, &range, &code, &in) < 0) {
            return -TFA_ERR_DELTA_CORRUPT;
        }
        goto done;
    }
    if (ladder) {
        /* class k: counts from 0, 4, 8, 16 (2 << k), a tree of 2, 2, 3, 5 bits whose entries start there */
        uint32_t k = 0;
        while (k < 3u && tfa_delta_bit_local(&probs[LADDER_ESCAPES + k], shift, &range, &code, &in)) {
            k++;
        }
        first = k ? 2u << k : 0u;
        depth = k < 2u ? 2u : 2u * k - 1u;
    }
    /* two trees with one copy of the bit loop (flash): the bit count's (node n: entry first + n), then
     * the low bits' of that count (entry 64 + 8 * bits + n) */
    uint16_t *tree = &probs[first];
    for (uint32_t pass = 0;; pass++) {
        uint32_t node = 1;
        while (node < (1u << depth)) {
            /* the bit straight into node, one branch per value (as the literal trees, issue 17) */
            uint16_t *prob = &tree[node];
            uint32_t p = *prob;
            uint32_t bound = (range >> PROB_BITS) * p;
            node <<= 1;
            if (code < bound) {
                range = bound;
                *prob = (uint16_t)(p + (((1u << PROB_BITS) - p) >> shift));
            } else {
                code -= bound;
                range -= bound;
                *prob = (uint16_t)(p - (p >> shift));
                node |= 1u;
            }
            while (range < TOP) {
                range <<= 8;
                code = (code << 8) | *in++;
            }
        }
        node -= 1u << depth;
        if (pass) {
            value = (value << depth) | node;
            break;
        }
        uint32_t bits = first + node;
        if (bits <= 1) {
            value = bits;
            break;
        }
        if (bits > 32) {
            return -TFA_ERR_DELTA_CORRUPT;
        }
        value = 1;
        if (ladder && bits > LADDER_LOW_MAX) {
            /* version 5: every bit below the top one at equal chances */
            if (tfa_delta_low_bits_local(bits, &value, &range, &code, &in) < 0) {
                return -TFA_ERR_DELTA_CORRUPT;
            }
            break;
        }
        /* below the top bit: `spread` direct bits (versions 1-4), then the lowest `low` through the tree */
        depth = bits - 1u < NUMBER_LOW_BITS ? bits - 1u : NUMBER_LOW_BITS;
        for (uint32_t i = bits - 1u - depth; i > 0; i--) {
            range >>= 1;
            uint32_t bit = code >= range ? 1u : 0u;
            code -= bit ? range : 0u;
            value = (value << 1) | bit;
            if (range < TOP) {
                range <<= 8; /* one step: range was at least 2^24 before the halving */
                code = (code << 8) | *in++;
            }
        }
        tree = &probs[(1u << NUMBER_TREE_BITS) + bits * (1u << NUMBER_LOW_BITS)];
    }
done:
    d->range = range;
    d->code = code;
    uint32_t in_pos = (uint32_t)(in - d->in);
    d->in_pos = in_pos < d->in_len ? in_pos : d->in_len; /* past the end: the padding's zeros, read again */
    *out = value;
    return 0;
}

/* ---- output through the flash contract ---- */

int tfa_delta_flush(tfa_delta_t *d)
{
    if (d->wbuf_len == 0) {
        return 0;
    }
    uint32_t at = d->out_pos - d->wbuf_len;
    int rc = d->flash->program(d->flash->ctx, d->out_addr + at, d->wbuf, d->wbuf_len);
    d->wbuf_len = 0;
    return rc < 0 ? rc : 0;
}

/* Literals and words (1 or 4 bytes; copies and table runs write into wbuf themselves): a byte at a time,
 * no memcpy (the port's costs a call and a byte loop: about 35 Cortex-M4 instructions per literal). */
int tfa_delta_emit(tfa_delta_t *d, const uint8_t *bytes, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++) {
        d->wbuf[d->wbuf_len++] = bytes[i];
        d->out_pos++;
        if (d->wbuf_len == TFA_DELTA_WBUF) {
            int rc = tfa_delta_flush(d);
            if (rc < 0) {
                return rc;
            }
        }
    }
    return 0;
}

int tfa_delta_read(const tfa_delta_t *d, uint32_t addr, uint8_t *dst, uint32_t len)
{
    int rc = d->flash->read(d->flash->ctx, addr, dst, len);
    return rc < 0 ? -TFA_ERR_FLASH_IO : 0;
}

void tfa_delta_push_rep(tfa_delta_t *d, uint8_t kind, int32_t value)
{
    for (uint32_t i = REPS - 1; i > 0; i--) {
        d->rep_kind[i] = d->rep_kind[i - 1];
        d->rep_value[i] = d->rep_value[i - 1];
    }
    d->rep_kind[0] = kind;
    d->rep_value[0] = value;
}
