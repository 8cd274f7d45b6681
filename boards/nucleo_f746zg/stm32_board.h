/*
 * NUCLEO_F746ZG (STM32F746ZG): the device registers, the clock plan and the names
 * boards/common/stm32_common.c needs where the STM32 families differ (see stm32_common.h).
 */
#ifndef TREC_STM32_BOARD_H
#define TREC_STM32_BOARD_H

#include "clock_config.h"
#include "stm32f746_regs.h"

#define STM32_IRQ_COUNT F746_IRQ_COUNT
#define STM32_IRQ_USART3 F746_IRQ_USART3
#define STM32_IRQ_TIM6_DAC F746_IRQ_TIM6_DAC

/* USART v2 (F7): ISR, TDR */
#define STM32_USART3_TX_EMPTY() (USART3_ISR & USART_ISR_TXE)
#define STM32_USART3_TX_DONE() (USART3_ISR & USART_ISR_TC)
#define STM32_USART3_WRITE(byte) (USART3_TDR = (byte))

#define STM32_PWR_CR PWR_CR1
#define STM32_PWR_CSR PWR_CSR1
#define STM32_PWR_CR_VOS_MASK PWR_CR1_VOS_MASK
#define STM32_PWR_CR_VOS_SCALE1 PWR_CR1_VOS_SCALE1
#define STM32_PWR_CR_ODEN PWR_CR1_ODEN
#define STM32_PWR_CR_ODSWEN PWR_CR1_ODSWEN
#define STM32_PWR_CSR_ODRDY PWR_CSR1_ODRDY
#define STM32_PWR_CSR_ODSWRDY PWR_CSR1_ODSWRDY

#define STM32_DWT_UNLOCK 1 /* the Cortex-M7's DWT is locked against software writes */

#endif /* TREC_STM32_BOARD_H */
