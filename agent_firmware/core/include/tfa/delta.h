/* Streaming decoder of the tinyfleet delta format (docs/PROTOCOL.md section 5).
 *
 * It rebuilds a model in the target slot from the payload chunks as they arrive, reading the base model
 * from the active slot and earlier output from the target slot through the flash contract, so it keeps
 * no RAM window: all its state is the caller-owned tfa_delta_t (about 7.8 KiB). A stream is cut into
 * independent blocks; at each block boundary the decoder offers a checkpoint that the runtime persists,
 * and after a reboot decoding resumes there (the block is decoded again and its bytes re-programmed with
 * the same values, which NOR rules allow). The final SHA-256 of the model, checked by the runtime, decides.
 */
#ifndef TFA_DELTA_H
#define TFA_DELTA_H

#include <stdint.h>

#include "tfa/flash.h"

#define TFA_DELTA_INBUF 1024u   /* coded bytes buffered; more than TFA_DELTA_LOOKAHEAD (any chunk size works) */
#define TFA_DELTA_LOOKAHEAD 128u /* more than the coded bytes one op can consume */
#define TFA_DELTA_WBUF 64u      /* output bytes gathered before one flash program */
#define TFA_DELTA_PAD 96u       /* zeros after a complete block's last coded byte: table runs read unchecked */
#define TFA_DELTA_NUMBER_PROBS (64u + 33u * 8u)
#define TFA_DELTA_MANT_PROBS 256u /* mantissa trees of magnitude classes 2..8 (247 used) */
#define TFA_DELTA_TABLE_SYMBOLS 256u /* format version 3 table runs: one symbol per byte */
#define TFA_DELTA_BCACHE 16u   /* base bytes read at once for literals' match bytes */

/* Where decoding can restart: a block boundary. Persist it as is (12 bytes). */
typedef struct tfa_delta_checkpoint {
    uint32_t in_offset;  /* payload bytes consumed up to this boundary */
    uint32_t out_offset; /* model bytes written up to this boundary */
    uint8_t block_log2;
    uint8_t move_bits;
    uint8_t has_base;    /* bit 0: the stream has a base; bit 1: format version 2 or later (weight runs);
                          * bit 2: version 3 or later (table runs); bit 3: version 4 or later (runs reusing a
                          * table); bit 4: version 5 or later (ladder numbers); bit 5: version 6
                          * (adaptive frequency literals and numbers) */
    uint8_t valid;       /* 0 until the stream header has been read */
} tfa_delta_checkpoint_t;

typedef struct tfa_delta {
    /* where to read and write */
    const tfa_flash_t *flash;
    uint32_t base_addr, base_len; /* base model (active slot); base_len 0 for a compressed full model */
    uint32_t out_addr, out_len;   /* target model region and the model size the manifest promises */
    /* stream position */
    uint8_t state;
    uint8_t header_len;
    uint8_t header[18];
    uint32_t in_offset;           /* payload bytes accepted so far */
    uint32_t varint_value;
    uint8_t varint_shift;
    tfa_delta_checkpoint_t checkpoint;
    /* current block */
    uint32_t block_left;          /* coded bytes of the block not yet received */
    uint32_t block_end;           /* output offset where the block ends */
    uint32_t out_pos;
    uint8_t coder_ready;
    uint8_t prev_kind;
    uint8_t rep_kind[3];
    uint8_t w_ready;              /* 1 once the block's weight models (w_exp, w_sign, w_mant) are reset */
    int32_t rep_value[3];
    /* range decoder */
    uint32_t range, code;
    /* adaptive models (11-bit probabilities) */
    uint16_t is_match[2], is_rep[2], rep_which[4], is_out[2];
    uint16_t literal[3][256];
    uint16_t rep_len[TFA_DELTA_NUMBER_PROBS], new_len[TFA_DELTA_NUMBER_PROBS];
    uint16_t disp[TFA_DELTA_NUMBER_PROBS], dist[TFA_DELTA_NUMBER_PROBS];
    /* format version 2: runs of int8 weights (table set 0 plain values, 1 differences from the base) and
     * of 32-bit words (int32 biases, float32 scales) */
    uint16_t is_tensor[2], w_kind_probs[8];
    uint16_t w_exp[2][16], w_sign[2][16], w_mant[2][TFA_DELTA_MANT_PROBS];
    uint16_t w_word[TFA_DELTA_NUMBER_PROBS];
    uint32_t w_left;              /* values (weights or words) of the current run still to decode */
    uint32_t w_src;               /* diff runs: base offset of the next value's prediction */
    uint32_t w_dist;              /* product runs: output distance of the factor vector */
    uint32_t w_factor;            /* product runs: the float32 factor's bits */
    uint32_t w_prev;              /* word runs: the previous word */
    uint8_t w_kind;
    /* format version 3 table runs: the run's static table, cumulative (t_cum[s] .. t_cum[s + 1] is symbol
     * s, out of 4096), and for each 16-wide slice of 0..4095 the first symbol it can hold */
    uint16_t t_cum[TFA_DELTA_TABLE_SYMBOLS + 1u];
    uint8_t t_lut[TFA_DELTA_TABLE_SYMBOLS];
    uint16_t t_left;              /* table entries still to read (the run's symbols follow) */
    uint16_t t_index;             /* entries read */
    uint16_t t_prev;              /* the previous entry's frequency */
    uint8_t t_bucketed;           /* 1: 32 buckets, symbols from 16 on carry extra bits at equal chances */
    /* the base bytes around the latest literal's match byte (TFA_DELTA_BCACHE from bc_at; bc_len 0:
     * none yet): a literal's match byte through the flash contract cost about 40 Cortex-M4 instructions */
    uint32_t bc_at, bc_len;
    uint8_t bcache[TFA_DELTA_BCACHE];
    /* buffers */
    uint32_t in_len, in_pos;
    uint8_t in[TFA_DELTA_INBUF + TFA_DELTA_PAD]; /* data up to TFA_DELTA_INBUF, then room for the zeros */
    uint32_t wbuf_len;
    uint8_t wbuf[TFA_DELTA_WBUF];
} tfa_delta_t;

/* Start decoding a stream from its first byte. The model and the base are below 2 GiB (out_len 1..2^31 - 1,
 * base_len 0..2^31 - 1; else -TFA_ERR_DELTA_CORRUPT). Returns 0 or -TFA_ERR_x. */
int tfa_delta_begin(tfa_delta_t *d, const tfa_flash_t *flash, uint32_t base_addr, uint32_t base_len,
                    uint32_t out_addr, uint32_t out_len);
/* Restart at a checkpoint taken earlier (after a reboot): feed the payload from cp->in_offset on. */
int tfa_delta_resume(tfa_delta_t *d, const tfa_flash_t *flash, uint32_t base_addr, uint32_t base_len,
                     uint32_t out_addr, uint32_t out_len, const tfa_delta_checkpoint_t *cp);
/* Feed the next payload bytes (any length). Returns 0 or -TFA_ERR_DELTA_CORRUPT / -TFA_ERR_FLASH_IO. */
int tfa_delta_feed(tfa_delta_t *d, const uint8_t *data, uint32_t len);
/* The latest block boundary reached (valid once the header has been read). */
const tfa_delta_checkpoint_t *tfa_delta_checkpoint(const tfa_delta_t *d);
/* After the last byte: 0 if the whole model was written, else -TFA_ERR_DELTA_CORRUPT. */
int tfa_delta_finish(tfa_delta_t *d);

#endif
