/* The template port (ports/template, docs/PORTING.md) builds against the core and works: it boots on its
 * erased flash and answers HELLO through its byte I/O with the engine wired by the core's adapter. The
 * storage contract checker (support/flash_contract.c) passes on every flash in the tree: the template's,
 * the host port's and the mps2-an386 RAM flash. */
#include <stdint.h>
#include <string.h>

#define TEMPLATE_WITH_ENGINE 1
#include "../ports/mps2-an386/ram_flash.c"
#include "../ports/template/board_template.c"
#include "../ports/template/port.c"
#include "check.h"
#include "flash_contract.h"
#include "flash_host.h"
#include "tfa/frame.h"


extern uint8_t template_tx[];
extern uint32_t template_tx_len;
void template_uart_inject(const uint8_t *data, uint32_t len);

static void prv_check_flash(const char *what, const tfa_flash_t *f)
{
    const char *why = "";
    CHECK(flash_contract_check(f, &why) == 0, "%s: %s", what, why);
}

/* A program() that copies like RAM: what a careless port would write. */
static int prv_read_back_as_ram(void *ctx, uint32_t addr, const uint8_t *src, uint32_t len)
{
    ram_flash_t *r = ctx;
    if (addr > r->size || len > r->size - addr) {
        return -TFA_ERR_FLASH_IO;
    }
    memcpy(r->mem + addr, src, len);
    return 0;
}

static void test_flash_contracts(void)
{
    prv_check_flash("template", board_flash_open(0));

    tfa_flash_host_t fh;
    CHECK(tfa_flash_host_init(&fh, NULL, 8u * 256u, 256u) == 0, "flash_host init");
    prv_check_flash("flash_host", &fh.flash);
    tfa_flash_host_free(&fh);

    static uint8_t mem[8u * 1024u];
    ram_flash_t rf;
    tfa_flash_t f;
    ram_flash_init(&rf, &f, mem, sizeof mem, 1024u);
    prv_check_flash("mps2 ram_flash", &f);

    /* The checker itself fails a flash that sets bits without an erase (a plain RAM copy). */
    ram_flash_init(&rf, &f, mem, sizeof mem, 1024u);
    f.program = prv_read_back_as_ram;
    const char *why = "";
    CHECK(flash_contract_check(&f, &why) == -1 && strstr(why, "FLASH_NOT_ERASED") != NULL, "lax flash: %s", why);
}

static void test_hello(void)
{
    CHECK_RC(port_start(), 0, "boot on an erased flash");
    /* HELLO, request id 7 (docs/PROTOCOL.md 3.2.1) */
    static const uint8_t hello[3] = {0x01, 0x07, 0x00};
    uint8_t wire[64];
    uint32_t wire_len = 0;
    CHECK_RC(tfa_frame_encode(hello, sizeof hello, wire, sizeof wire, &wire_len), 0, "encode");
    template_uart_inject(wire, wire_len);
    CHECK(port_poll() == wire_len, "every byte handled");

    static uint8_t buf[TFA_FRAME_MAX_DECODED];
    tfa_frame_decoder_t dec;
    tfa_frame_decoder_init(&dec, buf, sizeof buf);
    uint32_t body_len = 0;
    int frames = 0;
    for (uint32_t i = 0; i < template_tx_len; i++) {
        uint32_t n = 0;
        if (tfa_frame_push(&dec, template_tx[i], &n) == TFA_FRAME_READY) {
            frames++;
            body_len = n;
        }
    }
    CHECK(frames == 1 && body_len == 3u + 20u, "%d frames, body %u", frames, (unsigned)body_len);
    CHECK(buf[0] == 0x81 && buf[1] == 0x07 && buf[2] == 0x00, "HELLO response to request 7");
    CHECK((buf[3 + 1] & 1u) == 1u, "feature bit 0: the engine answers INFER");
    const uint32_t ram_budget = (uint32_t)buf[3 + 12] | (uint32_t)buf[3 + 13] << 8 |
                                (uint32_t)buf[3 + 14] << 16 | (uint32_t)buf[3 + 15] << 24;
    CHECK(ram_budget == 16u * 1024u, "ram_budget %u", (unsigned)ram_budget);
    CHECK(tfa_active_model(port_runtime(), &body_len) == NULL, "no model installed");
}

int main(void)
{
    test_flash_contracts();
    test_hello();
    return test_report("test_port_template");
}
