/* Runs of delta format versions 2 to 4 (PROTOCOL 5.5-5.7; tinyfleet/signing/tensor_coder.py and
 * table_coder.py): int8 weights coded by magnitude class, sign and mantissa, 32-bit words (biases, scales)
 * as numbers added to a prediction, (version 3) int8 weights one symbol each with a static table, and
 * (version 4) literal runs: bytes with the block's last table. */
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
    uint32_t cls = tfa_delta_tree_rate(d, &d->w_exp[t][1], EXP_TREE_BITS, shift);
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
    uint32_t fill = d->wbuf_len;
    if (fill > TFA_DELTA_WBUF - 4u) {
        return tfa_delta_emit(d, bytes, 4); /* across a flush */
    }
    /* straight into the buffer (issue 17: tfa_delta_emit's byte loop cost 60 Cortex-M4 instructions a word) */
    uint8_t *at = &d->wbuf[fill];
    at[0] = bytes[0];
    at[1] = bytes[1];
    at[2] = bytes[2];
    at[3] = bytes[3];
    d->wbuf_len = fill + 4u;
    d->out_pos += 4u;
    return fill + 4u == TFA_DELTA_WBUF ? tfa_delta_flush(d) : 0;
}

/* The header of a run (after is_match 1, is_rep 0, is_tensor 1); its values follow one per step. */
int tfa_delta_run_begin(tfa_delta_t *d)
{
    uint32_t value;
    uint32_t length;
    d->w_kind = (uint8_t)tfa_delta_tree(d, &d->w_kind_probs[1], KIND_BITS);
    uint32_t flags = d->checkpoint.has_base;
    uint32_t last = (flags & FLAG_LAST) ? RUN_TABLE_LAST : (flags & FLAG_TABLE) ? RUN_TABLE_DIFF : RUN_PRODUCT;
    if (d->w_kind > last) {
        return -TFA_ERR_DELTA_CORRUPT;
    }
    uint32_t reuse = d->w_kind == RUN_TABLE_LAST;
    if (reuse) {
        /* version 4: plain table bytes with the block's last table (complete tables end at 4096) */
        if (d->t_cum[TFA_DELTA_TABLE_SYMBOLS] != (1u << TABLE_BITS)) {
            return -TFA_ERR_DELTA_CORRUPT;
        }
        d->w_kind = RUN_TABLE_PLAIN;
    }
    if (d->w_kind <= RUN_DIFF && !d->w_ready) {
        /* the block's first weight run: its models (prv_reset_block leaves them to it) */
        tfa_delta_fill(d->w_exp[0], 64u + 2u * TFA_DELTA_MANT_PROBS, PROB_INIT);
        d->w_ready = 1;
    }
    uint32_t diff = d->w_kind == RUN_DIFF || d->w_kind == RUN_TABLE_DIFF;
    uint32_t words = d->w_kind >= RUN_WORDS && d->w_kind <= RUN_PRODUCT;
    if (d->w_kind == RUN_PRODUCT) {
        if (tfa_delta_number(d, d->dist, &value) < 0 || value >= (uint32_t)INT32_MAX) {
            return -TFA_ERR_DELTA_CORRUPT;
        }
        d->w_dist = value + 1u;
        d->w_factor = tfa_delta_direct(d, 32);
    }
    if (diff) {
        int rc = tfa_delta_number(d, d->disp, &value);
        if (rc < 0) {
            return rc;
        }
        int32_t disp;
        if (tfa_delta_displace(d, value, &disp) < 0) {
            return -TFA_ERR_DELTA_CORRUPT;
        }
        tfa_delta_push_rep(d, KIND_BASE, disp);
    }
    uint32_t room = d->block_end - d->out_pos;
    if (words) {
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
    if (diff) {
        uint32_t src = d->out_pos + (uint32_t)d->rep_value[0]; /* before 0: wraps past base_len (prv_init) */
        if (src > d->base_len || length > d->base_len - src) {
            return -TFA_ERR_DELTA_CORRUPT;
        }
        d->w_src = src;
    }
    if (d->w_kind >= RUN_TABLE_PLAIN && !reuse) {
        /* exact or bucketed, the entry count; the entries are read one per step (a table can need more
         * coded bytes than the look-ahead) */
        d->t_bucketed = (uint8_t)tfa_delta_direct(d, 1);
        uint32_t count_bits = d->t_bucketed ? TABLE_BUCKET_COUNT_BITS : TABLE_EXACT_COUNT_BITS;
        d->t_left = (uint16_t)(tfa_delta_direct(d, count_bits) + 1u);
        d->t_index = 0;
        d->t_prev = 0;
        d->t_cum[0] = 0;
    }
    d->w_left = length;
    d->prev_kind = 1;
    return 0;
}

/* One entry of a table run's frequency table: the difference from the previous entry as a zigzag number.
 * After the last: the sum must be 4096; symbols past the table get frequency 0; then the look-up of the
 * first symbol each 16-wide slice of 0..4095 can hold. */
static int prv_table_entry(tfa_delta_t *d)
{
    uint32_t z;
    if (tfa_delta_number(d, d->w_word, &z) < 0) {
        return -TFA_ERR_DELTA_CORRUPT;
    }
    /* frequencies and their running sum stay in 0..4096, so a change beyond +-4096 is corrupt already and
     * the rest fits in 32-bit arithmetic */
    if (z > 2u * (1u << TABLE_BITS)) {
        return -TFA_ERR_DELTA_CORRUPT;
    }
    int32_t f = (int32_t)d->t_prev + ((z & 1u) ? -(int32_t)(z >> 1) - 1 : (int32_t)(z >> 1));
    uint32_t at = d->t_index;
    uint32_t sum = d->t_cum[at];
    if (f < 0 || sum + (uint32_t)f > (1u << TABLE_BITS)) {
        return -TFA_ERR_DELTA_CORRUPT;
    }
    d->t_cum[at + 1u] = (uint16_t)(sum + (uint32_t)f);
    d->t_prev = (uint16_t)f;
    d->t_index = (uint16_t)(at + 1u);
    d->t_left--;
    if (d->t_left > 0) {
        return 0;
    }
    if (d->t_cum[at + 1u] != (1u << TABLE_BITS)) {
        return -TFA_ERR_DELTA_CORRUPT;
    }
    for (uint32_t s = at + 2u; s <= TFA_DELTA_TABLE_SYMBOLS; s++) {
        d->t_cum[s] = (uint16_t)(1u << TABLE_BITS);
    }
    uint32_t s = 0;
    for (uint32_t j = 0; j < TFA_DELTA_TABLE_SYMBOLS; j++) {
        while (d->t_cum[s + 1u] <= (j << (TABLE_BITS - 8u))) {
            s++;
        }
        d->t_lut[j] = (uint8_t)s;
    }
    return 0;
}

/* Up to COPY_PIECE values of a table run (PROTOCOL 5.6): q = code / (range >> 12) names the symbol s with
 * t_cum[s] <= q < t_cum[s + 1]; in a bucketed table a symbol s >= 16 stands for the zigzag values from
 * (4 + (s - 16) % 4) << e on, e = (s - 16) / 4 + 2, and e more bits at equal chances pick one (q = code /
 * (range >> e)). A value consumes at most 3 coded bytes, so a piece stays inside the look-ahead the caller
 * guarantees while the block is arriving, and inside TFA_DELTA_PAD zeros after its end once it is all
 * buffered: the bytes are read without a bounds check. Zigzag value k is the int8 unzigzag(k); a diff run
 * adds the base byte. */
_Static_assert(3u * COPY_PIECE <= TFA_DELTA_PAD && 3u * COPY_PIECE <= TFA_DELTA_LOOKAHEAD,
               "a piece of table values must fit in the padding and the look-ahead");

static int prv_table_symbols(tfa_delta_t *d)
{
    /* straight into the output buffer (no copy): as many as fit, at most COPY_PIECE */
    uint8_t *piece = &d->wbuf[d->wbuf_len];
    uint32_t n = TFA_DELTA_WBUF - d->wbuf_len;
    n = n < COPY_PIECE ? n : COPY_PIECE;
    n = d->w_left < n ? d->w_left : n;
    /* everything the loop touches in locals: stores to the uint8_t piece may alias any object, so fields
     * read through d would be reloaded after each one */
    uint32_t range = d->range;
    uint32_t code = d->code;
    const uint8_t *in = &d->in[d->in_pos];
    const uint16_t *cum = d->t_cum;
    const uint8_t *lut = d->t_lut;
    const uint32_t exact_below = d->t_bucketed ? TABLE_EXACT_BELOW : TFA_DELTA_TABLE_SYMBOLS;
    for (uint8_t *at = piece; at < piece + n; at++) {
        uint32_t r = range >> TABLE_BITS;
        uint32_t q = code / r;
        if (q >> TABLE_BITS) {
            return -TFA_ERR_DELTA_CORRUPT;
        }
        uint32_t s = lut[q >> (TABLE_BITS - 8u)];
        uint32_t hi = cum[s + 1u];
        while (hi <= q) {
            s++;
            hi = cum[s + 1u];
        }
        uint32_t lo = cum[s];
        code -= r * lo;
        range = r * (hi - lo);
        while (range < TOP) {
            range <<= 8;
            code = (code << 8) | *in++;
        }
        if (s >= exact_below) {
            uint32_t extra = ((s - TABLE_EXACT_BELOW) >> 2) + 2u;
            r = range >> extra;
            q = code / r;
            if (q >> extra) {
                return -TFA_ERR_DELTA_CORRUPT;
            }
            code -= r * q;
            range = r;
            if (range < TOP) {
                range <<= 8;
                code = (code << 8) | *in++;
            }
            s = ((4u + ((s - TABLE_EXACT_BELOW) & 3u)) << extra) + q;
        }
        *at = (uint8_t)((s >> 1) ^ (0u - (s & 1u)));
    }
    d->range = range;
    d->code = code;
    uint32_t in_pos = (uint32_t)(in - d->in);
    d->in_pos = in_pos < d->in_len ? in_pos : d->in_len; /* past the end: the padding's zeros, read again */
    if (d->w_kind == RUN_TABLE_DIFF) {
        uint8_t pred[COPY_PIECE];
        int rc = tfa_delta_read(d, d->base_addr + d->w_src, pred, n);
        if (rc < 0) {
            return rc;
        }
        for (uint32_t i = 0; i < n; i++) {
            piece[i] = (uint8_t)(piece[i] + pred[i]);
        }
        d->w_src += n;
    }
    d->w_left -= n;
    d->wbuf_len += n;
    d->out_pos += n;
    return d->wbuf_len == TFA_DELTA_WBUF ? tfa_delta_flush(d) : 0;
}

int tfa_delta_run_step(tfa_delta_t *d)
{
    if (d->w_kind >= RUN_TABLE_PLAIN) {
        return d->t_left > 0 ? prv_table_entry(d) : prv_table_symbols(d);
    }
    return d->w_kind >= RUN_WORDS ? prv_word(d) : prv_weight(d);
}
