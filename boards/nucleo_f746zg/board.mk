# nucleo_f746zg: ST NUCLEO-F746ZG (STM32F746ZG, Cortex-M7 216 MHz, 1 MB flash, 320 KB SRAM).
# Included by boards/firmware.mk; BOARDS_DIR is the boards/ directory. Flash the .bin/.elf
# with st-flash, openocd, pyocd or by copying the .bin to the NODE_F746ZG USB drive
# (docs/BOARDS.md, STM32 section).
BOARD_CPU_FLAGS := -mcpu=cortex-m7 -mfpu=fpv5-sp-d16 -mfloat-abi=hard -mthumb
BOARD_LDSCRIPT  := $(BOARDS_DIR)/nucleo_f746zg/nucleo_f746zg.ld
BOARD_SRCS      := $(BOARDS_DIR)/common/startup.c $(BOARDS_DIR)/common/syscalls.c \
                   $(BOARDS_DIR)/common/stm32_common.c $(BOARDS_DIR)/nucleo_f746zg/board.c
BOARD_INCLUDES  := $(BOARDS_DIR)/common $(BOARDS_DIR)/nucleo_f746zg
BOARD_DEFINES   := TREC_BOARD_NUCLEO_F746ZG=1 TREC_BOARD_STM32=1
# Not a QEMU board; for flashing tools and tests:
BOARD_FLASH_BASE := 0x08000000
BOARD_FLASH_SIZE := 1048576
BOARD_RAM_BASE   := 0x20000000
BOARD_RAM_SIZE   := 327680
BOARD_OPENOCD_CFG := board/st_nucleo_f7.cfg
BOARD_PYOCD_TARGET := stm32f746zgtx
