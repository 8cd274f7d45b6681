# The C flags of the kernel library (tflm_ops/src/*.c), in one place: tflm_ops/Makefile includes
# this file and trec_tflm/host/kernels.py reads it when it builds the host library itself. Keep it to
# plain `NAME := flags` lines (no make references or functions): host/kernels.py splits them on spaces.
TREC_CFLAGS_BASE     := -std=c99 -Wall -Wextra -Wshadow -Wvla -Wstrict-prototypes -Wno-unused-function
# host shared library (ctypes binding, tests)
TREC_CFLAGS_HOST     := -fPIC -shared -fvisibility=default
TREC_CFLAGS_HOST_OPT := -O2
TREC_CFLAGS_SANITIZE := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
# the DSP code path on a host without the DSP extension (intrinsics emulated in C)
TREC_CFLAGS_EMULATE_DSP := -DTREC_EMULATE_DSP
