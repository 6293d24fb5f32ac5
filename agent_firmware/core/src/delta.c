/* Streaming decoder of the tinyfleet delta format (versions 1 to 6); mirrors the reference decoder in
 * tinyfleet/signing/delta.py, tinyfleet/signing/tensor_coder.py for the weight runs of versions 2 to 5,
 * tinyfleet/signing/table_coder.py for the table runs of versions 3 to 5 (4 and 5: literal runs, kind 7)
 * and tinyfleet/signing/rangecoder.py for the numbers (5: ladder numbers, in delta_coder.c; 6: adaptive
 * frequency symbols for numbers there and for literals here). */
#include "tfa/delta.h"

#include <stddef.h>
#include <string.h>

#include "delta_internal.h"
#include "tfa/errors.h"

enum { ST_HEADER = 0, ST_BLOCK_LEN, ST_BLOCK_DATA, ST_BLOCK_TAIL, ST_DONE, ST_FAILED };

/* The adaptive models, is_match to w_word, are runs of uint16_t in tfa_delta_t reset a word at a time. */
_Static_assert(offsetof(tfa_delta_t, is_match) % 4u == 0 && offsetof(tfa_delta_t, literal) % 4u == 0 &&
                   offsetof(tfa_delta_t, is_tensor) % 4u == 0 && offsetof(tfa_delta_t, w_exp) % 4u == 0 &&
                   offsetof(tfa_delta_t, w_word) % 4u == 0,
               "the models start on whole words");
_Static_assert(offsetof(tfa_delta_t, is_match) + 2u * 10u == offsetof(tfa_delta_t, literal) &&
                   offsetof(tfa_delta_t, is_tensor) + 2u * 10u == offsetof(tfa_delta_t, w_exp) &&
                   offsetof(tfa_delta_t, w_exp) + 2u * (64u + 2u * TFA_DELTA_MANT_PROBS) ==
                       offsetof(tfa_delta_t, w_word),
               "the models lie as prv_reset_block writes them");

/* two values per word (issue 17: a uint16_t at a time cost 3.3 Cortex-M4 instructions per output byte of
 * a 2.7 KB model); may_alias: the words overlay the uint16_t arrays. `count` is even. */
typedef uint32_t __attribute__((may_alias)) prv_word_t;

void tfa_delta_fill(uint16_t *models, uint32_t count, uint32_t value)
{
    prv_word_t *word = (prv_word_t *)(void *)models;
    prv_word_t *end = word + count / 2u;
    const uint32_t pair = value << 16 | value;
    if (count & 2u) {
        *word++ = pair;
    }
    for (; word < end; word += 2) { /* two words a step: the loop's test cost as much as a store */
        word[0] = pair;
        word[1] = pair;
    }
}

/* Version 6: every count 1, each total the model's symbol count, where versions 1-5 keep the binary
 * literal and number trees. */
static void prv_reset_symbols(tfa_delta_t *d)
{
    uint16_t *literal = d->literal[0]; /* the three 256-entry trees as one room */
    tfa_delta_fill(literal, SYM_TOTALS, 1u);
    for (uint32_t i = 0; i < SYM_LITERAL_MODELS; i++) {
        literal[SYM_TOTALS + i] = 16u;
    }
    uint16_t *numbers[] = {d->rep_len, d->new_len, d->disp, d->dist, d->w_word};
    for (uint32_t k = 0; k < sizeof numbers / sizeof numbers[0]; k++) {
        tfa_delta_fill(numbers[k], SYM_NUMBER_SYMBOLS - 1u, 1u);
        numbers[k][SYM_NUMBER_SYMBOLS - 1u] = 1u;
        numbers[k][SYM_NUMBER_TOTAL] = SYM_NUMBER_SYMBOLS;
    }
}

/* A block's models. The weight runs' (w_exp to w_mant, 1.1 KiB) wait for the block's first weight run
 * (tfa_delta_run_begin), and version 6 writes only the binary models it keeps: resetting all of them cost
 * 1.9 Cortex-M4 instructions per output byte of a 2.7 KB model (issue 17). */
