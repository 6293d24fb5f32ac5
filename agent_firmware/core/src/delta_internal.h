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
#define FLAG_TENSOR 2u /* checkpoint has_base bit 1: format version 2 */
#define EXP_TREE_BITS 4u
#define KIND_BITS 3u
enum { RUN_PLAIN = 0, RUN_DIFF, RUN_WORDS, RUN_WORDS_DELTA, RUN_PRODUCT };

/* range decoder (delta_coder.c): bits with an adaptive probability, direct bits, trees, numbers */
void tfa_delta_coder_start(tfa_delta_t *d);
uint32_t tfa_delta_bit_rate(tfa_delta_t *d, uint16_t *prob, uint32_t shift);
uint32_t tfa_delta_bit(tfa_delta_t *d, uint16_t *prob);
uint32_t tfa_delta_direct(tfa_delta_t *d, uint32_t count);
uint32_t tfa_delta_tree(tfa_delta_t *d, uint16_t *probs, uint32_t bits);
int tfa_delta_number(tfa_delta_t *d, uint16_t *probs, uint32_t *out);
/* output and flash (delta_coder.c) */
int tfa_delta_flush(tfa_delta_t *d);
int tfa_delta_emit(tfa_delta_t *d, const uint8_t *bytes, uint32_t len);
int tfa_delta_read(const tfa_delta_t *d, uint32_t addr, uint8_t *dst, uint32_t len);
int32_t tfa_delta_align(const tfa_delta_t *d);
void tfa_delta_push_rep(tfa_delta_t *d, uint8_t kind, int32_t value);
/* format 2 runs (delta_runs.c): the header after is_tensor = 1, then one value or word per step */
int tfa_delta_run_begin(tfa_delta_t *d);
int tfa_delta_run_step(tfa_delta_t *d);

#endif
