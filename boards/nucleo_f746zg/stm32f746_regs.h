/*
 * The few STM32F746 peripheral registers the NUCLEO_F746ZG board code touches, written for
 * trec-tflm from RM0385 (STM32F75xxx/F74xxx reference manual): base addresses from the memory
 * map (memory map), offsets and bit positions from the register chapters cited below.
 */
#ifndef STM32F746_REGS_H
#define STM32F746_REGS_H

#include <stdint.h>

#define F7_REG(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

/* RCC @ 0x40023800 (RCC chapter, register map) */
#define RCC_BASE 0x40023800u
#define RCC_CR F7_REG(RCC_BASE + 0x00u)
#define RCC_PLLCFGR F7_REG(RCC_BASE + 0x04u)
#define RCC_CFGR F7_REG(RCC_BASE + 0x08u)
#define RCC_CIR F7_REG(RCC_BASE + 0x0Cu)
#define RCC_AHB1ENR F7_REG(RCC_BASE + 0x30u)
#define RCC_APB1ENR F7_REG(RCC_BASE + 0x40u)
#define RCC_APB1RSTR F7_REG(RCC_BASE + 0x20u)
#define RCC_DCKCFGR2 F7_REG(RCC_BASE + 0x90u)
#define RCC_CR_HSION (1u << 0)
#define RCC_CR_HSIRDY (1u << 1)
#define RCC_CR_HSEON (1u << 16)
#define RCC_CR_HSERDY (1u << 17)
#define RCC_CR_HSEBYP (1u << 18)
#define RCC_CR_PLLON (1u << 24)
#define RCC_CR_PLLRDY (1u << 25)
#define RCC_CFGR_SW_MASK 3u
#define RCC_CFGR_SWS_MASK (3u << 2)
#define RCC_AHB1ENR_GPIOBEN (1u << 1)
#define RCC_AHB1ENR_GPIODEN (1u << 3)
#define RCC_APB1ENR_TIM6EN (1u << 4)
#define RCC_APB1ENR_USART3EN (1u << 18)
#define RCC_APB1ENR_PWREN (1u << 28)
#define RCC_DCKCFGR2_USART3SEL_MASK (3u << 4) /* 00: PCLK1 */

/* PWR @ 0x40007000 (PWR chapter) */
#define PWR_BASE 0x40007000u
#define PWR_CR1 F7_REG(PWR_BASE + 0x00u)
#define PWR_CSR1 F7_REG(PWR_BASE + 0x04u)
#define PWR_CR1_VOS_MASK (3u << 14)
#define PWR_CR1_VOS_SCALE1 (3u << 14)
#define PWR_CR1_ODEN (1u << 16)
#define PWR_CR1_ODSWEN (1u << 17)
#define PWR_CSR1_ODRDY (1u << 16)
#define PWR_CSR1_ODSWRDY (1u << 17)

/* Embedded flash interface @ 0x40023C00 (embedded flash chapter, FLASH_ACR) */
#define FLASH_BASE_REG 0x40023C00u
#define FLASH_ACR F7_REG(FLASH_BASE_REG + 0x00u)
#define FLASH_ACR_LATENCY_MASK 0xFu
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ARTEN (1u << 9)
#define FLASH_ACR_ARTRST (1u << 11)

/* GPIO ports @ 0x40020000 + 0x400 * port (A=0 ... K=10) (GPIO chapter) */
#define GPIO_BASE(port) (0x40020000u + 0x400u * (uint32_t)(port))
#define GPIO_MODER(port) F7_REG(GPIO_BASE(port) + 0x00u)
#define GPIO_OTYPER(port) F7_REG(GPIO_BASE(port) + 0x04u)
#define GPIO_OSPEEDR(port) F7_REG(GPIO_BASE(port) + 0x08u)
#define GPIO_PUPDR(port) F7_REG(GPIO_BASE(port) + 0x0Cu)
#define GPIO_ODR(port) F7_REG(GPIO_BASE(port) + 0x14u)
#define GPIO_BSRR(port) F7_REG(GPIO_BASE(port) + 0x18u)
#define GPIO_AFRL(port) F7_REG(GPIO_BASE(port) + 0x20u)
#define GPIO_AFRH(port) F7_REG(GPIO_BASE(port) + 0x24u)
#define GPIO_PORT_B 1u
#define GPIO_PORT_D 3u
#define GPIO_MODE_OUTPUT 1u
#define GPIO_MODE_AF 2u

/* USART3 @ 0x40004800 (USART chapter; the F7 USART with ISR/ICR/RDR/TDR) */
#define USART3_BASE 0x40004800u
#define USART3_CR1 F7_REG(USART3_BASE + 0x00u)
#define USART3_CR2 F7_REG(USART3_BASE + 0x04u)
#define USART3_CR3 F7_REG(USART3_BASE + 0x08u)
#define USART3_BRR F7_REG(USART3_BASE + 0x0Cu)
#define USART3_ISR F7_REG(USART3_BASE + 0x1Cu)
#define USART3_ICR F7_REG(USART3_BASE + 0x20u)
#define USART3_RDR F7_REG(USART3_BASE + 0x24u)
#define USART3_TDR F7_REG(USART3_BASE + 0x28u)
#define USART_CR1_UE (1u << 0)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART_CR1_RXNEIE (1u << 5)
#define USART_ISR_PE (1u << 0)
#define USART_ISR_FE (1u << 1)
#define USART_ISR_NF (1u << 2)
#define USART_ISR_ORE (1u << 3)
#define USART_ISR_RXNE (1u << 5)
#define USART_ISR_TC (1u << 6)
#define USART_ISR_TXE (1u << 7)
#define USART_ICR_ERRORS (USART_ISR_PE | USART_ISR_FE | USART_ISR_NF | USART_ISR_ORE) /* xxCF */

/* TIM6 basic timer @ 0x40001000 (basic timers TIM6/TIM7 chapter) */
#define TIM6_BASE 0x40001000u
#define TIM6_CR1 F7_REG(TIM6_BASE + 0x00u)
#define TIM6_DIER F7_REG(TIM6_BASE + 0x0Cu)
#define TIM6_SR F7_REG(TIM6_BASE + 0x10u)
#define TIM6_EGR F7_REG(TIM6_BASE + 0x14u)
#define TIM6_PSC F7_REG(TIM6_BASE + 0x28u)
#define TIM6_ARR F7_REG(TIM6_BASE + 0x2Cu)
#define TIM_CR1_CEN (1u << 0)
#define TIM_CR1_URS (1u << 2)
#define TIM_DIER_UIE (1u << 0)
#define TIM_SR_UIF (1u << 0)
#define TIM_EGR_UG (1u << 0)

/* Interrupt positions (NVIC chapter, vector table) and count for STM32F74x/F75x */
#define F746_IRQ_USART3 39
#define F746_IRQ_TIM6_DAC 54
#define F746_IRQ_COUNT 98 /* positions 0..97 (SPDIF_RX is the last) */

/* Cortex-M7 cache maintenance (ARMv7-M ARM, B3.2; Cortex-M7 TRM) */
#define CM7_CCSIDR F7_REG(0xE000ED80u)
#define CM7_CSSELR F7_REG(0xE000ED84u)
#define CM7_ICIALLU F7_REG(0xE000EF50u)
#define CM7_DCISW F7_REG(0xE000EF60u)
#define CM7_CCR_DC (1u << 16)
#define CM7_CCR_IC (1u << 17)

/* Memory map (memory map) */
#define F746_FLASH_AXIM 0x08000000u
#define F746_FLASH_ITCM 0x00200000u

#endif /* STM32F746_REGS_H */