static void prv_reset_block(tfa_delta_t *d)
{
    if (d->checkpoint.has_base & FLAG_SYMBOLS) {
        tfa_delta_fill(d->is_match, 10u, PROB_INIT); /* is_match, is_rep, rep_which, is_out */
        tfa_delta_fill(d->is_tensor, 10u, PROB_INIT); /* is_tensor, w_kind_probs */
        prv_reset_symbols(d);
    } else {
        tfa_delta_fill(d->is_match, (offsetof(tfa_delta_t, w_exp) - offsetof(tfa_delta_t, is_match)) / 2u, PROB_INIT);
        tfa_delta_fill(d->w_word, TFA_DELTA_NUMBER_PROBS, PROB_INIT);
    }
    d->w_ready = 0;
    d->w_left = 0;
    d->t_left = 0;
    d->t_cum[TFA_DELTA_TABLE_SYMBOLS] = 0; /* no table yet in this block (version 4 reuses the last) */
    for (uint32_t i = 0; i < REPS; i++) {
        d->rep_kind[i] = KIND_BASE;
        d->rep_value[i] = 0;
    }
    d->prev_kind = 0;
    d->coder_ready = 0;
    d->in_len = 0;
    d->in_pos = 0;
}

/* The match byte at base offset `at` (< base_len), from the base bytes last read (bcache), which are read
 * again (up to TFA_DELTA_BCACHE of them) when `at` falls outside: the base does not change during a
 * decode. Returns the byte, or an error. */
static inline __attribute__((always_inline)) int prv_match_byte(tfa_delta_t *d, uint32_t at)
{
    if (at - d->bc_at >= d->bc_len) {
        uint32_t n = d->base_len - at;
        n = n < TFA_DELTA_BCACHE ? n : TFA_DELTA_BCACHE;
        int rc = tfa_delta_read(d, d->base_addr + at, d->bcache, n);
        if (rc < 0) {
            return rc;
        }
        d->bc_at = at;
        d->bc_len = n;
    }
    return d->bcache[at - d->bc_at];
}

/* A decoded literal straight into the output buffer (tfa_delta_emit's loop and call: about 15 more
 * Cortex-M4 instructions per literal), then, while prv_decode_buffered's loop would go on, the next op's
 * is_match on the caller's coder state. Returns that flag (0: another literal), LITERALS_STOP when the
 * loop's condition stops (block end, or the look-ahead not buffered; w_left is 0 after a literal), or an
 * error from programming the output. */
#define LITERALS_STOP 2
static inline __attribute__((always_inline)) int prv_after_literal(tfa_delta_t *d, uint32_t byte, uint32_t *range,
                                                                    uint32_t *code, const uint8_t **in,
                                                                    const uint8_t *end)
{
    int rc;
    d->wbuf[d->wbuf_len++] = (uint8_t)byte;
    d->out_pos++;
    if (d->wbuf_len == TFA_DELTA_WBUF && (rc = tfa_delta_flush(d)) < 0) {
        return rc;
    }
    if (d->out_pos >= d->block_end || (d->block_left > 0 && (uint32_t)(end - *in) < TFA_DELTA_LOOKAHEAD)) {
        return LITERALS_STOP;
    }
    uint32_t bit = tfa_delta_bit_local(&d->is_match[0], d->checkpoint.move_bits, range, code, in);
    *in = *in < end ? *in : end; /* past the end: the padding's zeros, read again */
    return (int)bit;
}

/* Literals, bit by bit: in the context of the match byte's bit while they agree, then the plain tree
 * (see _encode_literal in tinyfleet/signing/delta.py). The coder's state stays in locals and the input is
 * read unchecked: 8 bits take at most 16 coded bytes, inside the look-ahead (or the padding) the caller
 * guarantees. The match byte comes from a few base bytes read at once (bcache). While the decoding loop
 * (prv_decode_buffered) would go on, the next op's is_match is decoded here too, so that a run of literals
 * keeps the coder in locals (issue 17): returns 1 when that flag is 1 (a match op follows, its is_match
 * read), 0 when the loop's condition stops it, or an error. */
_Static_assert(16u + 2u <= TFA_DELTA_PAD && 16u + 2u <= TFA_DELTA_LOOKAHEAD, "a literal fits the look-ahead");

