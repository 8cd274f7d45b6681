# qemu_m7: QEMU mps2-an500 (Cortex-M7), standing in for NUCLEO_F746ZG (1 MB flash, 320 KB SRAM).
# Included by boards/firmware.mk; BOARDS_DIR is the boards/ directory.
BOARD_CPU_FLAGS := -mcpu=cortex-m7 -mfpu=fpv5-sp-d16 -mfloat-abi=hard -mthumb
BOARD_LDSCRIPT  := $(BOARDS_DIR)/qemu_m7/qemu_m7.ld
BOARD_SRCS      := $(BOARDS_DIR)/common/startup.c $(BOARDS_DIR)/common/syscalls.c $(BOARDS_DIR)/common/mps2.c
BOARD_INCLUDES  := $(BOARDS_DIR)/common
BOARD_DEFINES   := TREC_BOARD_QEMU_M7=1 TREC_BOARD_QEMU=1
# `make run` (and trec_tflm.target.qemu) start the ELF with this machine.
QEMU_MACHINE    := mps2-an500
