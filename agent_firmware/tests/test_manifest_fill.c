/* manifest.c's field-by-field prv_fill (the form a big-endian target or another struct layout builds: this
 * file compiles manifest.c again with TFA_LE_NATIVE 0) against the two-copy form the host and the M4 link:
 * the same tfa_manifest_t, padding included, for every golden vector whose manifest parses. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tv_support.h"

#define TFA_LE_NATIVE 0
#define tfa_manifest_parse prv_parse_by_field
#include "../core/src/manifest.c"
#undef tfa_manifest_parse

/* Evaluated here with TFA_LE_NATIVE 0, then with 1 as the linked manifest.o sees it on the host. */
static const int prv_here_by_field = !PRV_WIRE_LAYOUT;
#undef TFA_LE_NATIVE
#define TFA_LE_NATIVE 1
static const int prv_host_copies = PRV_WIRE_LAYOUT;

int tfa_manifest_parse(const uint8_t *buf, uint32_t len, const struct tfa_trusted_key *keys, uint32_t key_count,
                       tfa_manifest_t *out);

int main(void)
{
    CHECK(prv_here_by_field, "this file's copy of manifest.c fills field by field");
    CHECK(prv_host_copies, "the host's tfa_manifest_parse fills by two copies");
    tfa_trusted_key_t key;
    static tv_index_entry_t entries[256];
    int n = tv_load_index(entries, 256);
    CHECK(n > 0 && tv_load_trusted_key(&key) == 0, "cannot load the vectors from %s", tv_vector_dir());
    int compared = 0;
    for (int i = 0; i < n; i++) {
        uint32_t len;
        uint8_t *pkg = tv_read_vector(entries[i].file, &len);
        tfa_manifest_t copied;
        tfa_manifest_t by_field;
        memset(&copied, 0xA5, sizeof copied);
        memset(&by_field, 0x5A, sizeof by_field);
        int rc = pkg != NULL ? tfa_manifest_parse(pkg, len, &key, 1, &copied) : -1;
        CHECK(rc == (pkg != NULL ? prv_parse_by_field(pkg, len, &key, 1, &by_field) : -1), "%s", entries[i].file);
        if (rc == 0) {
            CHECK(memcmp(&copied, &by_field, sizeof copied) == 0, "%s: the two fills differ", entries[i].file);
            compared++;
        }
        free(pkg);
    }
    CHECK(compared >= 10, "only %d manifests parsed", compared);
    printf("test_manifest_fill: %d manifests compared\n", compared);
    return test_report("test_manifest_fill");
}