static int prv_literal(tfa_delta_t *d)
{
    /* no rep changes in a run of literals: the match byte's position moves with the output */
    uint32_t src = d->out_pos + (uint32_t)tfa_delta_align(d); /* before 0: wraps past base_len (prv_init) */
    uint32_t range = d->range;
    uint32_t code = d->code;
    const uint8_t *in = &d->in[d->in_pos];
    const uint8_t *end = &d->in[d->in_len];
    const uint32_t rate = d->checkpoint.move_bits;
    uint16_t *plain = d->literal[0];
    int rc = 0;
    for (;; src++) {
        uint32_t node = 1;
        if (src < d->base_len) {
            rc = prv_match_byte(d, src);
            if (rc < 0) {
                return rc;
            }
            /* the match byte's next bit at bit 8 of `match`: literal[1 + bit][node] is with[it + node] */
            uint32_t match = (uint32_t)rc;
            uint16_t *with = &d->literal[1][0];
            do {
                match <<= 1;
                uint32_t match_bit = match & 0x100u;
                uint16_t *prob = &with[match_bit + node];
                uint32_t p = *prob;
                uint32_t bound = (range >> PROB_BITS) * p;
                if (code < bound) {
                    range = bound;
                    *prob = (uint16_t)(p + (((1u << PROB_BITS) - p) >> rate));
                    node <<= 1;
                } else {
                    code -= bound;
                    range -= bound;
                    *prob = (uint16_t)(p - (p >> rate));
                    node = (node << 1) | 1u;
                }
                while (range < TOP) {
                    range <<= 8;
                    code = (code << 8) | *in++;
                }
                if (((node << 8) ^ match_bit) & 0x100u) {
                    break; /* the bit differs from the match byte's */
                }
            } while (node < 0x100u);
        }
        while (node < 0x100u) {
            uint16_t *prob = &plain[node];
            uint32_t p = *prob;
            uint32_t bound = (range >> PROB_BITS) * p;
            node <<= 1;
            if (code < bound) {
                range = bound;
                *prob = (uint16_t)(p + (((1u << PROB_BITS) - p) >> rate));
            } else {
                code -= bound;
                range -= bound;
                *prob = (uint16_t)(p - (p >> rate));
                node |= 1u;
            }
            while (range < TOP) {
                range <<= 8;
                code = (code << 8) | *in++;
            }
        }
        in = in < end ? in : end; /* past the end: the padding's zeros, read again */
        if ((rc = prv_after_literal(d, node, &range, &code, &in, end)) != 0) {
            break;
        }
    }
    d->range = range;
    d->code = code;
    d->in_pos = (uint32_t)(in - d->in);
    d->prev_kind = 0;
    return rc == LITERALS_STOP ? 0 : rc;
}

/* Version 6 literals (PROTOCOL 5.10): two adaptive nibbles each, the high one in the context of the match
 * byte's high nibble, the low one in the context of the high one, on prv_ops_symbols' coder state (the
 * next op's is_match read here, as prv_literal does; same returns). A literal and a flag read at most 6
 * coded bytes. */
_Static_assert(2u * 2u + 2u <= TFA_DELTA_PAD, "a literal fits the padding");

static inline __attribute__((always_inline)) int prv_literals_symbols(tfa_delta_t *d, uint32_t *range,
                                                                      uint32_t *code, const uint8_t **in,
                                                                      const uint8_t *end)
{
    uint32_t src = d->out_pos + (uint32_t)tfa_delta_align(d); /* before 0: wraps past base_len (prv_init) */
    uint16_t *high = d->literal[0];
    uint16_t *totals = &high[SYM_TOTALS];
    int rc;
    d->prev_kind = 0;
    for (;; src++) {
        uint32_t ctx = SYM_NO_MATCH;
        if (src < d->base_len) {
            rc = prv_match_byte(d, src);
            if (rc < 0) {
                return rc;
            }
            ctx = (uint32_t)rc >> 4;
        }
        uint32_t hi = tfa_delta_sym_local(&high[ctx * 16u], &totals[ctx], 16u, SYM_LITERAL_INC, 1, range, code, in);
        if (hi == UINT32_MAX) {
            return -TFA_ERR_DELTA_CORRUPT;
        }
        uint32_t lo = tfa_delta_sym_local(&high[SYM_LOW_COUNTS + hi * 16u], &totals[SYM_HIGH_MODELS + hi], 16u,
                                          SYM_LITERAL_INC, 1, range, code, in);
        if (lo == UINT32_MAX) {
            return -TFA_ERR_DELTA_CORRUPT;
        }
        *in = *in < end ? *in : end; /* past the end: the padding's zeros, read again */
        if ((rc = prv_after_literal(d, hi << 4 | lo, range, code, in, end)) != 0) {
            return rc == LITERALS_STOP ? 0 : rc;
        }
    }
}

