/* Fixed-point primitives, see quant.h. Signed overflow is avoided by doing wrapping arithmetic in
 * uint32_t where the reference relies on two's complement behaviour. */
#include "quant.h"

#include <string.h>

int32_t tfa_q_high_mul(int32_t a, int32_t b)
{
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

int32_t tfa_q_round_shift(int32_t x, int exponent)
{
    int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

int32_t tfa_q_mul_pot(int32_t x, int exponent)
{
    if (exponent < 0) {
        return tfa_q_round_shift(x, -exponent);
    }
    if (exponent == 0) {
        return x;
    }
    int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << exponent);
}

int32_t tfa_q_mul_by_quantized(int32_t x, int32_t multiplier, int shift)
{
    int left = shift > 0 ? shift : 0;
    int right = shift > 0 ? 0 : -shift;
    return tfa_q_round_shift(tfa_q_high_mul((int32_t)((uint32_t)x << left), multiplier), right);
}

double tfa_q_frexp(double x, int *exponent)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    int biased = (int)((bits >> 52) & 0x7FFu);
    *exponent = 0;
    if (x == 0.0 || biased == 0x7FF) {
        return x;
    }
    int extra = 0;
    if (biased == 0) { /* subnormal: scale into the normal range first */
        x *= 18014398509481984.0; /* 2^54 */
        memcpy(&bits, &x, sizeof bits);
        biased = (int)((bits >> 52) & 0x7FFu);
        extra = -54;
    }
    *exponent = biased - 1022 + extra;
    bits = (bits & ~((uint64_t)0x7FF << 52)) | ((uint64_t)1022 << 52);
    memcpy(&x, &bits, sizeof x);
    return x;
}

int64_t tfa_q_round(double x)
{
    /* Split into integer and fraction (both exact) rather than adding 0.5, which can round. */
    double ax = x < 0 ? -x : x;
    if (!(ax < 4503599627370496.0)) { /* 2^52 and above are integral; NaN and inf saturate */
        if (!(ax < 9.2e18)) {
            return x < 0 ? INT64_MIN : INT64_MAX;
        }
        return (int64_t)x;
    }
    int64_t i = (int64_t)ax;          /* truncation */
    double frac = ax - (double)i;     /* exact */
    if (frac >= 0.5) {
        i += 1;
    }
    return x < 0 ? -i : i;
}

int64_t tfa_q_roundf(float x)
{
    return tfa_q_round((double)x);
}

int32_t tfa_q_input_radius(int integer_bits, int left_shift, int total_signed_bits)
{
    double max_input_rescaled = 1.0 * (double)((1 << integer_bits) - 1) *
                                (double)((int64_t)1 << (total_signed_bits - integer_bits)) /
                                (double)((int64_t)1 << left_shift);
    return (int32_t)max_input_rescaled; /* floor of a positive value */
}

void tfa_q_quantize_multiplier(double real, int32_t *multiplier, int *shift)
{
    if (real == 0.0) {
        *multiplier = 0;
        *shift = 0;
        return;
    }
    double q = tfa_q_frexp(real, shift);
    int64_t q_fixed = tfa_q_round(q * 2147483648.0);
    if (q_fixed == ((int64_t)1 << 31)) {
        q_fixed /= 2;
        ++*shift;
    }
    if (*shift < -31) {
        *shift = 0;
        q_fixed = 0;
    }
    if (*shift > 30) {
        *shift = 30;
        q_fixed = ((int64_t)1 << 31) - 1;
    }
    *multiplier = (int32_t)q_fixed;
}

/* zero_point + round(f / scale); like TFLite, refuse a value that leaves the int32 range. */
static int prv_quantize_value(float scale, int32_t zero_point, float f, int32_t *q)
{
    /* f / scale may be infinite (a subnormal scale): tfa_q_roundf saturates to INT64_MAX, and adding
     * a positive zero point to it overflowed int64. Check the range before adding. */
    int64_t r = tfa_q_roundf(f / scale);
    if (r < INT32_MIN || r > INT32_MAX) {
        return -1;
    }
    int64_t v = r + zero_point;
    if (v < INT32_MIN + 65536LL || v > INT32_MAX - 65536LL) {
        return -1;
    }
    *q = (int32_t)v;
    return 0;
}

