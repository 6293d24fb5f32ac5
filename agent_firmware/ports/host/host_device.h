/* One simulated device per handle, exported from libtinyfleet_agent.so for the Python simulator
 * (tinyfleet/device/runtime.py). A device is its RAM flash (flash_host), a tfa_runtime_t and the UART link
 * (frame decoder + tfa_proto_handle); the host talks to it only through UART bytes, as an agent
 * talks to a real board. Many handles can live in one process: nothing here is global.
 *
 * The inference engine (tfa/engine.h) is wired in: it runs the trial self-test (config selftest_hook)
 * and answers INFER on the active model, with an arena of ram_budget bytes that is allocated only
 * while needed (during a self-test; from the first INFER until the next boot).
 * Each device also holds the payload decoder's workspace (tfa_delta_t, about 6 KiB) for compressed and
 * delta packages.
 *
 * All int functions return 0 or -TFA_ERR_x. The functions taking a handle accept only handles from
 * tfa_host_create() that were not destroyed. */
#ifndef TFA_HOST_DEVICE_H
#define TFA_HOST_DEVICE_H

#include <stdint.h>

#include "tfa/engine.h"

#define TFA_HOST_KEY_RECORD 40u /* key_id[8] || public_key[32] */
#define TFA_HOST_MAX_KEYS 16u

typedef struct tfa_host_device tfa_host_device_t;

typedef struct tfa_host_config {
    uint32_t hardware_class;
    uint32_t runtime_version;  /* major<<16 | minor<<8 | patch */
    uint32_t ram_budget;       /* largest tensor arena the device can give a model */
    uint32_t slot_size;        /* bytes per slot, a multiple of sector_size */
    uint32_t sector_size;      /* flash erase unit, a power of two >= 16 */
    uint32_t max_trial_boots;  /* 0..255, see tfa_device_config_t */
    const uint8_t *keys;       /* key_count records of TFA_HOST_KEY_RECORD bytes; copied */
    uint32_t key_count;        /* 0..TFA_HOST_MAX_KEYS */
    /* Latency model for telemetry: the host cannot count an MCU's cycles, so each inference is
     * estimated as mac_count * milli_cycles_per_mac / 1000 + op_count * cycles_per_op, at cpu_hz
     * (reported with the "estimated" flag, docs/PROTOCOL.md 3.2.6). All 0: no estimate. */
    uint32_t cpu_hz;
    uint32_t milli_cycles_per_mac;
    uint32_t cycles_per_op;
    /* Encrypted packages (docs/PROTOCOL.md section 6): the device's X25519 private key, 32 bytes, copied
     * (its public key is derived once here), or NULL: the device refuses encrypted packages.
     * require_encryption 1: clear packages are refused (NOT_ENCRYPTED). */
    const uint8_t *encryption_key;
    uint32_t require_encryption;
} tfa_host_config_t;

/* Allocate a device with an erased flash of 2 sectors (state) + 2 slots. It is powered off until
 * tfa_host_boot(). Returns -TFA_ERR_FIELD_RANGE for a bad geometry or key count, -TFA_ERR_FLASH_IO if
 * memory runs out. */
int tfa_host_create(const tfa_host_config_t *cfg, tfa_host_device_t **out);
void tfa_host_destroy(tfa_host_device_t *dev);

/* Power on: the runtime boots from the flash contents (RAM state starts afresh, unread UART output is
 * lost). If booting fails (say a power cut armed to hit during boot recovery), the device stays off
 * and the error is returned. */
int tfa_host_boot(tfa_host_device_t *dev);
/* Power off and on again, keeping the flash (the same as tfa_host_boot(), named for callers that
 * reboot a running device). A power cut armed but not yet happened stays armed, so that a test can
 * cut the power during boot recovery. */
int tfa_host_power_cycle(tfa_host_device_t *dev);
/* 1 if the device runs (booted, no power cut since), 0 if off. */
int tfa_host_is_on(const tfa_host_device_t *dev);

/* Bytes from the host into the device's UART. The device handles each byte as it arrives and queues
 * its responses; it stops accepting when its output queue could not hold one more full response
 * frame (flow control): *accepted tells how many bytes it took, read the output and write the rest.
 * A device that is off swallows everything and answers nothing. */
int tfa_host_uart_write(tfa_host_device_t *dev, const uint8_t *data, uint32_t len, uint32_t *accepted);
/* Bytes from the device's UART to the host: copies up to cap queued bytes; returns the count. */
uint32_t tfa_host_uart_read(tfa_host_device_t *dev, uint8_t *out, uint32_t cap);

/* Power-cut injector: the n-th flash program/erase from now (n >= 1) is torn per mode (tfa_cut_mode_t
 * in flash_host.h; seed drives the GARBAGE mode) and the device is off from then on: the response to
 * the request in progress is never sent. */
void tfa_host_arm_power_cut(tfa_host_device_t *dev, uint32_t n, uint32_t mode, uint32_t seed);
/* Flash program + erase operations since creation. */
uint32_t tfa_host_flash_ops(const tfa_host_device_t *dev);

uint32_t tfa_host_flash_size(const tfa_host_device_t *dev);
/* Copy the whole flash image out (len must equal the flash size). */
int tfa_host_flash_read(const tfa_host_device_t *dev, uint8_t *out, uint32_t len);
/* Replace the whole flash image (len must equal the flash size); the device is powered off, boot it
 * to use the new image. */
int tfa_host_flash_load(tfa_host_device_t *dev, const uint8_t *image, uint32_t len);

/* The active model's first input and first output tensors, as the device's own sensor code sees them
 * (a board's application is built against its model; the simulator's sensors ask here to shape their
 * data). Initialises the engine like INFER does: BAD_STATE without an active model, or the engine's
 * init error. */
int tfa_host_model_io(tfa_host_device_t *dev, tfa_tensor_info_t *input, tfa_tensor_info_t *output);

/* Heap bytes this device holds now: its flash, its state and buffers, its copy of the keys, and the
 * engine arena while one is allocated. */
uint32_t tfa_host_memory_bytes(const tfa_host_device_t *dev);

#endif