static int prv_copy(tfa_delta_t *d, uint32_t length)
{
    if (length > d->block_end - d->out_pos) {
        return -TFA_ERR_DELTA_CORRUPT;
    }
    /* offsets and lengths are below 2^31 (prv_init), so a source before 0 wraps to 2^31 or more and fails
     * the unsigned tests as one past the end does (64-bit arithmetic cost the M4 a few instructions a copy) */
    int base = d->rep_kind[0] == KIND_BASE;
    uint32_t rep = (uint32_t)d->rep_value[0];
    uint32_t src = base ? d->out_pos + rep : d->out_pos - rep;
    if (base ? src > d->base_len || length > d->base_len - src : (int32_t)rep <= 0 || rep > d->out_pos) {
        return -TFA_ERR_DELTA_CORRUPT;
    }
    uint32_t from = src + (base ? d->base_addr : d->out_addr);
    /* the output position and the buffer's fill in locals: the byte copies below may alias d */
    uint32_t pos = d->out_pos;
    uint32_t fill = d->wbuf_len;
    while (length > 0) {
        /* Pieces are read straight into the output buffer (the port's memcpy is a byte loop: one copy
         * less per byte). Earlier output still in the buffer is copied from it, a byte at a time (an
         * overlapping copy, distance < length, repeats its bytes as the format says); earlier output
         * is read back from flash only once programmed. Flushes stay whole buffers at 64-byte offsets
         * (issue 17: a flush before each such copy left the port's memcpy unaligned, a byte loop). */
        uint32_t n = TFA_DELTA_WBUF - fill;
        n = n < length ? n : length;
        uint8_t *t = &d->wbuf[fill];
        int rc = 0;
        if (base) {
            rc = tfa_delta_read(d, from, t, n);
        } else {
            uint32_t at = from - d->out_addr; /* an output offset before pos */
            uint32_t first = pos - fill;      /* the output offset of wbuf[0] */
            if (at >= first) {
                const uint8_t *s = &d->wbuf[at - first];
                for (uint32_t i = 0; i < n; i++) {
                    t[i] = s[i];
                }
            } else {
                n = n < first - at ? n : first - at;
                rc = tfa_delta_read(d, from, t, n);
            }
        }
        if (rc < 0) {
            return rc;
        }
        fill += n;
        pos += n;
        from += n;
        length -= n;
        if (fill == TFA_DELTA_WBUF) {
            d->wbuf_len = fill;
            d->out_pos = pos;
            if ((rc = tfa_delta_flush(d)) < 0) {
                return rc;
            }
            fill = 0;
        }
    }
    d->wbuf_len = fill;
    d->out_pos = pos;
    d->prev_kind = 1;
    return 0;
}

/* The coder's state between prv_ops' locals and d, around the calls that decode through d (runs, numbers
 * and literals of versions 1 to 5). The locals read past the end are clamped first (the padding's zeros,
 * read again). */
#define PRV_STORE()                                                                                          \
    do {                                                                                                     \
        in = in < end ? in : end;                                                                            \
        d->range = range;                                                                                    \
        d->code = code;                                                                                      \
        d->in_pos = (uint32_t)(in - d->in);                                                                  \
    } while (0)
#define PRV_LOAD()                                                                                           \
    do {                                                                                                     \
        range = d->range;                                                                                    \
        code = d->code;                                                                                      \
        in = &d->in[d->in_pos];                                                                              \
    } while (0)

/* A number of an op: version 6's inline on the locals (issue 17: a call through d cost a fifth of a small
 * model's instructions), the others' through d (tfa_delta_number). 0, or -TFA_ERR_DELTA_CORRUPT. */
