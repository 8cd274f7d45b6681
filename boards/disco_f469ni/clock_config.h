/*
 * DISCO_F469NI clock plan (STM32F469NIH6, RM0386 "Reset and clock control", DS11189 limits).
 * Pure constants and bit encodings: the firmware (board.c) and a host unit test
 * (tests/test_board_builds.py) include this same file.
 *
 *   HSE 8 MHz crystal (X2 on the 32F469IDISCOVERY; 25 MHz on revision A boards)  or  HSE
 *   bypass  or  HSI 16 MHz (fallbacks). The HSE frequency is measured against HSI at boot
 *   (clk_hse_from_capture, clk_classify_hse) unless BOARD_HSE_HZ selects it.
 *     / M (4 resp. 8)  = 2 MHz VCO input  (allowed 0.95..2.1 MHz; 2 MHz recommended for jitter)
 *       (25 MHz: M 25 = 1 MHz, N 360: the same VCO; clk_plan_for)
 *     * N 180          = 360 MHz VCO      (allowed 100..432 MHz, N 50..432)
 *     / P 2            = 180 MHz SYSCLK   (F469 maximum, needs scale 1 + over-drive)
 *     / Q 8            = 45 MHz PLL48CK   (<= 48 MHz; USB/SDIO are not used here)
 *     PLLR left at its reset value (DSI/I2S only)
 *   AHB /1 = 180 MHz, APB1 /4 = 45 MHz (max 45), APB2 /2 = 90 MHz (max 90)
 *   APB1 timers x2 = 90 MHz (prescaler != 1, TIMPRE = 0)
 *   Flash: 5 wait states (2.7..3.6 V: one per 30 MHz started, 150 < 180 <= 180)
 *   USART3 clock = PCLK1
 */
#ifndef DISCO_F469NI_CLOCK_CONFIG_H
#define DISCO_F469NI_CLOCK_CONFIG_H

#include <stdint.h>

#define CLK_HSE_HZ 8000000u
#define CLK_HSI_HZ 16000000u
#define CLK_PLL_M_HSE 4u
#define CLK_PLL_M_HSI 8u
#define CLK_PLL_N 180u
#define CLK_PLL_P 2u
#define CLK_PLL_Q 8u

#define CLK_VCO_IN_HZ (CLK_HSE_HZ / CLK_PLL_M_HSE)
#define CLK_VCO_OUT_HZ (CLK_VCO_IN_HZ * CLK_PLL_N)
#define CLK_SYSCLK_HZ (CLK_VCO_OUT_HZ / CLK_PLL_P)
#define CLK_PLL48_HZ (CLK_VCO_OUT_HZ / CLK_PLL_Q)

#define CLK_AHB_DIV 1u
#define CLK_APB1_DIV 4u
#define CLK_APB2_DIV 2u
#define CLK_HCLK_HZ (CLK_SYSCLK_HZ / CLK_AHB_DIV)
#define CLK_PCLK1_HZ (CLK_HCLK_HZ / CLK_APB1_DIV)
#define CLK_PCLK2_HZ (CLK_HCLK_HZ / CLK_APB2_DIV)
#define CLK_TIMCLK1_HZ (CLK_APB1_DIV == 1u ? CLK_PCLK1_HZ : 2u * CLK_PCLK1_HZ)

/* Device limits (DS11189 / RM0386, VOS scale 1 with over-drive, VDD 2.7..3.6 V). */
#define CLK_MAX_SYSCLK_HZ 180000000u
#define CLK_MAX_PCLK1_HZ 45000000u
#define CLK_MAX_PCLK2_HZ 90000000u
#define CLK_FLASH_WS_STEP_HZ 30000000u

#define CLK_FLASH_WS_FOR(hz) (((hz) + CLK_FLASH_WS_STEP_HZ - 1u) / CLK_FLASH_WS_STEP_HZ - 1u)
#define CLK_FLASH_WS 5u

#define CLK_CONSOLE_BAUD 115200u
/* USART, 16x oversampling: BRR = mantissa<<4 | fraction = f_ck / baud, rounded
 * (45e6 / 115200 = 390.6 -> 391 = 24 + 7/16). */
