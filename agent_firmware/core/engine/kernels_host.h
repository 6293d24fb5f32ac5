/* Shared by the host kernels (kernels_*_host.c): the output requantization with its per-channel
 * constants worked out once per run. */
#ifndef TFA_ENGINE_KERNELS_HOST_H
#define TFA_ENGINE_KERNELS_HOST_H

#include <stdint.h>

/* tfa_q_mul_by_quantized(x, mult, shift) for one channel: the left shift, the rounding doubling high
 * multiply, then the rounding right shift with ties away from zero as one add and an arithmetic shift:
 * round(h / 2^r) = (h + 2^(r-1) - (h < 0)) >> r for r >= 1 (neg = pos - 1), h for r = 0 (pos = neg = 0).
 * Equal to the reference for every input (checked by agent_firmware/tests/test_engine_host.c). */
typedef struct tfa_host_rq {
    int32_t mult;
    int32_t pos, neg;
    uint8_t left, right;
} tfa_host_rq_t;

static inline tfa_host_rq_t tfa_host_rq_make(int32_t mult, int32_t shift)
{
    tfa_host_rq_t q;
    q.mult = mult;
    q.left = (uint8_t)(shift > 0 ? shift : 0);
    q.right = (uint8_t)(shift > 0 ? 0 : -shift);
    q.pos = q.right ? (int32_t)(1u << (q.right - 1u)) : 0;
    q.neg = q.right ? q.pos - 1 : 0;
    return q;
}

static inline int32_t tfa_host_rq(const tfa_host_rq_t *q, int32_t x)
{
    const int32_t a = (int32_t)((uint32_t)x << q->left);
    int32_t high;
    if (a == INT32_MIN && q->mult == INT32_MIN) {
        high = INT32_MAX;
    } else {
        high = (int32_t)(((int64_t)a * q->mult + ((int64_t)1 << 30)) >> 31);
    }
    return (int32_t)(((int64_t)high + (high < 0 ? q->neg : q->pos)) >> q->right);
}

#endif