static inline __attribute__((always_inline)) int prv_number(tfa_delta_t *d, uint32_t flags, uint16_t *probs,
                                                            uint32_t *value, uint32_t *range, uint32_t *code,
                                                            const uint8_t **in, const uint8_t *end)
{
    if (flags & FLAG_SYMBOLS) {
        return tfa_delta_number_local(probs, value, range, code, in) < 0 ? -TFA_ERR_DELTA_CORRUPT : 0;
    }
    *in = *in < end ? *in : end;
    d->range = *range;
    d->code = *code;
    d->in_pos = (uint32_t)(*in - d->in);
    int rc = tfa_delta_number(d, probs, value);
    *range = d->range;
    *code = d->code;
    *in = &d->in[d->in_pos];
    return rc;
}

/* prv_decode_buffered's loop: ops while the block goes on and the look-ahead is buffered, with the coder's
 * state in locals from one op to the next (through d it was stored and reloaded at each flag and number).
 * An op reads at most about 70 coded bytes unchecked (flags 2 each, numbers 22), inside the look-ahead
 * while the block arrives and inside the TFA_DELTA_PAD zeros once it is all buffered. */
static int prv_ops(tfa_delta_t *d)
{
    uint32_t range;
    uint32_t code;
    const uint8_t *in;
    const uint8_t *end = &d->in[d->in_len];
    const uint32_t shift = d->checkpoint.move_bits;
    const uint32_t flags = d->checkpoint.has_base;
    int rc = 0;
steps:
    /* a run's steps (one left unfinished by the last call, or one just begun) decode through d: the state
     * moves there once for all of them */
    while (d->w_left > 0 && d->out_pos < d->block_end &&
           (d->block_left == 0 || d->in_len - d->in_pos >= TFA_DELTA_LOOKAHEAD)) {
        if ((rc = tfa_delta_run_step(d)) < 0) {
            return rc;
        }
    }
    PRV_LOAD();
    while (d->out_pos < d->block_end && (d->block_left == 0 || (uint32_t)(end - in) >= TFA_DELTA_LOOKAHEAD)) {
        uint32_t k = d->prev_kind;
        if (!tfa_delta_bit_local(&d->is_match[k], shift, &range, &code, &in)) {
            if (flags & FLAG_SYMBOLS) {
                rc = prv_literals_symbols(d, &range, &code, &in, end);
            } else {
                PRV_STORE();
                rc = prv_literal(d);
                PRV_LOAD();
            }
            if (rc <= 0) {
                if (rc < 0) {
                    return rc;
                }
                break; /* the loop's condition stopped the literals */
            }
            k = 0; /* else the literals ended with is_match 1: a match op */
        }
        uint16_t *lengths = d->rep_len;
        uint32_t least = REP_MIN;
        uint32_t value;
        if (tfa_delta_bit_local(&d->is_rep[k], shift, &range, &code, &in)) {
            /* rep_which, a tree of two bits: node 1, then node 2 or 3 */
            uint32_t which = tfa_delta_bit_local(&d->rep_which[1], shift, &range, &code, &in);
            which = which << 1 | tfa_delta_bit_local(&d->rep_which[2u + which], shift, &range, &code, &in);
            if (which >= REPS) {
                return -TFA_ERR_DELTA_CORRUPT;
            }
            uint8_t kind = d->rep_kind[which];
            int32_t rep = d->rep_value[which];
            for (uint32_t i = which; i > 0; i--) {
                d->rep_kind[i] = d->rep_kind[i - 1];
                d->rep_value[i] = d->rep_value[i - 1];
            }
            d->rep_kind[0] = kind;
            d->rep_value[0] = rep;
        } else if ((flags & FLAG_TENSOR) && tfa_delta_bit_local(&d->is_tensor[k], shift, &range, &code, &in)) {
            PRV_STORE();
            if ((rc = tfa_delta_run_begin(d)) < 0) {
                return rc;
            }
            goto steps;
        } else {
            /* a new copy: its displacement from the base or distance back in the output, then its length */
            uint32_t out = tfa_delta_bit_local(&d->is_out[k], shift, &range, &code, &in);
            if (prv_number(d, flags, out ? d->dist : d->disp, &value, &range, &code, &in, end) < 0) {
                return -TFA_ERR_DELTA_CORRUPT;
            }
            int32_t rep;
            if (out ? value >= (uint32_t)INT32_MAX : tfa_delta_displace(d, value, &rep) < 0) {
                return -TFA_ERR_DELTA_CORRUPT;
            }
            tfa_delta_push_rep(d, (uint8_t)(out ? KIND_OUT : KIND_BASE), out ? (int32_t)(value + 1u) : rep);
            lengths = d->new_len;
            least = NEW_MIN;
        }
        if (prv_number(d, flags, lengths, &value, &range, &code, &in, end) < 0 || value > UINT32_MAX - least) {
            return -TFA_ERR_DELTA_CORRUPT;
        }
        in = in < end ? in : end; /* past the end: the padding's zeros, read again */
        if ((rc = prv_copy(d, value + least)) < 0) {
            return rc;
        }
    }
    PRV_STORE();
    return 0;
}

