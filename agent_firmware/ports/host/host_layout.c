/* Struct layouts for the Python ctypes mirrors, see host_layout.h. */
#include "host_layout.h"

#include <stddef.h>

#include "host_device.h"
#include "tfa/engine.h"

#define PRV_OFF(type, field) ((uint32_t)offsetof(type, field))

static const uint32_t k_tensor_info[] = {
    (uint32_t)sizeof(tfa_tensor_info_t),
    PRV_OFF(tfa_tensor_info_t, type),
    PRV_OFF(tfa_tensor_info_t, rank),
    PRV_OFF(tfa_tensor_info_t, dims),
    PRV_OFF(tfa_tensor_info_t, bytes),
    PRV_OFF(tfa_tensor_info_t, scale),
    PRV_OFF(tfa_tensor_info_t, zero_point),
};

static const uint32_t k_engine[] = {
    (uint32_t)sizeof(tfa_engine_t),
    PRV_OFF(tfa_engine_t, model),
    PRV_OFF(tfa_engine_t, model_len),
    PRV_OFF(tfa_engine_t, arena),
    PRV_OFF(tfa_engine_t, arena_size),
    PRV_OFF(tfa_engine_t, arena_used),
    PRV_OFF(tfa_engine_t, arena_needed),
    PRV_OFF(tfa_engine_t, activation_bytes),
    PRV_OFF(tfa_engine_t, op_count),
    PRV_OFF(tfa_engine_t, mac_count),
    PRV_OFF(tfa_engine_t, bad_op_code),
    PRV_OFF(tfa_engine_t, bad_op_index),
    PRV_OFF(tfa_engine_t, tensor_count),
    PRV_OFF(tfa_engine_t, input_count),
    PRV_OFF(tfa_engine_t, output_count),
};

static const uint32_t k_config[] = {
    (uint32_t)sizeof(tfa_host_config_t),
    PRV_OFF(tfa_host_config_t, hardware_class),
    PRV_OFF(tfa_host_config_t, runtime_version),
    PRV_OFF(tfa_host_config_t, ram_budget),
    PRV_OFF(tfa_host_config_t, slot_size),
    PRV_OFF(tfa_host_config_t, sector_size),
    PRV_OFF(tfa_host_config_t, max_trial_boots),
    PRV_OFF(tfa_host_config_t, keys),
    PRV_OFF(tfa_host_config_t, key_count),
    PRV_OFF(tfa_host_config_t, cpu_hz),
    PRV_OFF(tfa_host_config_t, milli_cycles_per_mac),
    PRV_OFF(tfa_host_config_t, cycles_per_op),
    PRV_OFF(tfa_host_config_t, encryption_key),
    PRV_OFF(tfa_host_config_t, require_encryption),
};

static uint32_t prv_copy(const uint32_t *table, uint32_t n, uint32_t *out, uint32_t cap)
{
    for (uint32_t i = 0; out != NULL && i < n && i < cap; i++) {
        out[i] = table[i];
    }
    return n;
}

#define PRV_COUNT(a) ((uint32_t)(sizeof(a) / sizeof((a)[0])))

uint32_t tfa_host_struct_layout(uint32_t which, uint32_t *out, uint32_t cap)
{
    switch (which) {
    case TFA_HOST_LAYOUT_TENSOR_INFO:
        return prv_copy(k_tensor_info, PRV_COUNT(k_tensor_info), out, cap);
    case TFA_HOST_LAYOUT_ENGINE:
        return prv_copy(k_engine, PRV_COUNT(k_engine), out, cap);
    case TFA_HOST_LAYOUT_CONFIG:
        return prv_copy(k_config, PRV_COUNT(k_config), out, cap);
    default:
        return 0;
    }
}

uint32_t tfa_host_tensor_info_layout(uint32_t *out, uint32_t cap)
{
    return tfa_host_struct_layout(TFA_HOST_LAYOUT_TENSOR_INFO, out, cap);
}
