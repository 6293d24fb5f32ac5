/* Internals shared by the delta decoder's files (not an API): delta.c (stream framing and LZ ops),
 * delta_coder.c (range decoder, output through the flash contract), delta_runs.c (format 2 runs). */
#ifndef TFA_DELTA_INTERNAL_H
#define TFA_DELTA_INTERNAL_H

#include <stdint.h>

#include "tfa/delta.h"

#define PROB_BITS 11u
#define PROB_INIT 1024u
#define TOP (1u << 24)
#define REP_MIN 2u
#define NEW_MIN 4u
#define REPS 3u
#define KIND_BASE 0u
#define KIND_OUT 1u
#define NUMBER_TREE_BITS 6u
#define NUMBER_LOW_BITS 3u
#define COPY_PIECE 32u
#define FLAG_TENSOR 2u /* checkpoint has_base bit 1: format version 2 or later */
#define FLAG_TABLE 4u  /* checkpoint has_base bit 2: format version 3 or later */
#define FLAG_LAST 8u   /* checkpoint has_base bit 3: format version 4 or 5 */
#define FLAG_NUMBERS 16u /* checkpoint has_base bit 4: format version 5 (ladder numbers) */
#define FLAG_SYMBOLS 32u /* checkpoint has_base bit 5: format version 6 (adaptive frequency symbols) */
#define LADDER_ESCAPES 48u /* version 5 numbers: escape bits of the bit-count classes 0-3, 4-7, 8-15, 16-32 */
#define LADDER_LOW_MAX 4u  /* bit counts up to this keep the adaptive tree of their low bits */
#define UNIFORM_MAX 16u    /* bits per equal-chance step */
#define TABLE_BITS 12u /* table run frequencies sum to 2^12 */
#define TABLE_EXACT_COUNT_BITS 8u  /* entry count - 1 of an exact table (a symbol per zigzag value) */
#define TABLE_BUCKET_COUNT_BITS 5u /* of a bucketed table */
#define TABLE_EXACT_BELOW 16u      /* bucketed: symbols below this are zigzag values themselves */
/* version 6 (PROTOCOL 5.10): counts of adaptive frequency models, in the room of the binary models they
 * replace. A literal's high nibble in the context of the match byte's (or SYM_NO_MATCH), its low nibble in
 * the context of the high one: literal[][] holds the 17 x 16 high counts, the 16 x 16 low ones, then their
 * 33 totals. A number's bit count: counts 0..32 of its table, the total at SYM_NUMBER_TOTAL. */
#define SYM_LIMIT 8192u        /* counts halve (rounding up) once their total passes this */
#define SYM_NO_MATCH 16u
#define SYM_HIGH_MODELS 17u    /* high nibble: one model per match-byte high nibble, and SYM_NO_MATCH */
#define SYM_LITERAL_MODELS (SYM_HIGH_MODELS + 16u) /* and the low nibble's, one per high nibble */
#define SYM_LOW_COUNTS (SYM_HIGH_MODELS * 16u)
#define SYM_TOTALS (SYM_LITERAL_MODELS * 16u)
#define SYM_LITERAL_INC 2u
#define SYM_NUMBER_SYMBOLS 33u
#define SYM_NUMBER_TOTAL 33u
#define SYM_NUMBER_INC 8u
#define EXP_TREE_BITS 4u
#define KIND_BITS 3u
enum {
    RUN_PLAIN = 0,
    RUN_DIFF,
    RUN_WORDS,
    RUN_WORDS_DELTA,
    RUN_PRODUCT,
    RUN_TABLE_PLAIN,
    RUN_TABLE_DIFF,
    RUN_TABLE_LAST /* version 4: a literal run, with the block's last table */
};

/* One adaptive bit on the coder's state in the caller's locals (literals, numbers): through d the state
 * is stored and reloaded at each bit. Unchecked input: a bit reads at most 2 coded bytes (the smallest
 * probability is 7/2048), so the caller's step stays inside the look-ahead or the TFA_DELTA_PAD zeros;
 * the caller clamps in_pos to in_len after it (past the end: the padding's zeros, read again). */
