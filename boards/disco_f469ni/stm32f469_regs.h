/*
 * The few STM32F469 peripheral registers the DISCO_F469NI board code touches, written for
 * trec-tflm from RM0386 (STM32F469xx/F479xx reference manual): base addresses from the memory
 * map, offsets and bit positions from the register chapters cited below.
 */
#ifndef STM32F469_REGS_H
#define STM32F469_REGS_H

#include <stdint.h>

#define F4_REG(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

/* RCC @ 0x40023800 (RCC chapter, register map) */
#define RCC_BASE 0x40023800u
#define RCC_CR F4_REG(RCC_BASE + 0x00u)
#define RCC_PLLCFGR F4_REG(RCC_BASE + 0x04u)
#define RCC_CFGR F4_REG(RCC_BASE + 0x08u)
#define RCC_CIR F4_REG(RCC_BASE + 0x0Cu)
#define RCC_AHB1ENR F4_REG(RCC_BASE + 0x30u)
#define RCC_APB1ENR F4_REG(RCC_BASE + 0x40u)
#define RCC_APB2ENR F4_REG(RCC_BASE + 0x44u)
#define RCC_APB2ENR_TIM11EN (1u << 18)
#define RCC_CFGR_RTCPRE_POS 16u /* [20:16] HSE division for HSE_RTC: 2..31 */
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
#define RCC_AHB1ENR_GPIOGEN (1u << 6)
#define RCC_AHB1ENR_GPIOKEN (1u << 10)
#define RCC_APB1ENR_TIM6EN (1u << 4)
#define RCC_APB1ENR_USART3EN (1u << 18)
#define RCC_APB1ENR_PWREN (1u << 28)

/* PWR @ 0x40007000 (PWR chapter) */
#define PWR_BASE 0x40007000u
#define PWR_CR F4_REG(PWR_BASE + 0x00u)
#define PWR_CSR F4_REG(PWR_BASE + 0x04u)
#define PWR_CR_VOS_MASK (3u << 14)
#define PWR_CR_VOS_SCALE1 (3u << 14)
#define PWR_CR_ODEN (1u << 16)
#define PWR_CR_ODSWEN (1u << 17)
#define PWR_CSR_ODRDY (1u << 16)
#define PWR_CSR_ODSWRDY (1u << 17)

/* Embedded flash interface @ 0x40023C00 (embedded flash chapter, FLASH_ACR): ART = instruction cache + data cache + prefetch */
#define FLASH_BASE_REG 0x40023C00u
#define FLASH_ACR F4_REG(FLASH_BASE_REG + 0x00u)
#define FLASH_ACR_LATENCY_MASK 0xFu
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ICEN (1u << 9)
#define FLASH_ACR_DCEN (1u << 10)
#define FLASH_ACR_ICRST (1u << 11)
#define FLASH_ACR_DCRST (1u << 12)

/* GPIO ports @ 0x40020000 + 0x400 * port (A=0 ... K=10) (GPIO chapter) */
#define GPIO_BASE(port) (0x40020000u + 0x400u * (uint32_t)(port))
#define GPIO_MODER(port) F4_REG(GPIO_BASE(port) + 0x00u)
#define GPIO_OTYPER(port) F4_REG(GPIO_BASE(port) + 0x04u)
#define GPIO_OSPEEDR(port) F4_REG(GPIO_BASE(port) + 0x08u)
#define GPIO_PUPDR(port) F4_REG(GPIO_BASE(port) + 0x0Cu)
#define GPIO_ODR(port) F4_REG(GPIO_BASE(port) + 0x14u)
#define GPIO_BSRR(port) F4_REG(GPIO_BASE(port) + 0x18u)
#define GPIO_AFRL(port) F4_REG(GPIO_BASE(port) + 0x20u)
#define GPIO_AFRH(port) F4_REG(GPIO_BASE(port) + 0x24u)
#define GPIO_PORT_B 1u
#define GPIO_PORT_D 3u
#define GPIO_PORT_G 6u
#define GPIO_PORT_K 10u
#define GPIO_MODE_OUTPUT 1u
#define GPIO_MODE_AF 2u

/* USART3 @ 0x40004800 (USART chapter; the F4 USART with SR/DR) */
#define USART3_BASE 0x40004800u
#define USART3_SR F4_REG(USART3_BASE + 0x00u)
#define USART3_DR F4_REG(USART3_BASE + 0x04u)
#define USART3_BRR F4_REG(USART3_BASE + 0x08u)
#define USART3_CR1 F4_REG(USART3_BASE + 0x0Cu)
#define USART3_CR2 F4_REG(USART3_BASE + 0x10u)
#define USART3_CR3 F4_REG(USART3_BASE + 0x14u)
#define USART_SR_ORE (1u << 3)
#define USART_SR_RXNE (1u << 5)
#define USART_SR_TC (1u << 6)
#define USART_SR_TXE (1u << 7)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART_CR1_RXNEIE (1u << 5)
#define USART_CR1_UE (1u << 13)

/* TIM11 @ 0x40014800 (TIM10/11/13/14 chapter): input capture of HSE_RTC to measure HSE */
#define TIM11_BASE 0x40014800u
#define TIM11_CR1 F4_REG(TIM11_BASE + 0x00u)
#define TIM11_SR F4_REG(TIM11_BASE + 0x10u)
#define TIM11_EGR F4_REG(TIM11_BASE + 0x14u)
#define TIM11_CCMR1 F4_REG(TIM11_BASE + 0x18u)
#define TIM11_CCER F4_REG(TIM11_BASE + 0x20u)
#define TIM11_PSC F4_REG(TIM11_BASE + 0x28u)
#define TIM11_ARR F4_REG(TIM11_BASE + 0x2Cu)
#define TIM11_CCR1 F4_REG(TIM11_BASE + 0x34u)
#define TIM11_OR F4_REG(TIM11_BASE + 0x50u)
#define TIM11_OR_TI1_HSE_RTC 3u           /* TI1_RMP = 11: channel 1 input = HSE_RTC */
#define TIM11_CCMR1_IC1_TI1_DIV8 (1u | (3u << 2)) /* CC1S = 01 (TI1), IC1PSC = 11 (every 8th edge) */
#define TIM11_CCER_CC1E (1u << 0)
#define TIM11_SR_CC1IF (1u << 1)

/* TIM6 basic timer @ 0x40001000 (basic timers TIM6/TIM7 chapter) */
#define TIM6_BASE 0x40001000u
#define TIM6_CR1 F4_REG(TIM6_BASE + 0x00u)
#define TIM6_DIER F4_REG(TIM6_BASE + 0x0Cu)
#define TIM6_SR F4_REG(TIM6_BASE + 0x10u)
#define TIM6_EGR F4_REG(TIM6_BASE + 0x14u)
#define TIM6_PSC F4_REG(TIM6_BASE + 0x28u)
#define TIM6_ARR F4_REG(TIM6_BASE + 0x2Cu)
#define TIM_CR1_CEN (1u << 0)
#define TIM_CR1_URS (1u << 2)
#define TIM_DIER_UIE (1u << 0)
#define TIM_EGR_UG (1u << 0)

/* Interrupt positions (NVIC chapter, vector table) and count for STM32F469/F479 */
#define F469_IRQ_USART3 39
#define F469_IRQ_TIM6_DAC 54
#define F469_IRQ_COUNT 93 /* positions 0..92 (QUADSPI 91, DSI 92) */

#endif /* STM32F469_REGS_H */