#define CLK_USART3_BRR ((CLK_PCLK1_HZ + CLK_CONSOLE_BAUD / 2u) / CLK_CONSOLE_BAUD)

#define CLK_TIM6_PSC (CLK_TIMCLK1_HZ / 10000u - 1u)
#define CLK_TIM6_ARR (10000u - 1u)

/* ---- RCC bit encodings (RM0386, RCC register map) ---- */
#define RCC_PLLCFGR_PLLM_POS 0u    /* [5:0]   */
#define RCC_PLLCFGR_PLLN_POS 6u    /* [14:6]  */
#define RCC_PLLCFGR_PLLP_POS 16u   /* [17:16] 00:/2 01:/4 10:/6 11:/8 */
#define RCC_PLLCFGR_PLLSRC (1u << 22) /* 1: HSE */
#define RCC_PLLCFGR_PLLQ_POS 24u   /* [27:24] */
#define RCC_PLLCFGR_FIELDS (0x3Fu | (0x1FFu << 6) | (3u << 16) | (1u << 22) | (0xFu << 24))

static inline uint32_t clk_pllcfgr(uint32_t old, uint32_t m, uint32_t n, uint32_t p, uint32_t q,
                                   int src_hse)
{
    return (old & ~RCC_PLLCFGR_FIELDS) | (m << RCC_PLLCFGR_PLLM_POS) | (n << RCC_PLLCFGR_PLLN_POS) |
           (((p / 2u) - 1u) << RCC_PLLCFGR_PLLP_POS) | (src_hse ? RCC_PLLCFGR_PLLSRC : 0u) |
           (q << RCC_PLLCFGR_PLLQ_POS);
}

static inline uint32_t clk_ppre_bits(uint32_t div)
{
    return div == 1u ? 0u : div == 2u ? 4u : div == 4u ? 5u : div == 8u ? 6u : 7u;
}

#define RCC_CFGR_SW_PLL 2u
#define RCC_CFGR_SWS_POS 2u
#define RCC_CFGR_HPRE_POS 4u
#define RCC_CFGR_PPRE1_POS 10u
#define RCC_CFGR_PPRE2_POS 13u

static inline uint32_t clk_cfgr_prescalers(void)
{
    return (0u << RCC_CFGR_HPRE_POS) | (clk_ppre_bits(CLK_APB1_DIV) << RCC_CFGR_PPRE1_POS) |
           (clk_ppre_bits(CLK_APB2_DIV) << RCC_CFGR_PPRE2_POS);
}

/* ---- the PLL plan for any source: 8 MHz (revision B+), 25 MHz (revision A), HSI 16 MHz ---- */
#define CLK_HSE_REV_A_HZ 25000000u
#ifndef BOARD_HSE_HZ
#define BOARD_HSE_HZ 0u /* 0: measure the HSE against HSI at boot; else its frequency in Hz */
#endif

struct clk_plan {
    uint32_t m, n, p, q;
    uint32_t vco_in_hz, vco_hz, sysclk_hz, pll48_hz;
    int ok; /* every value within the manual's ranges and SYSCLK = CLK_SYSCLK_HZ */
};

/* M so the VCO input is 2 MHz (or 1 MHz when the source is not a multiple of 2 MHz), N for the
 * same 360 MHz VCO, P 2, Q 8: 180 MHz SYSCLK from any whole-MHz source the PLL can divide. */
static inline struct clk_plan clk_plan_for(uint32_t src_hz)
{
    struct clk_plan pl = {0, 0, CLK_PLL_P, CLK_PLL_Q, 0, 0, 0, 0, 0};
    if (src_hz != 0u && src_hz % 2000000u == 0u) {
        pl.m = src_hz / 2000000u;
    } else if (src_hz != 0u && src_hz % 1000000u == 0u) {
        pl.m = src_hz / 1000000u;
    } else {
        return pl;
    }
    if (pl.m < 2u || pl.m > 63u) {
        return pl;
    }
    pl.vco_in_hz = src_hz / pl.m;
    pl.n = CLK_VCO_OUT_HZ / pl.vco_in_hz;
    pl.vco_hz = pl.vco_in_hz * pl.n;
    pl.sysclk_hz = pl.vco_hz / pl.p;
    pl.pll48_hz = pl.vco_hz / pl.q;
    pl.ok = pl.vco_in_hz >= 950000u && pl.vco_in_hz <= 2100000u && pl.n >= 50u && pl.n <= 432u &&
            pl.vco_hz >= 100000000u && pl.vco_hz <= 432000000u && pl.pll48_hz <= 48000000u &&
            pl.sysclk_hz == CLK_SYSCLK_HZ;
    return pl;
}