static inline __attribute__((always_inline)) uint32_t tfa_delta_bit_local(uint16_t *prob, uint32_t shift,
                                                                          uint32_t *range, uint32_t *code,
                                                                          const uint8_t **in)
{
    uint32_t p = *prob;
    uint32_t bound = (*range >> PROB_BITS) * p;
    uint32_t bit;
    if (*code < bound) {
        *range = bound;
        *prob = (uint16_t)(p + (((1u << PROB_BITS) - p) >> shift));
        bit = 0;
    } else {
        *code -= bound;
        *range -= bound;
        *prob = (uint16_t)(p - (p >> shift));
        bit = 1;
    }
    while (*range < TOP) {
        *range <<= 8;
        *code = (*code << 8) | *(*in)++;
    }
    return bit;
}

uint32_t tfa_delta_sym_halve(uint16_t *counts, uint32_t n);

/* One symbol of an adaptive frequency model (version 6, PROTOCOL 5.10) on the coder's state in the
 * caller's locals: r = range / total, q = code / r names the symbol whose counts' running sum passes q,
 * searched from symbol 0 (the commonest values are small); then the symbol gains `inc`. Returns the symbol,
 * or UINT32_MAX when q >= total (a corrupt stream). After it range >= (2^24 / SYM_LIMIT), so it reads at
 * most 2 coded bytes, unchecked as a bit does. */
static inline __attribute__((always_inline)) uint32_t tfa_delta_sym_local(uint16_t *counts, uint16_t *total,
                                                                          uint32_t n, uint32_t inc,
                                                                          uint32_t both_ends,
                                                                          uint32_t *range, uint32_t *code,
                                                                          const uint8_t **in)
{
    uint32_t t = *total;
    uint32_t r = *range / t;
    uint32_t q = *code / r;
    if (q >= t) {
        return UINT32_MAX;
    }
    /* subtract counts from q until it goes negative: that count's symbol holds q (three instructions a
     * step: load, subtract, branch; q < total <= SYM_LIMIT + inc, so the sign is a safe test) */
    const uint16_t *at = counts;
    int32_t left;
    uint32_t c;
    uint32_t s;
    if (both_ends && q >= t >> 1) {
        /* from the last symbol down while the counts above q are not spent */
        at += n;
        left = (int32_t)(t - 1u - q);
        do {
            c = *--at;
            left -= (int32_t)c;
        } while (left >= 0);
        s = (uint32_t)(at - counts);
        *code -= r * (q + 1u + (uint32_t)left);
    } else {
        left = (int32_t)q;
        do {
            c = *at++;
            left -= (int32_t)c;
        } while (left >= 0);
        s = (uint32_t)(at - counts) - 1u;
        *code -= r * (q - (uint32_t)left - c);
    }
    *range = r * c;
    while (*range < TOP) {
        *range <<= 8;
        *code = (*code << 8) | *(*in)++;
    }
    counts[s] = (uint16_t)(c + inc);
    t += inc;
    *total = (uint16_t)(t > SYM_LIMIT ? tfa_delta_sym_halve(counts, n) : t);
    return s;
}

/* The bits below a number's top one at equal chances, in steps of at most UNIFORM_MAX bits, the high ones
 * first: q = code / (range >> w) as a table run's extra bits (PROTOCOL 5.6; versions 5 and 6). Sets the
 * number and returns 0, or -1 when a step's quotient is out of range. */
static inline __attribute__((always_inline)) int tfa_delta_low_bits_local(uint32_t bits, uint32_t *value,
                                                                          uint32_t *range, uint32_t *code,
                                                                          const uint8_t **in)
{
    uint32_t v = 1;
    for (uint32_t left = bits - 1u; left > 0;) {
        uint32_t w = left > UNIFORM_MAX ? left - UNIFORM_MAX : left;
        uint32_t r = *range >> w;
        uint32_t q = *code / r;
        if (q >> w) {
            return -1;
        }
        *code -= r * q;
        *range = r;
        while (*range < TOP) {
            *range <<= 8;
            *code = (*code << 8) | *(*in)++;
        }
        v = (v << w) | q;
        left -= w;
    }
    *value = v;
    return 0;
}