#undef PRV_STORE
#undef PRV_LOAD

/* ---- stream framing ---- */

static void prv_take_checkpoint(tfa_delta_t *d)
{
    d->checkpoint.in_offset = d->in_offset;
    d->checkpoint.out_offset = d->out_pos;
    d->checkpoint.valid = 1;
}

static int prv_parse_varint(const uint8_t *buf, uint32_t len, uint32_t *pos, uint32_t *value)
{
    uint64_t v = 0;
    for (uint32_t i = 0; i < 5; i++) {
        if (*pos >= len) {
            return 1; /* need more bytes */
        }
        uint8_t byte = buf[(*pos)++];
        v |= (uint64_t)(byte & 0x7Fu) << (7u * i);
        if (!(byte & 0x80u)) {
            if (v > UINT32_MAX) {
                return -TFA_ERR_DELTA_CORRUPT;
            }
            *value = (uint32_t)v;
            return 0;
        }
    }
    return -TFA_ERR_DELTA_CORRUPT;
}

/* Returns 1 while the header is incomplete, 0 once parsed, or an error. */
static int prv_header(tfa_delta_t *d)
{
    const uint8_t *h = d->header;
    if (d->header_len < 6) {
        return 1;
    }
    if (h[0] != 'T' || h[1] != 'D' || h[2] < 1u || h[2] > 6u || (h[3] & ~1u) != 0 || h[4] < 10u || h[4] > 20u ||
        h[5] < 3u || h[5] > 5u) {
        return -TFA_ERR_DELTA_CORRUPT;
    }
    uint32_t pos = 6;
    uint32_t out_size;
    uint32_t base_size;
    int rc = prv_parse_varint(h, d->header_len, &pos, &out_size);
    if (rc != 0) {
        return rc;
    }
    rc = prv_parse_varint(h, d->header_len, &pos, &base_size);
    if (rc != 0) {
        return rc;
    }
    if (out_size != d->out_len || base_size != d->base_len || ((h[3] & 1u) != 0) != (base_size > 0)) {
        return -TFA_ERR_DELTA_CORRUPT;
    }
    d->checkpoint.block_log2 = h[4];
    d->checkpoint.move_bits = h[5];
    d->checkpoint.has_base =
        (uint8_t)((h[3] & 1u) | (h[2] >= 2u ? FLAG_TENSOR : 0u) | (h[2] >= 3u ? FLAG_TABLE : 0u) |
                  (h[2] >= 4u ? FLAG_LAST : 0u) | (h[2] >= 5u ? FLAG_NUMBERS : 0u) |
                  (h[2] == 6u ? FLAG_SYMBOLS : 0u));
    /* bytes fed beyond the header belong to the first block length */
    d->in_offset -= d->header_len - pos;
    d->header_len = (uint8_t)pos;
    return 0;
}

static void prv_start_block_len(tfa_delta_t *d)
{
    d->state = d->out_pos >= d->out_len ? ST_DONE : ST_BLOCK_LEN;
    d->varint_value = 0;
    d->varint_shift = 0;
}

/* The stream past a block's last coded byte reads as zeros: table runs, trees and literals read these
 * unchecked. Written once the block has fully arrived, and again when the unread bytes move (before each
 * decoding step, the port's byte-loop memset cost 3 instructions per output byte of a 2.7 KB model). */