int tfa_q_activation_range(uint8_t activation, float scale, int32_t zero_point, int32_t *act_min,
                           int32_t *act_max)
{
    int32_t lo = -128;
    int32_t hi = 127;
    int32_t q = 0;
    *act_min = lo;
    *act_max = hi;
    if (activation == 1 || activation == 3) { /* RELU, RELU6 */
        if (prv_quantize_value(scale, zero_point, 0.0f, &q) != 0) {
            return -1;
        }
        *act_min = q > lo ? q : lo;
        if (activation == 3) {
            if (prv_quantize_value(scale, zero_point, 6.0f, &q) != 0) {
                return -1;
            }
            *act_max = q < hi ? q : hi;
        }
    } else if (activation == 2) { /* RELU_N1_TO_1 */
        if (prv_quantize_value(scale, zero_point, -1.0f, &q) != 0) {
            return -1;
        }
        *act_min = q > lo ? q : lo;
        if (prv_quantize_value(scale, zero_point, 1.0f, &q) != 0) {
            return -1;
        }
        *act_max = q < hi ? q : hi;
    }
    return 0;
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out: Taylor expansion around -1/8. */
static int32_t prv_exp_quarter(int32_t a)
{
    const int32_t exp_minus_one_eighth = 1895147668;
    const int32_t one_third = 715827883;
    int32_t x = a + (1 << 28);
    int32_t x2 = tfa_q_high_mul(x, x);
    int32_t x3 = tfa_q_high_mul(x2, x);
    int32_t x4 = tfa_q_high_mul(x2, x2);
    int32_t x4_over_4 = tfa_q_round_shift(x4, 2);
    int32_t poly = tfa_q_round_shift(tfa_q_high_mul(x4_over_4 + x3, one_third) + x2, 1);
    return exp_minus_one_eighth + tfa_q_high_mul(exp_minus_one_eighth, x + poly);
}

int32_t tfa_q_exp_on_negative_values(int32_t a, int integer_bits)
{
    static const int32_t multipliers[7] = {1672461947, 1302514674, 790015084, 290630308,
                                           39332535,   720401,     242};
    const int fractional_bits = 31 - integer_bits;
    const int32_t one_quarter = (int32_t)1 << (fractional_bits - 2);
    const int32_t mask = one_quarter - 1;
    int32_t a_mod_quarter_minus_quarter = (a & mask) - one_quarter;
    int32_t result = prv_exp_quarter(tfa_q_mul_pot(a_mod_quarter_minus_quarter, integer_bits));
    int32_t remainder = (int32_t)((uint32_t)a_mod_quarter_minus_quarter - (uint32_t)a);
    for (int exponent = -2; exponent <= 4; exponent++) {
        if (integer_bits > exponent) {
            int shift = fractional_bits + exponent;
            if ((uint32_t)remainder & ((uint32_t)1 << shift)) {
                result = tfa_q_high_mul(result, multipliers[exponent + 2]);
            }
        }
    }
    if (integer_bits > 5) {
        int32_t clamp = -(int32_t)((int64_t)1 << (36 - integer_bits));
        if (a < clamp) {
            result = 0;
        }
    }
    if (a == 0) {
        result = INT32_MAX;
    }
    return result;
}

/* 1 / (1 + a) in Q2.29 (a in Q0.31, 0..1), shared by the two gemmlowp functions below. */
static int32_t prv_reciprocal_q2(int32_t a)
{
    /* Newton-Raphson division in Q2.29 starting from 48/17 - 32/17 * d. */
    int64_t sum = (int64_t)a + INT32_MAX;
    int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    const int32_t c48_17 = 1515870810;
    const int32_t c_neg32_17 = -1010580540;
    const int32_t one_q2 = 1 << 29;
    int32_t x = c48_17 + tfa_q_high_mul(half_denominator, c_neg32_17);
    for (int i = 0; i < 3; i++) {
        int32_t hdx = tfa_q_high_mul(half_denominator, x);
        int32_t one_minus = one_q2 - hdx;
        x = x + tfa_q_mul_pot(tfa_q_high_mul(x, one_minus), 2);
    }
    return x;
}

int32_t tfa_q_one_over_one_plus_x(int32_t a)
{
    return tfa_q_mul_pot(prv_reciprocal_q2(a), 1);
}

int32_t tfa_q_tanh(int32_t a, int integer_bits)
{
    if (a == 0) {
        return 0;
    }
    /* tanh(|a|) = (1 - e) / (1 + e) with e = exp(-2|a|): the doubling is a change of integer bits */
    int32_t neg_abs = a < 0 ? a : -a;
    int32_t ex = tfa_q_exp_on_negative_values(neg_abs, integer_bits + 1);
    int32_t t = tfa_q_mul_pot((int32_t)((uint32_t)prv_reciprocal_q2(ex) - (1u << 29)), 2);
    return a < 0 ? -t : t;
}

int32_t tfa_q_logistic(int32_t a, int integer_bits)
{
    if (a == 0) {
        return 1 << 30;
    }
    int32_t abs_a = a > 0 ? a : -a;
    int32_t pos = tfa_q_one_over_one_plus_x(tfa_q_exp_on_negative_values(-abs_a, integer_bits));
    return a > 0 ? pos : INT32_MAX - pos;
}
