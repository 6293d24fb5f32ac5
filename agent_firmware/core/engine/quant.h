/* Integer fixed-point arithmetic of TFLite's int8 kernels (the gemmlowp primitives and the multiplier
 * encoding), reimplemented to give the same bits. The double/float helpers run at prepare time only,
 * computing multipliers from scales the way TFLite does (frexp + round half away from zero). */
#ifndef TFA_ENGINE_QUANT_H
#define TFA_ENGINE_QUANT_H

#include <stdint.h>

/* (a * b * 2) >> 32 rounded to nearest, saturating the single overflow case (ARM VQRDMULH). */
int32_t tfa_q_high_mul(int32_t a, int32_t b);
/* x / 2^exponent rounded to nearest, ties away from zero; exponent in 0..31. */
int32_t tfa_q_round_shift(int32_t x, int exponent);
/* x * 2^exponent, exponent > 0 saturating, < 0 rounding (gemmlowp SaturatingRoundingMultiplyByPOT). */
int32_t tfa_q_mul_pot(int32_t x, int exponent);
/* x * multiplier * 2^shift as TFLite's MultiplyByQuantizedMultiplier (shift > 0: left). */
int32_t tfa_q_mul_by_quantized(int32_t x, int32_t multiplier, int shift);

/* TFLite QuantizeMultiplier: real = multiplier * 2^(shift - 31), multiplier in [2^30, 2^31). */
void tfa_q_quantize_multiplier(double real, int32_t *multiplier, int *shift);
/* std::frexp for finite doubles, without libm. */
double tfa_q_frexp(double x, int *exponent);
/* std::round for doubles and floats (half away from zero), as int64. */
int64_t tfa_q_round(double x);
int64_t tfa_q_roundf(float x);
/* TFLite CalculateInputRadius. */
int32_t tfa_q_input_radius(int integer_bits, int left_shift, int total_signed_bits);
/* Fused activation clamp range of an int8 output (TFLite CalculateActivationRangeQuantized);
 * 0, or -1 when a bound does not fit int32 (TFLite refuses the op). */
int tfa_q_activation_range(uint8_t activation, float scale, int32_t zero_point, int32_t *act_min,
                           int32_t *act_max);

/* gemmlowp transcendental functions on raw fixed-point values. */
int32_t tfa_q_exp_on_negative_values(int32_t a, int integer_bits); /* result Q0.31 */
int32_t tfa_q_one_over_one_plus_x(int32_t a);                      /* a, result Q0.31 */
int32_t tfa_q_logistic(int32_t a, int integer_bits);               /* result Q0.31 */
int32_t tfa_q_tanh(int32_t a, int integer_bits);                   /* result Q0.31 */

static inline int32_t tfa_q_clamp(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

#endif
