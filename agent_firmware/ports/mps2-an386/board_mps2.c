/* mps2-an386 board layer: CMSDK APB UART0 (polled; its RX interrupt only ends a WFI), SysTick as a
 * free-running tick counter, and the fixed PSRAM regions of the emulated flash and the provisioning
 * record (memory_map.h). */
#include "board.h"

#include "memory_map.h"
#include "ram_flash.h"
#include "tfa/runtime.h"

#define REG32(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

/* CMSDK APB UART registers */
#define UART_DATA REG32(MPS2_UART0_BASE + 0x00u)
#define UART_STATE REG32(MPS2_UART0_BASE + 0x04u)
#define UART_CTRL REG32(MPS2_UART0_BASE + 0x08u)
#define UART_INTSTATUS REG32(MPS2_UART0_BASE + 0x0Cu)
#define UART_BAUDDIV REG32(MPS2_UART0_BASE + 0x10u)
#define UART_STATE_TX_FULL 0x1u
#define UART_STATE_RX_FULL 0x2u
#define UART_CTRL_TX_EN 0x1u
#define UART_CTRL_RX_EN 0x2u
#define UART_CTRL_RX_IRQ_EN 0x8u
#define UART_INT_RX 0x2u

/* NVIC: UART0 RX is external interrupt 0 on this board (QEMU hw/arm/mps2.c). */
#define NVIC_ISER0 REG32(0xE000E100u)
#define UART0_RX_IRQ 0u

/* SysTick (ARMv7-M system control space) */
#define SYST_CSR REG32(0xE000E010u)
#define SYST_RVR REG32(0xE000E014u)
#define SYST_CVR REG32(0xE000E018u)
#define SYST_CSR_ENABLE 0x1u
#define SYST_CSR_TICKINT 0x2u
#define SYST_CSR_CORECLK 0x4u
#define SYST_RELOAD 0x00FFFFFFu
#define SCB_ICSR REG32(0xE000ED04u)
#define SCB_ICSR_PENDSTSET (1u << 26)

static volatile uint32_t prv_systick_wraps;
static ram_flash_t prv_flash_state;
static tfa_flash_t prv_flash;

void SysTick_Handler(void);
void SysTick_Handler(void)
{
    prv_systick_wraps++;
}

/* The RX interrupt only wakes the core from board_idle(); bytes are still read by polling. */
void Uart0Rx_Handler(void);
void Uart0Rx_Handler(void)
{
    UART_INTSTATUS = UART_INT_RX;
}

void board_init(void)
{
    /* 115200 baud at 25 MHz; QEMU ignores the rate but refuses a divisor below 16. */
    UART_BAUDDIV = MPS2_SYSCLK_HZ / 115200u;
    UART_CTRL = UART_CTRL_TX_EN | UART_CTRL_RX_EN | UART_CTRL_RX_IRQ_EN;
    NVIC_ISER0 = 1u << UART0_RX_IRQ;

    SYST_RVR = SYST_RELOAD;
    SYST_CVR = 0;
    SYST_CSR = SYST_CSR_ENABLE | SYST_CSR_TICKINT | SYST_CSR_CORECLK;
}

void board_uart_putc(uint8_t c)
{
    while (UART_STATE & UART_STATE_TX_FULL) {
    }
    UART_DATA = c;
}

int board_uart_getc(void)
{
    if ((UART_STATE & UART_STATE_RX_FULL) == 0u) {
        return -1;
    }
    return (int)(UART_DATA & 0xFFu);
}

void board_idle(void)
{
    /* With interrupts masked, a byte arriving between the check and WFI still wakes WFI (the IRQ is
     * pending), and the handler runs once they are unmasked: no lost wake-up. */
    __asm__ volatile("cpsid i" ::: "memory");
    if ((UART_STATE & UART_STATE_RX_FULL) == 0u) {
        __asm__ volatile("wfi" ::: "memory");
    }
    __asm__ volatile("cpsie i" ::: "memory");
}

uint32_t board_ticks(void)
{
    /* The wrap count and the 24-bit counter must be read as one value. Re-read if the handler ran in
     * between; and if the counter reloaded but its interrupt is still pending (interrupts masked, or
     * not yet taken), a high counter value was read after that reload: count the wrap ourselves. */
    uint32_t wraps;
    uint32_t current;
    uint32_t pending;
    do {
        wraps = prv_systick_wraps;
        current = SYST_CVR;
        pending = SCB_ICSR & SCB_ICSR_PENDSTSET;
    } while (wraps != prv_systick_wraps);
    if (pending != 0u && current > SYST_RELOAD / 2u) {
        wraps++;
    }
    return wraps * (SYST_RELOAD + 1u) + (SYST_RELOAD - current);
}

uint32_t board_tick_hz(void)
{
    return MPS2_SYSCLK_HZ;
}

const tfa_flash_t *board_flash_open(uint32_t slot_size)
{
    if (slot_size == 0u) {
        slot_size = MPS2_DEFAULT_SLOT_SIZE;
    }
    if (slot_size % MPS2_FLASH_SECTOR != 0u ||
        slot_size > (MPS2_FLASH_REGION_SIZE - 2u * MPS2_FLASH_SECTOR) / 2u) {
        return 0;
    }
    ram_flash_init(&prv_flash_state, &prv_flash, (uint8_t *)(uintptr_t)MPS2_FLASH_BASE,
                   TFA_FLASH_SIZE_FOR(MPS2_FLASH_SECTOR, slot_size), MPS2_FLASH_SECTOR);
    return &prv_flash;
}

const uint8_t *board_provision_record(uint32_t *len)
{
    *len = MPS2_PROVISION_SIZE;
    return (const uint8_t *)(uintptr_t)MPS2_PROVISION_BASE;
}
