/* Host helper around the delta decoder for tests and benchmarks: decode a stream against a base held in
 * a RAM NOR flash (ports/host/flash_host.h), in chunks, optionally "rebooting" (a fresh decoder resumed
 * from the last checkpoint) every few chunks. */
#ifndef TFA_DELTA_HOST_H
#define TFA_DELTA_HOST_H

#include <stdint.h>

/* Returns 0 and fills out[0..out_len) or -TFA_ERR_x. chunk >= 1. reboot_every = 0: never. */
int tfa_host_delta_apply(const uint8_t *base, uint32_t base_len, const uint8_t *stream, uint32_t stream_len,
                         uint8_t *out, uint32_t out_len, uint32_t chunk, uint32_t reboot_every);
/* Bytes of decoder state (the RAM the decoder needs besides the stack). */
uint32_t tfa_host_delta_state_size(void);

#endif
