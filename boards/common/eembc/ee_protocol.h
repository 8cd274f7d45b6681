/*
 * EEMBC / MLPerf Tiny serial protocol, device side (written for trec-tflm; no heap, no printf).
 *
 * Commands end with '%'; tokens are separated by spaces (CR, LF and tabs count as spaces).
 * Every reply line ends with "\r\n" and every command is closed by "m-ready".
 *
 *   name%                  m-name-dut-[trec-tflm/<board>/<model>]
 *   profile%               m-profile-[<firmware version>]  m-model-[<model ID>]  (app_model_id():
 *                          an MLPerf Tiny ID such as ic01 when deployed with --mlperf-id)
 *   timestamp%             m-lap-us-<t>
 *   help%                  plain-text command list
 *   db load N%             m-[Expecting N bytes]
 *   db HH..%               (appends bytes) m-load-done once N bytes are in
 *   db print%              m-buffer-xx-xx-..  (8 bytes a line)
 *   infer [N [W]]%         m-warmup-start-W m-warmup-done m-infer-start-N m-lap-us-<t0> m-lap-us-<t1>
 *                          m-infer-done m-infer-ticks-[<total>,<N>,<unit>] m-results-[..]
 *   results%               m-results-[v0,v1,..]   dequantized outputs, 3 decimals; or class
 *                          probabilities, 6 decimals, when app_output_probabilities() (ee_app.h)
 * trec-tflm extensions (the MLPerf Tiny runner never sends them):
 *   results q%             m-results-q-[q0,q1,..] raw int8 outputs
 *   info%                  m-info-[key=value,..]  board, tick unit, clock, tensor sizes, quantization,
 *                          model_id, input=int8|uint8, results=dequantized|probabilities
 *   ops%                   m-ops-[<count>,<unit>] then m-op-[<i>,<name>,<ticks>] per operator
 *   exit [code]%           m-exit-<code>, then board_exit(code) (QEMU: ends the emulator)
 * Errors: e-[message] (the command is still closed by m-ready).
 *
 * m-lap-us: on real boards microseconds from board_ticks() and board_core_clock_hz(); on QEMU
 * (clock 0, ticks = instructions) virtual microseconds = instructions / 1000, which is what
 * `-icount shift=0` makes of them. Use m-infer-ticks for exact counts.
 */
#ifndef TREC_EE_PROTOCOL_H
#define TREC_EE_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EE_FW_VERSION "trec-tflm-eembc-1.0"

/* Capacity of the `db` input buffer (bytes) and of one command line (characters).
 * Override with -D; `info%` reports both so the host can size its `db` chunks. */
#ifndef EE_DB_CAPACITY
#define EE_DB_CAPACITY 4096u
#endif
#ifndef EE_CMD_CAPACITY
#define EE_CMD_CAPACITY 512u
#endif

/* Print the start-up banner (m-timestamp-mode-performance, m-lap-us, m-init-done, m-ready). */
void ee_protocol_init(void);

/* Feed one received character; runs the command when it is '%'.
 * Returns 1 once an `exit` command was received, else 0. */
int ee_protocol_feed(char c);

/* Run a complete command string (without '%'); replies and closes with m-ready. */
void ee_protocol_command(const char *cmd);

/* Exit code given with `exit [code]` (0 by default). */
int ee_protocol_exit_code(void);

/* init, then read the console forever (toggling the LED while idle) until `exit`.
 * Returns the exit code; the caller normally passes it to board_exit(). */
int ee_protocol_run(void);

#ifdef __cplusplus
}
#endif

#endif /* TREC_EE_PROTOCOL_H */
