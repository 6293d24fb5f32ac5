/* libFuzzer harness: manifest parse (length, magic, format, key lookup, signature, field ranges) on
 * arbitrary bytes, against the trusted key of the golden vectors. Without the private key the fuzzer
 * cannot forge a signature: what lies behind it (the field ranges) is reached from the seeds only. */
#include "fuzz_common.h"
#include "tfa/errors.h"
#include "tfa/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tfa_trusted_key_t key;
    static int ready;
    if (!ready) {
        fz_trusted_key(&key);
        ready = 1;
    }
    if (size > 4096) {
        return 0;
    }
    uint8_t *copy = malloc(size ? size : 1); /* exact size: ASan sees a read past the end */
    memcpy(copy, data, size);
    tfa_manifest_t m;
    int rc = tfa_manifest_parse(copy, (uint32_t)size, &key, 1, &m);
    if (rc > 0) {
        abort();
    }
    if (rc == 0 && (size < TFA_MANIFEST_SIZE || m.model_name[sizeof m.model_name - 1] != 0)) {
        abort(); /* accepted a short manifest or an unterminated name */
    }
    free(copy);
    return 0;
}
