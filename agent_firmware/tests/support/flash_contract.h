/* The storage contract of tfa/flash.h and docs/PORTING.md, checked against any tfa_flash_t. Freestanding
 * (no stdio, no heap): a new board can run it on the target too. It erases and programs the first and
 * the last sector: run it on a flash holding nothing you need. */
#ifndef FLASH_CONTRACT_H
#define FLASH_CONTRACT_H

#include "tfa/flash.h"

/* 0 when the flash keeps the contract; else -1 and *why names the first broken rule. */
int flash_contract_check(const tfa_flash_t *f, const char **why);

#endif
