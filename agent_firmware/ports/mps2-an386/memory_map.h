/* mps2-an386 memory map as QEMU 7.2 models it (hw/arm/mps2.c; checked with `info mtree`):
 *   0x00000000  4 MiB  SSRAM1 ("code flash": the ELF is loaded here by -kernel)
 *   0x20000000  4 MiB  SSRAM2/3 (data RAM: .data, .bss, stack)
 *   0x21000000 16 MiB  PSRAM ("mps.ram"): holds the emulated NOR flash and the provisioning record,
 *                      which the harness saves (QMP pmemsave) and restores (-device loader) across
 *                      emulated power cycles. Startup code never touches this region. */
#ifndef MEMORY_MAP_H
#define MEMORY_MAP_H

#define MPS2_UART0_BASE 0x40004000u
#define MPS2_SYSCLK_HZ 25000000u

/* The flash region: the provisioning record chooses the slot size, and the flash the runtime sees is
 * exactly 2 state sectors + 2 slots (TFA_FLASH_SIZE_FOR) from the region's start. */
#define MPS2_FLASH_BASE 0x21000000u
#define MPS2_FLASH_REGION_SIZE (8u * 1024u * 1024u)
#define MPS2_FLASH_SECTOR 4096u
/* Slot size when the provisioning record is missing or invalid. */
#define MPS2_DEFAULT_SLOT_SIZE (512u * 1024u)

/* Provisioning record: one 4 KiB page, far from the flash so that neither can overrun the other. */
#define MPS2_PROVISION_BASE 0x21800000u
#define MPS2_PROVISION_SIZE 4096u

#endif
