/* libFuzzer harness: the message handler on a fresh device per input (RAM flash on static storage,
 * the golden vectors' device and key, a delta workspace and the engine's self-test hook, all static).
 * Input: a sequence of messages, each u16 length (little-endian) then that many bytes (u8 type, u16
 * request id, body). Every message must get exactly one well-formed response. */
#include "fuzz_common.h"
#include "tfa/delta.h"
#include "tfa/engine.h"
#include "tfa/errors.h"
#include "tfa/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t storage[FZ_FLASH_SIZE];
    static tfa_trusted_key_t key;
    static tfa_delta_t delta;
    static tfa_engine_t engine;
    static uint8_t arena[16384];
    static tfa_engine_selftest_ctx_t st_ctx = {&engine, arena, sizeof arena};
    static tfa_device_config_t cfg;
    static tfa_runtime_t rt;
    static tfa_proto_t proto;
    static uint8_t out[TFA_FRAME_MAX_BODY];
    static int ready;
    if (!ready) {
        fz_trusted_key(&key);
        ready = 1;
    }
    tfa_flash_host_t fh;
    fz_flash(&fh, storage, FZ_FLASH_SIZE, FZ_SECTOR);
    memset(&cfg, 0, sizeof cfg);
    cfg.hardware_class = FZ_HW_CLASS;
    cfg.runtime_version = TFA_RUNTIME_VERSION;
    cfg.ram_budget = 16384;
    cfg.slot_size = FZ_SLOT;
    cfg.keys = &key;
    cfg.key_count = 1;
    cfg.selftest_hook = tfa_engine_selftest_hook;
    cfg.selftest_ctx = &st_ctx;
    cfg.delta_workspace = &delta;
    memset(&rt, 0, sizeof rt);
    if (tfa_runtime_boot(&rt, &fh.flash, &cfg) != 0) {
        abort();
    }
    tfa_proto_init(&proto, &rt, NULL);
    size_t at = 0;
    while (at + 2 <= size) {
        uint32_t n = fz_u16(data + at);
        at += 2;
        if (n > size - at) {
            n = (uint32_t)(size - at);
        }
        uint8_t *msg = malloc(n ? n : 1); /* exact size: ASan sees a read past the message */
        memcpy(msg, data + at, n);
        at += n;
        uint32_t out_len = 0;
        int rc = tfa_proto_handle(&proto, msg, n, out, sizeof out, &out_len);
        free(msg);
        if (rc != 0 || out_len < TFA_MSG_HEADER_SIZE || out_len > sizeof out) {
            abort();
        }
        if (n >= 3 && (out[1] != data[at - n + 1] || out[2] != data[at - n + 2])) {
            abort(); /* the request id must be echoed */
        }
    }
    return 0;
}
