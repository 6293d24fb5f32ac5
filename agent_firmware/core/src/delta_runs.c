/* Runs of delta format version 2 (PROTOCOL 5.5; tinyfleet/signing/tensor_coder.py): int8 weights coded by
 * magnitude class, sign and mantissa, and 32-bit words (biases, scales) as numbers added to a prediction. */
#include <string.h>

#include "delta_internal.h"
#include "tfa/errors.h"

/* One value of the current weight run: magnitude class (bit length of |v|) through a tree, sign, the bits
 * below the top one through the class's tree; weights adapt one step slower than the rest (see
 * tinyfleet/signing/tensor_coder.py). A diff run adds the base byte at the run's displacement. */
static int prv_weight(tfa_delta_t *d)
{
    uint32_t t = d->w_kind;
    uint32_t shift = d->checkpoint.move_bits + 1u;
    uint32_t node = 1;
    for (uint32_t i = 0; i < EXP_TREE_BITS; i++) {
        node = (node << 1) | tfa_delta_bit_rate(d, &d->w_exp[t][node], shift);
    }
    uint32_t cls = node - (1u << EXP_TREE_BITS);
    uint32_t mag = 0;
    uint32_t negative = 0;
    if (cls > 8u) {
        return -TFA_ERR_DELTA_CORRUPT;
    }
    if (cls > 0u) {
        negative = tfa_delta_bit_rate(d, &d->w_sign[t][cls], shift);
        mag = 1;
        for (uint32_t i = 1; i < cls; i++) {
            /* the trees of classes 2..8 packed in one table: class c's starts at 2^(c-1) - c */
            uint32_t index = (1u << (cls - 1u)) + mag - cls - 1u;
            mag = (mag << 1) | tfa_delta_bit_rate(d, &d->w_mant[t][index], shift);
        }
    }
    uint8_t byte = (uint8_t)((negative ? 0u - mag : mag) & 0xFFu);
    if (t == RUN_DIFF) {
        uint8_t pred;
        int rc = tfa_delta_read(d, d->base_addr + d->w_src, &pred, 1);
        if (rc < 0) {
            return rc;
        }
        byte = (uint8_t)(byte + pred);
        d->w_src++;
    }
    d->w_left--;
    return tfa_delta_emit(d, &byte, 1);
}

static int prv_normal(uint32_t bits)
{
    uint32_t e = (bits >> 23) & 0xFFu;
    return e > 0u && e < 255u;
}

/* float32 a * f rounded once (IEEE); 0 unless both and the result are normal numbers (tensor_coder.product). */
static uint32_t prv_product(uint32_t a, uint32_t f)
{
    float x;
    float y;
    uint32_t bits;
    if (!prv_normal(a) || !prv_normal(f)) {
        return 0;
    }
    memcpy(&x, &a, 4);
    memcpy(&y, &f, 4);
    float r = x * y;
    memcpy(&bits, &r, 4);
    return prv_normal(bits) ? bits : 0u;
}

/* One word of a word run: a zigzag number added to the prediction (0, the previous word, or the product
 * of the float32 w_dist bytes back in the output and the run's factor), written little-endian. */
static int prv_word(tfa_delta_t *d)
{
    uint32_t z;
    uint32_t pred = 0;
    if (tfa_delta_number(d, d->w_word, &z) < 0) {
        return -TFA_ERR_DELTA_CORRUPT;
    }
    if (d->w_kind == RUN_WORDS_DELTA) {
        pred = d->w_prev;
    } else if (d->w_kind == RUN_PRODUCT) {
        uint8_t a[4];
        uint32_t at = d->out_pos - d->w_dist;
        int rc = at + 4u > d->out_pos - d->wbuf_len ? tfa_delta_flush(d) : 0; /* read back what is written */
        if (rc == 0) {
            rc = tfa_delta_read(d, d->out_addr + at, a, 4);
        }
        if (rc < 0) {
            return rc;
        }
        pred = prv_product((uint32_t)a[0] | (uint32_t)a[1] << 8 | (uint32_t)a[2] << 16 | (uint32_t)a[3] << 24,
                           d->w_factor);
    }
    uint32_t word = ((z >> 1) ^ (0u - (z & 1u))) + pred;
    uint8_t bytes[4] = {(uint8_t)word, (uint8_t)(word >> 8), (uint8_t)(word >> 16), (uint8_t)(word >> 24)};
    d->w_prev = word;
    d->w_left--;
    return tfa_delta_emit(d, bytes, 4);
}

/* The header of a run (after is_match 1, is_rep 0, is_tensor 1); its values follow one per step. */
int tfa_delta_run_begin(tfa_delta_t *d)
{
    uint32_t value;
    uint32_t length;
    uint32_t node = 1;
    for (uint32_t i = 0; i < KIND_BITS; i++) {
        node = (node << 1) | tfa_delta_bit(d, &d->w_kind_probs[node]);
    }
    d->w_kind = (uint8_t)(node - (1u << KIND_BITS));
    if (d->w_kind > RUN_PRODUCT) {
        return -TFA_ERR_DELTA_CORRUPT;
    }
    if (d->w_kind == RUN_PRODUCT) {
        if (tfa_delta_number(d, d->dist, &value) < 0 || value >= (uint32_t)INT32_MAX) {
            return -TFA_ERR_DELTA_CORRUPT;
        }
        d->w_dist = value + 1u;
        d->w_factor = tfa_delta_direct(d, 32);
    }
    if (d->w_kind == RUN_DIFF) {
        int rc = tfa_delta_number(d, d->disp, &value);
        if (rc < 0) {
            return rc;
        }
        int64_t change = (value & 1u) ? -(int64_t)((value >> 1) + 1u) : (int64_t)(value >> 1);
        int64_t disp = (int64_t)tfa_delta_align(d) + change;
        if (disp < INT32_MIN || disp > INT32_MAX) {
            return -TFA_ERR_DELTA_CORRUPT;
        }
        tfa_delta_push_rep(d, KIND_BASE, (int32_t)disp);
    }
    uint32_t room = d->block_end - d->out_pos;
    if (d->w_kind >= RUN_WORDS) {
        room /= 4u;
    }
    if (tfa_delta_number(d, d->new_len, &length) < 0 || length >= room) {
        return -TFA_ERR_DELTA_CORRUPT;
    }
    length++;
    d->w_prev = 0;
    if (d->w_kind == RUN_PRODUCT && (d->w_dist < 4u * length || d->w_dist > d->out_pos)) {
        return -TFA_ERR_DELTA_CORRUPT; /* the factor vector must be written already */
    }
    if (d->w_kind == RUN_DIFF) {
        int64_t src = (int64_t)d->out_pos + d->rep_value[0];
        if (src < 0 || src + (int64_t)length > (int64_t)d->base_len) {
            return -TFA_ERR_DELTA_CORRUPT;
        }
        d->w_src = (uint32_t)src;
    }
    d->w_left = length;
    d->prev_kind = 1;
    return 0;
}

int tfa_delta_run_step(tfa_delta_t *d)
{
    return d->w_kind >= RUN_WORDS ? prv_word(d) : prv_weight(d);
}
