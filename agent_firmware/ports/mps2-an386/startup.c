/* Reset handler and vector table for the Cortex-M4: copy .data, zero .bss, run main. */
#include <stdint.h>
#include <string.h>

extern uint32_t __data_load[], __data_start[], __data_end[];
extern uint32_t __bss_start[], __bss_end[];
extern uint32_t __stack_top[];

int main(void);
void Reset_Handler(void);
void SysTick_Handler(void);
void Uart0Rx_Handler(void);
static void prv_fault_handler(void);

void Reset_Handler(void)
{
    /* Grant full access to the FPU (CP10, CP11) before any float instruction: the build uses the
     * Cortex-M4F's single-precision FPU (-mfloat-abi=hard -mfpu=fpv4-sp-d16). */
    *(volatile uint32_t *)(uintptr_t)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    memcpy(__data_start, __data_load, (size_t)((uintptr_t)__data_end - (uintptr_t)__data_start));
    memset(__bss_start, 0, (size_t)((uintptr_t)__bss_end - (uintptr_t)__bss_start));
    (void)main();
    for (;;) {
    }
}

/* A fault stops the device where a debugger (or the harness's timeout) can see it. */
static void prv_fault_handler(void)
{
    for (;;) {
    }
}

/* Core exceptions 0..15 and external interrupt 0 (UART0 RX, which only wakes the core from WFI). */
__attribute__((section(".isr_vector"), used)) static void (*const prv_vectors[17])(void) = {
    (void (*)(void))(uintptr_t)__stack_top,
    Reset_Handler,
    prv_fault_handler, /* NMI */
    prv_fault_handler, /* HardFault */
    prv_fault_handler, /* MemManage */
    prv_fault_handler, /* BusFault */
    prv_fault_handler, /* UsageFault */
    0, 0, 0, 0,
    prv_fault_handler, /* SVCall */
    prv_fault_handler, /* DebugMon */
    0,
    prv_fault_handler, /* PendSV */
    SysTick_Handler,
    Uart0Rx_Handler, /* IRQ 0 */
};
