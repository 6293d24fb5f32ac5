/* Byte layout of the structs the Python binding mirrors with ctypes (tinyfleet/device/library.py), so
 * that a test can hold the mirror to the compiler's layout instead of to a hand-kept copy. */
#ifndef TFA_HOST_LAYOUT_H
#define TFA_HOST_LAYOUT_H

#include <stdint.h>

enum {
    TFA_HOST_LAYOUT_TENSOR_INFO = 0, /* tfa_tensor_info_t */
    TFA_HOST_LAYOUT_ENGINE = 1,      /* tfa_engine_t, its public fields up to output_count */
    TFA_HOST_LAYOUT_CONFIG = 2       /* tfa_host_config_t */
};

/* Writes sizeof the struct, then the offsetof of each field in declaration order, into out (up to cap
 * values). Returns the number of values the struct has (0 for an unknown id); a return above cap means
 * out was too small. */
uint32_t tfa_host_struct_layout(uint32_t which, uint32_t *out, uint32_t cap);

/* The same for tfa_tensor_info_t alone. */
uint32_t tfa_host_tensor_info_layout(uint32_t *out, uint32_t cap);

#endif