static void prv_pad(tfa_delta_t *d)
{
    memset(&d->in[d->in_len], 0, TFA_DELTA_PAD);
}

static int prv_decode_buffered(tfa_delta_t *d)
{
    if (!d->coder_ready) {
        if (d->in_len < 4 && d->block_left > 0) {
            return 0;
        }
        tfa_delta_coder_start(d);
        d->coder_ready = 1;
    }
    int rc = prv_ops(d);
    if (rc < 0) {
        return rc;
    }
    if (d->out_pos == d->block_end) {
        rc = tfa_delta_flush(d);
        if (rc < 0) {
            return rc;
        }
        if (d->block_left > 0) {
            d->state = ST_BLOCK_TAIL; /* coded bytes the decoder does not need (flush padding) */
        } else {
            prv_take_checkpoint(d);
            prv_start_block_len(d);
        }
        return 0;
    }
    /* keep the unread bytes at the front of the buffer, once half of it is read (not after each chunk:
     * the port's memmove is a byte loop, and under 512 read bytes leave room for more than a chunk) */
    if (d->in_pos < TFA_DELTA_INBUF / 2u) {
        return 0;
    }
    uint32_t unread = d->in_len - d->in_pos;
    memmove(d->in, &d->in[d->in_pos], unread);
    d->in_len = unread;
    d->in_pos = 0;
    if (d->block_left == 0) {
        prv_pad(d); /* the zeros moved with the end */
    }
    return 0;
}

static void prv_begin_block(tfa_delta_t *d, uint32_t coded_len)
{
    uint32_t block = 1u << d->checkpoint.block_log2;
    uint32_t left = d->out_len - d->out_pos;
    prv_reset_block(d);
    d->block_left = coded_len;
    if (coded_len == 0) {
        prv_pad(d);
    }
    d->block_end = d->out_pos + (left < block ? left : block);
    d->state = ST_BLOCK_DATA;
}

static int prv_feed(tfa_delta_t *d, const uint8_t *data, uint32_t len)
{
    uint32_t i = 0;
    while (i < len) {
        switch (d->state) {
        case ST_HEADER: {
            d->header[d->header_len++] = data[i++];
            d->in_offset++;
            int rc = prv_header(d);
            if (rc < 0) {
                return rc;
            }
            if (rc == 0) {
                prv_take_checkpoint(d);
                prv_start_block_len(d);
            } else if (d->header_len == sizeof d->header) {
                return -TFA_ERR_DELTA_CORRUPT;
            }
            break;
        }
        case ST_BLOCK_LEN: {
            uint8_t byte = data[i++];
            d->in_offset++;
            if (d->varint_shift > 28) {
                return -TFA_ERR_DELTA_CORRUPT;
            }
            d->varint_value |= (uint32_t)(byte & 0x7Fu) << d->varint_shift;
            d->varint_shift = (uint8_t)(d->varint_shift + 7u);
            if (!(byte & 0x80u)) {
                prv_begin_block(d, d->varint_value);
                if (d->block_left == 0) {
                    int rc = prv_decode_buffered(d);
                    if (rc < 0) {
                        return rc;
                    }
                }
            }
            break;
        }
        case ST_BLOCK_DATA: {
            uint32_t room = TFA_DELTA_INBUF - d->in_len;
            uint32_t n = len - i;
            n = n < room ? n : room;
            n = n < d->block_left ? n : d->block_left;
            memcpy(&d->in[d->in_len], &data[i], n);
            d->in_len += n;
            d->block_left -= n;
            d->in_offset += n;
            i += n;
            if (d->block_left == 0) {
                prv_pad(d);
            }
            int rc = prv_decode_buffered(d);
            if (rc < 0) {
                return rc;
            }
            break;
        }
        case ST_BLOCK_TAIL: {
            uint32_t n = len - i;
            n = n < d->block_left ? n : d->block_left;
            d->block_left -= n;
            d->in_offset += n;
            i += n;
            if (d->block_left == 0) {
                prv_take_checkpoint(d);
                prv_start_block_len(d);
            }
            break;
        }
        default:
            return -TFA_ERR_DELTA_CORRUPT; /* bytes after the end, or after a failure */
        }
    }
    /* a zero-length tail block can complete without more input */
    if (d->state == ST_BLOCK_DATA && d->block_left == 0 && d->out_pos < d->block_end) {
        return prv_decode_buffered(d);
    }
    return 0;
}