/* A version 6 number (PROTOCOL 5.10) on the coder's state in the caller's locals: its bit count one
 * adaptive symbol, the bits below the top one at equal chances. Sets the number and returns 0, or -1 on a
 * corrupt stream. Reads at most 8 coded bytes, unchecked as a bit does. */
static inline __attribute__((always_inline)) int tfa_delta_number_local(uint16_t *probs, uint32_t *value,
                                                                        uint32_t *range, uint32_t *code,
                                                                        const uint8_t **in)
{
    uint32_t bits = tfa_delta_sym_local(probs, &probs[SYM_NUMBER_TOTAL], SYM_NUMBER_SYMBOLS, SYM_NUMBER_INC, 0,
                                        range, code, in);
    if (bits == UINT32_MAX) {
        return -1;
    }
    *value = bits;
    return bits > 1u ? tfa_delta_low_bits_local(bits, value, range, code, in) : 0;
}

/* `count` (even) adaptive models from `models` (word-aligned) set to `value` (delta.c) */
void tfa_delta_fill(uint16_t *models, uint32_t count, uint32_t value);
/* range decoder (delta_coder.c): bits with an adaptive probability, direct bits, trees, numbers */
void tfa_delta_coder_start(tfa_delta_t *d);
uint32_t tfa_delta_direct(tfa_delta_t *d, uint32_t count);
/* a tree of `bits` adaptive bits; probs[n - 1] is node n's probability (node 1 first) */
uint32_t tfa_delta_tree_rate(tfa_delta_t *d, uint16_t *probs, uint32_t bits, uint32_t shift);
static inline uint32_t tfa_delta_tree(tfa_delta_t *d, uint16_t *probs, uint32_t bits)
{
    return tfa_delta_tree_rate(d, probs, bits, d->checkpoint.move_bits);
}
/* one adaptive bit through d (PROTOCOL 5.2): the weight runs' signs and mantissas; the op loop and the
 * literal, number and tree loops decode theirs on locals (tfa_delta_bit_local) */
uint32_t tfa_delta_bit_rate(tfa_delta_t *d, uint16_t *prob, uint32_t shift);
int tfa_delta_number(tfa_delta_t *d, uint16_t *probs, uint32_t *out);
/* output and flash (delta_coder.c) */
int tfa_delta_flush(tfa_delta_t *d);
int tfa_delta_emit(tfa_delta_t *d, const uint8_t *bytes, uint32_t len);
int tfa_delta_read(const tfa_delta_t *d, uint32_t addr, uint8_t *dst, uint32_t len);
/* the displacement of the latest base rep (0 if none): inline, each literal asks (a call was 13 of a
 * literal's instructions) */
static inline int32_t tfa_delta_align(const tfa_delta_t *d)
{
    for (uint32_t i = 0; i < REPS; i++) {
        if (d->rep_kind[i] == KIND_BASE) {
            return d->rep_value[i];
        }
    }
    return 0;
}
void tfa_delta_push_rep(tfa_delta_t *d, uint8_t kind, int32_t value);
/* A new base displacement: the latest base rep's plus the zigzag change `z` (even: non-negative). 0, or -1
 * when it leaves int32. */
static inline int tfa_delta_displace(const tfa_delta_t *d, uint32_t z, int32_t *disp)
{
    int32_t change = (int32_t)((z >> 1) ^ (0u - (z & 1u)));
    return __builtin_add_overflow(tfa_delta_align(d), change, disp) ? -1 : 0;
}
/* format 2 and 3 runs (delta_runs.c): the header after is_tensor = 1, then per step one value, one word,
 * one table entry or up to COPY_PIECE table symbols */
int tfa_delta_run_begin(tfa_delta_t *d);
int tfa_delta_run_step(tfa_delta_t *d);

#endif
