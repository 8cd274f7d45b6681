/*
 * Additions to board.h shared by all boards that are not part of its fixed API:
 * memory placement attributes, the exit code of a fault, and the hooks the generic
 * startup code (boards/common/startup.c) expects from a board.
 */
#ifndef TREC_BOARD_EXTRA_H
#define TREC_BOARD_EXTRA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Exit code of a firmware that took a fault (HardFault, unexpected interrupt) or whose
 * stack overflowed. The runner (trec_tflm.qemu) also recognises the printed marker
 * BOARD_FAULT_MARKER and raises QemuHardFault. 134 = 128 + SIGABRT, as a shell shows it. */
#define BOARD_FAULT_EXIT_CODE 134
#define BOARD_FAULT_MARKER "*** HARD FAULT"
#define BOARD_STACK_OVERFLOW_MARKER "*** STACK OVERFLOW"

/* Place a zero-initialised object in core-coupled memory (DISCO_F469NI's 64 KB CCM; on
 * qemu_m4 a separate 64 KB region models it). On boards without CCM the object lands in
 * ordinary RAM. CCM is data-only on the STM32F4 (no code, no DMA). Example:
 *   static int8_t arena[48 * 1024] BOARD_CCM_BSS;                                        */
#define BOARD_CCM_BSS __attribute__((section(".ccm_bss"), aligned(8)))

/* Linker-script symbols (boards/common/sections.ld) for code that wants to report memory. */
extern uint32_t __heap_start[];  /* first byte of the heap (after .bss)            */
extern uint32_t __stack_limit[]; /* lowest byte of the main stack = end of heap     */
extern uint32_t __stack_top[];   /* initial main stack pointer                      */

/* For board implementations: call from board_exit(code) and exit with what it returns.
 * Flushes stdio (when the firmware uses it), then checks the canary below the main stack:
 * when it was overwritten it prints BOARD_STACK_OVERFLOW_MARKER and returns
 * BOARD_FAULT_EXIT_CODE, else it returns code. */
int board_exit_check(int code);

/* Exception entry that reports the exception (number, stacked pc/lr, fault status
 * registers) on the console and exits with BOARD_FAULT_EXIT_CODE. Use it in vector tables
 * for every exception or IRQ the firmware does not expect. */
void board_fault_entry(void);

/* Bytes of heap still available to malloc (between the current break and the stack). */
uint32_t board_heap_free(void);

#ifdef __cplusplus
}
#endif

#endif /* TREC_BOARD_EXTRA_H */
