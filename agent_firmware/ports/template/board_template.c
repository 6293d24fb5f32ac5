/* Template board: every function shows where a real board calls its HAL. As shipped it runs on any
 * host (flash in a RAM array, a counting clock, a UART made of two byte queues), which is how
 * tests/test_port_template.c builds and exercises it under ASan/UBSan. */
#include "board.h"

#include <string.h>

#include "tfa/errors.h"

#define PRV_SECTOR 4096u                 /* your flash's erase unit */
#define PRV_SLOT (16u * PRV_SECTOR)      /* default slot size */
#define PRV_FLASH_MAX (2u * PRV_SECTOR + 2u * PRV_SLOT)

/* ------------------------------------------------------------------ 1. storage */

/* On silicon: the flash region reserved for tinyfleet in your linker script (memory-mapped). */
static uint8_t prv_flash_mem[PRV_FLASH_MAX];
static tfa_flash_t prv_flash;

static int prv_range_ok(uint32_t addr, uint32_t len)
{
    return addr <= prv_flash.size && len <= prv_flash.size - addr;
}

static int prv_read(void *ctx, uint32_t addr, uint8_t *dst, uint32_t len)
{
    (void)ctx;
    if (!prv_range_ok(addr, len)) {
        return -TFA_ERR_FLASH_IO;
    }
    memcpy(dst, prv_flash_mem + addr, len); /* on silicon: memcpy from the mapped flash too */
    return 0;
}

static int prv_program(void *ctx, uint32_t addr, const uint8_t *src, uint32_t len)
{
    (void)ctx;
    if (!prv_range_ok(addr, len)) {
        return -TFA_ERR_FLASH_IO;
    }
    /* Refuse before writing anything: a 0 bit cannot become 1 without an erase. */
    for (uint32_t i = 0; i < len; i++) {
        if ((uint8_t)(src[i] & (uint8_t)~prv_flash_mem[addr + i]) != 0u) {
            return -TFA_ERR_FLASH_NOT_ERASED;
        }
    }
    /* On silicon: unlock, program in the flash's write unit, wait for completion, check its error
     * flags (-TFA_ERR_FLASH_IO), lock, invalidate any cache over the range. Return only once the bytes
     * would survive a power cut. */
    memcpy(prv_flash_mem + addr, src, len);
    return 0;
}

static int prv_erase(void *ctx, uint32_t addr)
{
    (void)ctx;
    if ((addr & (prv_flash.sector_size - 1u)) != 0u || !prv_range_ok(addr, prv_flash.sector_size)) {
        return -TFA_ERR_FLASH_IO;
    }
    memset(prv_flash_mem + addr, 0xFF, prv_flash.sector_size); /* on silicon: the page/sector erase */
    return 0;
}

const tfa_flash_t *board_flash_open(uint32_t slot_size)
{
    if (slot_size == 0u) {
        slot_size = PRV_SLOT;
    }
    if (slot_size % PRV_SECTOR != 0u || slot_size > PRV_SLOT) {
        return NULL;
    }
    static uint8_t factory_erased;
    if (!factory_erased) { /* a new chip reads 0xFF; the RAM stand-in starts at 0 */
        memset(prv_flash_mem, 0xFF, sizeof prv_flash_mem);
        factory_erased = 1;
    }
    prv_flash.ctx = NULL;
    prv_flash.size = TFA_FLASH_SIZE_FOR(PRV_SECTOR, slot_size);
    prv_flash.sector_size = PRV_SECTOR;
    prv_flash.mapped = prv_flash_mem; /* NULL if your flash is not memory-mapped: no engine then */
    prv_flash.read = prv_read;
    prv_flash.program = prv_program;
    prv_flash.erase = prv_erase;
    return &prv_flash;
}

/* ------------------------------------------------------------------ 2. clock */

static uint32_t prv_tick_count;

uint32_t board_ticks(void)
{
    /* On silicon: DWT->CYCCNT (then BOARD_TICKS_ARE_CYCLES 1) or a free-running timer. Here each read
     * advances a counter, so latencies are deterministic and non-zero. */
    return prv_tick_count += 1000u;
}

uint32_t board_tick_hz(void)
{
    return 1000000u;
}

/* ------------------------------------------------------------------ 3. byte I/O */

/* On silicon: the UART's receive interrupt feeds a ring buffer, getc pops it; putc waits for TX empty. */
#define PRV_QUEUE 4096u
static uint8_t prv_rx[PRV_QUEUE];
static uint32_t prv_rx_head;
static uint32_t prv_rx_tail;
uint8_t template_tx[PRV_QUEUE]; /* what the device sent, read by the test */
uint32_t template_tx_len;

int board_getc(void)
{
    if (prv_rx_head == prv_rx_tail) {
        return -1;
    }
    return prv_rx[prv_rx_tail++ % PRV_QUEUE];
}

void board_putc(uint8_t c)
{
    if (template_tx_len < PRV_QUEUE) {
        template_tx[template_tx_len++] = c;
    }
}

/* Test hook: bytes arriving on the link. */
void template_uart_inject(const uint8_t *data, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++) {
        prv_rx[prv_rx_head++ % PRV_QUEUE] = data[i];
    }
}

/* ------------------------------------------------------------------ 4. identity */

void board_device_config(tfa_device_config_t *config)
{
    /* On silicon: from a provisioning record written at the factory (ports/mps2-an386/provision.c is
     * one format). No trusted key: every package is refused with UNKNOWN_KEY, the safe failure. */
    config->hardware_class = 0xFFFFu;
    config->ram_budget = 16u * 1024u;
    config->keys = NULL;
    config->key_count = 0;
    config->max_trial_boots = 3;
}

void board_init(void)
{
    /* On silicon: clocks, the UART and its interrupt, the tick timer. */
    prv_rx_head = prv_rx_tail = 0;
    template_tx_len = 0;
}
