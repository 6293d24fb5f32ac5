/* core/src/le_bytes.h in its byte-by-byte form (TFA_LE_NATIVE 0), the one a big-endian target or another
 * compiler builds: fixed vectors at every alignment. Its native form is what every other test runs on the
 * host and on the M4 (wire, manifest and state record bytes against the Python side). */
#define TFA_LE_NATIVE 0
#include "../core/src/le_bytes.h"

#include <string.h>

#include "check.h"

int main(void)
{
    static const uint8_t want[4] = {0xEF, 0xCD, 0xAB, 0x89};
    for (uint32_t at = 0; at < 4u; at++) {
        uint8_t buf[12];
        memset(buf, 0, sizeof buf);
        tfa_put_le32(buf + at, 0x89ABCDEFu);
        CHECK(memcmp(buf + at, want, 4) == 0 && buf[at + 4u] == 0u && (at == 0u || buf[at - 1u] == 0u),
              "put32 at %u", at);
        CHECK(tfa_get_le32(buf + at) == 0x89ABCDEFu, "get32 at %u", at);
        memset(buf, 0, sizeof buf);
        tfa_put_le16(buf + at, 0x1234BEEFu); /* only the low 16 bits are stored */
        CHECK(buf[at] == 0xEFu && buf[at + 1u] == 0xBEu && buf[at + 2u] == 0u, "put16 at %u", at);
        CHECK(tfa_get_le16(buf + at) == 0xBEEFu, "get16 at %u", at);
    }
    return test_report("test_le_bytes");
}
