/*
 * DISCO_F469NI (STM32F469NIH6): the device registers, the clock plan and the names
 * boards/common/stm32_common.c needs where the STM32 families differ (see stm32_common.h).
 */
#ifndef TREC_STM32_BOARD_H
#define TREC_STM32_BOARD_H

#include "clock_config.h"
#include "stm32f469_regs.h"

#define STM32_IRQ_COUNT F469_IRQ_COUNT
#define STM32_IRQ_USART3 F469_IRQ_USART3
#define STM32_IRQ_TIM6_DAC F469_IRQ_TIM6_DAC

/* USART v1 (F4): SR, DR */
#define STM32_USART3_TX_EMPTY() (USART3_SR & USART_SR_TXE)
#define STM32_USART3_TX_DONE() (USART3_SR & USART_SR_TC)
#define STM32_USART3_WRITE(byte) (USART3_DR = (byte))

#define STM32_PWR_CR PWR_CR
#define STM32_PWR_CSR PWR_CSR
#define STM32_PWR_CR_VOS_MASK PWR_CR_VOS_MASK
#define STM32_PWR_CR_VOS_SCALE1 PWR_CR_VOS_SCALE1
#define STM32_PWR_CR_ODEN PWR_CR_ODEN
#define STM32_PWR_CR_ODSWEN PWR_CR_ODSWEN
#define STM32_PWR_CSR_ODRDY PWR_CSR_ODRDY
#define STM32_PWR_CSR_ODSWRDY PWR_CSR_ODSWRDY

#define STM32_DWT_UNLOCK 0 /* the Cortex-M4's DWT needs no lock-access unlock */

#endif /* TREC_STM32_BOARD_H */
