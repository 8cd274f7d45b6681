/*
 * Arm semihosting calls used by the QEMU boards (qemu-system-arm with
 * -semihosting-config enable=on,target=native). On M-profile the call is "bkpt 0xab" with
 * the operation in r0 and its argument (block) in r1. Without a debugger or QEMU
 * semihosting, bkpt faults, so real boards must not call these.
 */
#ifndef TREC_SEMIHOSTING_H
#define TREC_SEMIHOSTING_H

#include <stdint.h>

#define SEMIHOST_SYS_WRITE0 0x04u
#define SEMIHOST_SYS_EXIT 0x18u
#define SEMIHOST_SYS_EXIT_EXTENDED 0x20u
#define SEMIHOST_SYS_ELAPSED 0x30u
#define SEMIHOST_ADP_STOPPED_APPLICATION_EXIT 0x20026u

static inline uint32_t semihost_call(uint32_t op, const void *arg) {
  register uint32_t r0 __asm__("r0") = op;
  register const void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

/* Host time since the emulation started, in ticks of SYS_TICKFREQ (QEMU: nanoseconds of the
 * host's monotonic clock). Returns 0 and sets *t on success, -1 when unsupported. */
static inline int semihost_elapsed(uint64_t *t) {
  uint32_t block[2] = {0, 0};
  if (semihost_call(SEMIHOST_SYS_ELAPSED, block) != 0) return -1;
  *t = ((uint64_t)block[1] << 32) | block[0];
  return 0;
}

/* End the emulation; QEMU's exit status becomes code & 0xff. SYS_EXIT_EXTENDED carries the
 * code on 32-bit Arm (plain SYS_EXIT only distinguishes success from failure there). */
static inline void semihost_exit(int code) {
  uint32_t block[2] = {SEMIHOST_ADP_STOPPED_APPLICATION_EXIT, (uint32_t)code};
  semihost_call(SEMIHOST_SYS_EXIT_EXTENDED, block);
  /* Fallback for a host without SYS_EXIT_EXTENDED: at least success vs failure. */
  semihost_call(SEMIHOST_SYS_EXIT, (const void *)(uintptr_t)(code == 0 ? SEMIHOST_ADP_STOPPED_APPLICATION_EXIT
                                                                         : 0x20023u /* RunTimeErrorUnknown */));
}

#endif /* TREC_SEMIHOSTING_H */
