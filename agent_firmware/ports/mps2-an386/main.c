/* The device: boot the runtime from the emulated flash, then serve frames on UART0 forever:
 * received bytes -> frame decoder -> tfa_proto_handle -> response frame (all inside tfa_link_rx). */
#include <stdint.h>

#include "board.h"
#include "provision.h"
#include "tfa/proto.h"
#include "tfa/runtime.h"
#include "tfa/x25519.h"

#ifndef TFA_WITH_ENGINE
#define TFA_WITH_ENGINE 0
#endif
#if TFA_WITH_ENGINE
#include "engine_port.h"
#endif

/* Everything is static: no heap, and the link map shows the RAM each part costs. */
static provision_t prv_provision;
static tfa_device_config_t prv_config;
static tfa_runtime_t prv_runtime;
static tfa_delta_t prv_delta; /* decoder workspace for compressed and delta packages */
static tfa_link_t prv_link;
static uint8_t prv_tx[TFA_FRAME_MAX_ENCODED];
#ifndef TFA_NO_ENCRYPTION
static uint8_t prv_encryption_public[32];
#if TFA_WITH_ENGINE
/* A model installed encrypted stays encrypted in flash (PROTOCOL 6.6): the engine runs it from here. Its
 * size is the largest such model this board runs; a real MCU pays it in SRAM. */
#ifndef MPS2_MODEL_RAM_SIZE
#define MPS2_MODEL_RAM_SIZE (64u * 1024u)
#endif
static uint8_t prv_model_ram_buf[MPS2_MODEL_RAM_SIZE] __attribute__((aligned(16)));
static tfa_model_ram_t prv_model_ram = {.buf = prv_model_ram_buf, .size = MPS2_MODEL_RAM_SIZE};
#endif
#endif

/* Device config from the provisioning record. An invalid record leaves zero trusted keys and the
 * board's default flash layout: the device still answers (HELLO shows hardware class 0) and refuses
 * every package with UNKNOWN_KEY, the safe failure. */
static const tfa_flash_t *prv_configure(void)
{
    uint32_t len;
    const uint8_t *record = board_provision_record(&len);
    (void)provision_parse(record, len, &prv_provision);
    const tfa_flash_t *flash = board_flash_open(prv_provision.slot_size);
    if (flash == 0) {
        prv_provision.key_count = 0;
        prv_provision.slot_size = 0;
        flash = board_flash_open(0);
    }
    prv_config.hardware_class = prv_provision.hardware_class;
    prv_config.runtime_version = TFA_RUNTIME_VERSION;
    prv_config.ram_budget = prv_provision.ram_budget;
    prv_config.slot_size = (flash->size - 2u * flash->sector_size) / 2u;
    prv_config.keys = prv_provision.keys;
    prv_config.key_count = prv_provision.key_count;
    prv_config.max_trial_boots = prv_provision.max_trial_boots;
    prv_config.selftest_hook = 0; /* integrity re-check only, unless the engine plugs in below */
    prv_config.selftest_ctx = 0;
    prv_config.delta_workspace = &prv_delta;
#ifndef TFA_NO_ENCRYPTION
    /* The device's X25519 key pair (PROTOCOL 6.4): the public half computed once per boot. */
    if ((prv_provision.flags & PROVISION_FLAG_ENCRYPTION_KEY) != 0u) {
        tfa_x25519_base(prv_encryption_public, prv_provision.encryption_key);
        prv_config.encryption_private = prv_provision.encryption_key;
        prv_config.encryption_public = prv_encryption_public;
    }
    prv_config.require_encryption = (prv_provision.flags & PROVISION_FLAG_REQUIRE_ENCRYPTION) != 0u;
#if TFA_WITH_ENGINE
    prv_config.model_ram = &prv_model_ram;
#endif
#endif
    return flash;
}

int main(void)
{
    board_init();
    const tfa_flash_t *flash = prv_configure();
#if TFA_WITH_ENGINE
    const tfa_engine_ops_t *engine = engine_port_init(&prv_config);
#else
    const tfa_engine_ops_t *engine = 0; /* INFER answers UNSUPPORTED_OP */
#endif
    /* A boot error (corrupt state area...) is recorded by the runtime and reported in STATE;
     * the link must keep answering so that the host can see it. */
    (void)tfa_runtime_boot(&prv_runtime, flash, &prv_config);
    tfa_link_init(&prv_link, &prv_runtime, engine);

    for (;;) {
        int c = board_uart_getc();
        if (c < 0) {
            board_idle();
            continue;
        }
        uint32_t tx_len = 0;
        if (tfa_link_rx(&prv_link, (uint8_t)c, prv_tx, sizeof(prv_tx), &tx_len) != 0) {
            continue;
        }
        for (uint32_t i = 0; i < tx_len; i++) {
            board_uart_putc(prv_tx[i]);
        }
    }
}