/* HSE measured against HSI: TIM11, clocked at HSI 16 MHz (PCLK2 /1 while still on HSI),
 * captures every 8th rising edge of HSE_RTC = HSE / CLK_MEASURE_RTCPRE; `ticks` timer ticks
 * elapse over `intervals` such 8-edge intervals. */
#define CLK_MEASURE_RTCPRE 31u
#define CLK_MEASURE_EDGES 8u
#define CLK_MEASURE_INTERVALS 8u

static inline uint32_t clk_hse_from_capture(uint32_t ticks, uint32_t intervals, uint32_t timer_hz)
{
    if (ticks == 0u) {
        return 0u;
    }
    return (uint32_t)(((uint64_t)timer_hz * intervals * CLK_MEASURE_EDGES * CLK_MEASURE_RTCPRE +
                       ticks / 2u) / ticks);
}

/* The crystal a measurement belongs to: 8 or 25 MHz when within +-10 % (HSI is +-1 % at 25 C and a
 * few % over temperature; the two crystals are 3x apart), else 0 (use HSI). */
static inline uint32_t clk_classify_hse(uint32_t measured_hz)
{
    static const uint32_t known[] = {CLK_HSE_HZ, CLK_HSE_REV_A_HZ};
    for (unsigned i = 0; i < sizeof known / sizeof known[0]; i++) {
        uint64_t lo = (uint64_t)known[i] * 9u / 10u, hi = (uint64_t)known[i] * 11u / 10u;
        if (measured_hz >= lo && measured_hz <= hi) {
            return known[i];
        }
    }
    return 0u;
}

_Static_assert(CLK_HSE_HZ / CLK_PLL_M_HSE == CLK_HSI_HZ / CLK_PLL_M_HSI, "HSE and HSI paths differ");
_Static_assert(CLK_PLL_M_HSE >= 2u && CLK_PLL_M_HSE <= 63u && CLK_PLL_M_HSI <= 63u, "PLLM 2..63");
_Static_assert(CLK_VCO_IN_HZ >= 950000u && CLK_VCO_IN_HZ <= 2100000u, "VCO input 0.95..2.1 MHz");
_Static_assert(CLK_PLL_N >= 50u && CLK_PLL_N <= 432u, "PLLN 50..432");
_Static_assert(CLK_VCO_OUT_HZ >= 100000000u && CLK_VCO_OUT_HZ <= 432000000u, "VCO 100..432 MHz");
_Static_assert(CLK_PLL_P == 2u || CLK_PLL_P == 4u || CLK_PLL_P == 6u || CLK_PLL_P == 8u, "PLLP");
_Static_assert(CLK_PLL_Q >= 2u && CLK_PLL_Q <= 15u && CLK_PLL48_HZ <= 48000000u, "PLLQ");
_Static_assert(CLK_SYSCLK_HZ == 180000000u && CLK_SYSCLK_HZ <= CLK_MAX_SYSCLK_HZ, "180 MHz");
_Static_assert(CLK_PCLK1_HZ <= CLK_MAX_PCLK1_HZ && CLK_PCLK2_HZ <= CLK_MAX_PCLK2_HZ, "APB limits");
_Static_assert(CLK_FLASH_WS == CLK_FLASH_WS_FOR(CLK_HCLK_HZ), "flash wait states for HCLK");
_Static_assert(CLK_TIM6_PSC <= 0xFFFFu && (CLK_TIMCLK1_HZ % 10000u) == 0u, "TIM6 prescaler");

#endif /* DISCO_F469NI_CLOCK_CONFIG_H */
