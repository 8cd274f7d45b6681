/*
 * Minimal Cortex-M (ARMv7E-M: M4 / M7) system register definitions used by the board code.
 * Written for trec-tflm from the ARMv7-M Architecture Reference Manual; intentionally tiny,
 * so board code does not depend on CMSIS-Core.
 */
#ifndef TREC_CORTEX_M_H
#define TREC_CORTEX_M_H

#include <stdint.h>

#define CM_REG32(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

/* System Control Block */
#define CM_SCB_ICSR   CM_REG32(0xE000ED04u) /* Interrupt Control and State */
#define CM_SCB_VTOR   CM_REG32(0xE000ED08u) /* Vector Table Offset */
#define CM_SCB_AIRCR  CM_REG32(0xE000ED0Cu)
#define CM_SCB_CCR    CM_REG32(0xE000ED14u) /* Configuration and Control */
#define CM_SCB_SHCSR  CM_REG32(0xE000ED24u)
#define CM_SCB_CFSR   CM_REG32(0xE000ED28u) /* Configurable Fault Status (MMFSR|BFSR|UFSR) */
#define CM_SCB_HFSR   CM_REG32(0xE000ED2Cu) /* HardFault Status */
#define CM_SCB_MMFAR  CM_REG32(0xE000ED34u) /* MemManage Fault Address */
#define CM_SCB_BFAR   CM_REG32(0xE000ED38u) /* BusFault Address */
#define CM_SCB_CPACR  CM_REG32(0xE000ED88u) /* Coprocessor Access Control */

/* CFSR bits that say whether MMFAR / BFAR hold a valid address */
#define CM_CFSR_MMARVALID (1u << 7)
#define CM_CFSR_BFARVALID (1u << 15)

/* Floating-point context control */
#define CM_FPU_FPCCR  CM_REG32(0xE000EF34u)

/* NVIC: set-enable / clear-enable / clear-pending for IRQ n */
#define CM_NVIC_ISER(n) CM_REG32(0xE000E100u + 4u * ((uint32_t)(n) >> 5))
#define CM_NVIC_ICER(n) CM_REG32(0xE000E180u + 4u * ((uint32_t)(n) >> 5))
#define CM_NVIC_ICPR(n) CM_REG32(0xE000E280u + 4u * ((uint32_t)(n) >> 5))
#define CM_NVIC_BIT(n)  (1u << ((uint32_t)(n) & 31u))

/* Data Watchpoint and Trace: cycle counter (real silicon; reads 0 under QEMU) */
#define CM_DEMCR      CM_REG32(0xE000EDFCu)
#define CM_DWT_CTRL   CM_REG32(0xE0001000u)
#define CM_DWT_CYCCNT CM_REG32(0xE0001004u)
#define CM_DWT_LAR    CM_REG32(0xE0001FB0u)

static inline uint32_t cm_get_primask(void) {
  uint32_t r;
  __asm__ volatile("mrs %0, primask" : "=r"(r));
  return r;
}
static inline void cm_set_primask(uint32_t v) { __asm__ volatile("msr primask, %0" : : "r"(v) : "memory"); }
static inline void cm_disable_irq(void) { __asm__ volatile("cpsid i" : : : "memory"); }
static inline void cm_enable_irq(void) { __asm__ volatile("cpsie i" : : : "memory"); }
static inline void cm_dsb(void) { __asm__ volatile("dsb 0xF" : : : "memory"); }
static inline void cm_isb(void) { __asm__ volatile("isb 0xF" : : : "memory"); }

#endif /* TREC_CORTEX_M_H */