int tfa_delta_feed(tfa_delta_t *d, const uint8_t *data, uint32_t len)
{
    if (d->state == ST_FAILED) {
        return -TFA_ERR_DELTA_CORRUPT;
    }
    int rc = prv_feed(d, data, len);
    if (rc < 0) {
        d->state = ST_FAILED;
        return rc == -TFA_ERR_FLASH_IO || rc == -TFA_ERR_FLASH_NOT_ERASED ? rc : -TFA_ERR_DELTA_CORRUPT;
    }
    return 0;
}

static int prv_init(tfa_delta_t *d, const tfa_flash_t *flash, uint32_t base_addr, uint32_t base_len,
                    uint32_t out_addr, uint32_t out_len)
{
    /* models below 2 GiB: positions and displacements then fit 32-bit arithmetic (prv_copy, literals) */
    if (d == NULL || flash == NULL || out_len == 0 || out_len > INT32_MAX || base_len > INT32_MAX) {
        return -TFA_ERR_DELTA_CORRUPT;
    }
    /* only the fields before the adaptive models, a word at a time: each block start resets the models,
     * the table and the input (prv_reset_block), the rest is written before it is read; clearing all
     * 8 KiB cost 2.3 instructions per output byte of a 2.7 KB model. volatile keeps the compiler from
     * turning this back into a call to the port's memset (a byte loop) */
    _Static_assert(offsetof(tfa_delta_t, is_match) % 4u == 0, "the cleared head is whole words");
    volatile uint32_t *word = (volatile uint32_t *)(void *)d;
    for (uint32_t i = 0; i < offsetof(tfa_delta_t, is_match) / 4u; i++) {
        word[i] = 0;
    }
    d->bc_len = 0;
    d->wbuf_len = 0;
    d->flash = flash;
    d->base_addr = base_addr;
    d->base_len = base_len;
    d->out_addr = out_addr;
    d->out_len = out_len;
    return 0;
}

int tfa_delta_begin(tfa_delta_t *d, const tfa_flash_t *flash, uint32_t base_addr, uint32_t base_len,
                    uint32_t out_addr, uint32_t out_len)
{
    int rc = prv_init(d, flash, base_addr, base_len, out_addr, out_len);
    if (rc == 0) {
        d->state = ST_HEADER;
    }
    return rc;
}

int tfa_delta_resume(tfa_delta_t *d, const tfa_flash_t *flash, uint32_t base_addr, uint32_t base_len,
                     uint32_t out_addr, uint32_t out_len, const tfa_delta_checkpoint_t *cp)
{
    if (cp == NULL || !cp->valid) {
        return tfa_delta_begin(d, flash, base_addr, base_len, out_addr, out_len);
    }
    int rc = prv_init(d, flash, base_addr, base_len, out_addr, out_len);
    if (rc < 0) {
        return rc;
    }
    /* the version bits above bit 0 are 0, 1, 3, 7, 15 or 31 (each version includes the one before) */
    uint32_t versions = (uint32_t)cp->has_base >> 1;
    if (cp->out_offset > out_len || cp->block_log2 < 10u || cp->block_log2 > 20u || cp->move_bits < 3u ||
        cp->move_bits > 5u || versions > 31u || (versions & (versions + 1u)) != 0 ||
        ((cp->has_base & 1u) != 0) != (base_len > 0)) {
        return -TFA_ERR_DELTA_CORRUPT;
    }
    d->checkpoint = *cp;
    d->in_offset = cp->in_offset;
    d->out_pos = cp->out_offset;
    prv_start_block_len(d);
    return 0;
}

const tfa_delta_checkpoint_t *tfa_delta_checkpoint(const tfa_delta_t *d)
{
    return &d->checkpoint;
}

int tfa_delta_finish(tfa_delta_t *d)
{
    if (d->state != ST_DONE) {
        d->state = ST_FAILED;
        return -TFA_ERR_DELTA_CORRUPT;
    }
    return tfa_delta_flush(d);
}
