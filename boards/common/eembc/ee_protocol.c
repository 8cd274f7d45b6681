/*
 * EEMBC / MLPerf Tiny serial protocol, device side. See ee_protocol.h for the command set.
 *
 * Written for trec-tflm from the protocol's documented message strings; no heap, no printf
 * (numbers are formatted here), no libc string functions, so it links the same way on every
 * board and on the host (tests/firmware/protocol/host_board.c).
 */
#include "ee_protocol.h"

#include "board.h"
#include "ee_app.h"

#define EE_MAX_TOKENS 8

static uint8_t s_db[EE_DB_CAPACITY];
static size_t s_db_size;            /* bytes announced by `db load N` (0: none) */
static size_t s_db_pos;             /* bytes received so far */

static char s_cmd[EE_CMD_CAPACITY + 1];
static size_t s_cmd_len;
static int s_cmd_overflow;

static int s_have_results;
static int s_exit_requested;
static int s_exit_code;

/* ---------------------------------------------------------------- weak app defaults -- */

__attribute__((weak)) size_t app_profile_count(void) { return 0; }

__attribute__((weak)) int app_profile_entry(size_t i, const char **name, uint64_t *ticks)
{
    (void)i;
    (void)name;
    (void)ticks;
    return -1;
}

__attribute__((weak)) const char *app_model_id(void) { return app_model_name(); }

__attribute__((weak)) int app_input_uint8(void) { return 0; }

__attribute__((weak)) int app_output_probabilities(void) { return 0; }

__attribute__((weak)) float app_output_probability(size_t i)
{
    (void)i;
    return 0.0f;
}

/* ------------------------------------------------------------------------- output -- */

static void put(const char *s) { board_puts(s); }
static void eol(void) { board_puts("\r\n"); }
static void line(const char *s)
{
    board_puts(s);
    eol();
}

static void put_u64(uint64_t v)
{
    char buf[21];
    int i = 20;
    buf[20] = '\0';
    do {
        buf[--i] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v != 0u);
    board_puts(&buf[i]);
}

static void put_i64(int64_t v)
{
    if (v < 0) {
        board_putc('-');
        put_u64((uint64_t)0 - (uint64_t)v);
    } else {
        put_u64((uint64_t)v);
    }
}

static void put_hex8(uint8_t b)
{
    static const char digits[] = "0123456789abcdef";
    board_putc(digits[b >> 4]);
    board_putc(digits[b & 15u]);
}

static void put_hex32(uint32_t v)
{
    for (int shift = 24; shift >= 0; shift -= 8) {
        put_hex8((uint8_t)(v >> shift));
    }
}

static uint32_t float_bits(float f)
{
    union {
        float f;
        uint32_t u;
    } u;
    u.f = f;
    return u.u;
}

/* Like printf("%.<decimals>f") for decimals 1..9, rounding half away from zero; "-" is dropped
 * for values that round to zero. Magnitudes of 1e18 units of the last decimal or more print as
 * inf (3 decimals: 1e15; no model output gets there). */
static void put_fixed(float x, unsigned decimals)
{
    int neg = 0;
    double d = (double)x;
    uint64_t unit = 1u;
    unsigned k;
    if (d != d) {
        put("nan");
        return;
    }
    if (d < 0.0) {
        neg = 1;
        d = -d;
    }
    for (k = 0; k < decimals; k++) {
        unit *= 10u;
    }
    if (d * (double)unit >= 1e18) {
        put(neg ? "-inf" : "inf");
        return;
    }
    uint64_t units = (uint64_t)(d * (double)unit + 0.5);
    if (neg && units != 0u) {
        board_putc('-');
    }
    put_u64(units / unit);
    board_putc('.');
    uint64_t frac = units % unit;
    char digits[10];
    for (k = decimals; k > 0u; k--) {
        digits[k - 1u] = (char)('0' + (int)(frac % 10u));
        frac /= 10u;
    }
    digits[decimals] = '\0';
    put(digits);
}

static uint64_t ticks_to_us(uint64_t t)
{
    uint32_t hz = board_core_clock_hz();
    if (hz == 0u) {
        return t / 1000u; /* QEMU: instructions at 1 ns each under -icount shift=0 */
    }
    if (hz % 1000000u == 0u) {
        return t / (hz / 1000000u);
    }
    return (t / hz) * 1000000u + ((t % hz) * 1000000u) / hz;
}

static void put_lap(uint64_t ticks)
{
    put("m-lap-us-");
    put_u64(ticks_to_us(ticks));
    eol();
}

static void error_begin(void) { put("e-["); }
static void error_end(void) { put("]\r\n"); }
static void error(const char *msg)
{
    error_begin();
    put(msg);
    error_end();
}

/* ------------------------------------------------------------------------ parsing -- */

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

static int str_eq(const char *a, const char *b)
{
    while (*a != '\0' && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

static size_t str_len(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0') {
        n++;
    }
    return n;
}

/* Strict unsigned decimal (digits only, at most 2^31-1). Returns 1 on success. */
static int parse_u31(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    if (*s == '\0') {
        return 0;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9') {
            return 0;
        }
        v = v * 10u + (uint32_t)(*s - '0');
        if (v > 0x7fffffffu) {
            return 0;
        }
    }
    *out = v;
    return 1;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int tokenize(char *s, char **tok, int max)
{
    int n = 0;
    while (*s != '\0') {
        while (is_space(*s)) {
            *s++ = '\0';
        }
        if (*s == '\0') {
            break;
        }
        if (n == max) {
            return max + 1; /* too many */
        }
        tok[n++] = s;
        while (*s != '\0' && !is_space(*s)) {
            s++;
        }
    }
    return n;
}

/* ----------------------------------------------------------------------- commands -- */

static void cmd_name(void)
{
    put("m-name-dut-[trec-tflm/");
    put(board_name());
    put("/");
    put(app_model_name());
    put("]\r\n");
}

static void cmd_profile(void)
{
    line("m-profile-[" EE_FW_VERSION "]");
    put("m-model-[");
    put(app_model_id());
    put("]\r\n");
}

static void cmd_help(void)
{
    line(EE_FW_VERSION);
    line("");
    line("help          : Print this information");
    line("name          : Print the name of the device");
    line("timestamp     : Print a timestamp (m-lap-us)");
    line("profile       : Print the firmware and model versions");
    line("db load N     : Expect N bytes of input");
    line("db HH[HH]*    : Append hex bytes until N bytes are in");
    line("db print      : Print the input buffer as hex");
    line("infer [N [W]] : Load input, run W warm-up then N timed inferences (defaults 1, 10)");
    line("results [q]   : Outputs of the last inference (q: raw int8)");
    line("info          : Board, tick unit, clock, tensor sizes and quantization");
    line("ops           : Per-operator ticks of the last inference");
    line("exit [code]   : End the program (QEMU: exit the emulator)");
}

static void cmd_info(void)
{
    put("m-info-[board=");
    put(board_name());
    put(",model=");
    put(app_model_name());
    put(",fw=" EE_FW_VERSION);
    put(",unit=");
    put(board_tick_unit());
    put(",resolution=");
    put_u64(board_tick_resolution());
    put(",clock_hz=");
    put_u64(board_core_clock_hz());
    put(",input_bytes=");
    put_u64(app_input_size());
    put(",in_scale_f32=");
    put_hex32(float_bits(app_input_scale()));
    put(",in_zp=");
    put_i64(app_input_zero_point());
    put(",outputs=");
    put_u64(app_output_count());
    put(",out_scale_f32=");
    put_hex32(float_bits(app_output_scale()));
    put(",out_zp=");
    put_i64(app_output_zero_point());
    put(",model_id=");
    put(app_model_id());
    put(",input=");
    put(app_input_uint8() ? "uint8" : "int8");
    put(",results=");
    put(app_output_probabilities() ? "probabilities" : "dequantized");
    put(",db_capacity=");
    put_u64(EE_DB_CAPACITY);
    put(",cmd_capacity=");
    put_u64(EE_CMD_CAPACITY);
    put("]\r\n");
}

static void cmd_timestamp(void) { put_lap(board_ticks()); }

static void db_print(void)
{
    size_t i;
    if (s_db_size == 0u) {
        error("Buffer not allocated");
        return;
    }
    for (i = 0; i < s_db_pos; i++) {
        if (i % 8u == 0u) {
            put("m-buffer-");
        }
        put_hex8(s_db[i]);
        if ((i + 1u) % 8u == 0u || i + 1u == s_db_pos) {
            eol();
        } else {
            board_putc('-');
        }
    }
}

/* Returns 1 when the buffer is complete, 0 when more bytes are expected, -1 on error. */
static int db_append(const char *hex)
{
    size_t n = str_len(hex);
    size_t i;
    if (s_db_size == 0u) {
        error("Buffer not allocated: send db load N first");
        return -1;
    }
    if ((n & 1u) != 0u) {
        error("Insufficient number of hex digits");
        return -1;
    }
    /* Validate the whole chunk first, so a bad chunk leaves the buffer unchanged. */
    for (i = 0; i < n; i++) {
        if (hex_value(hex[i]) < 0) {
            error_begin();
            put("Invalid hex digit '");
            board_putc(hex[i & ~(size_t)1u]);
            board_putc(hex[i | 1u]);
            put("'");
            error_end();
            return -1;
        }
    }
    if (s_db_pos == s_db_size) {
        error_begin();
        put("Buffer already holds its ");
        put_u64(s_db_size);
        put(" bytes: send db load N first");
        error_end();
        return -1;
    }
    for (i = 0; i < n; i += 2u) {
        s_db[s_db_pos++] = (uint8_t)((hex_value(hex[i]) << 4) | hex_value(hex[i + 1u]));
        if (s_db_pos == s_db_size) {
            line("m-load-done"); /* digits beyond N are disregarded, as in the reference */
            return 1;
        }
    }
    return 0;
}

static void cmd_db(char **tok, int ntok)
{
    if (ntok < 2) {
        error("Command 'db' requires a subcommand");
        return;
    }
    if (str_eq(tok[1], "load")) {
        uint32_t n;
        if (ntok < 3) {
            error("Command 'db load' requires the # of bytes");
            return;
        }
        if (!parse_u31(tok[2], &n) || n == 0u) {
            error("Command 'db load' must be >0 bytes");
            return;
        }
        if (n > EE_DB_CAPACITY) {
            error_begin();
            put("Specified input size exceeds ");
            put_u64(EE_DB_CAPACITY);
            error_end();
            return;
        }
        s_db_size = n;
        s_db_pos = 0;
        put("m-[Expecting ");
        put_u64(n);
        put(" bytes]\r\n");
    } else if (str_eq(tok[1], "print")) {
        db_print();
    } else {
        int i;
        for (i = 1; i < ntok; i++) { /* "db 0102 0304" is accepted too */
            if (db_append(tok[i]) != 0) {
                break; /* done, or an error was reported */
            }
        }
    }
}

static void print_results(int raw)
{
    size_t n = app_output_count();
    size_t i;
    int probabilities = !raw && app_output_probabilities();
    if (!s_have_results) {
        error("No results: run infer first");
        return;
    }
    put(raw ? "m-results-q-[" : "m-results-[");
    for (i = 0; i < n; i++) {
        int8_t q = app_output_value(i);
        if (i != 0u) {
            board_putc(',');
        }
        if (raw) {
            put_i64(q);
        } else if (probabilities) {
            /* 6 decimals: classes whose int8 logits differ by one step still differ in print
             * (3 decimals can tie them, and the runner's argmax would then take the first) */
            put_fixed(app_output_probability(i), 6u);
        } else {
            put_fixed(app_output_scale() * (float)((int32_t)q - app_output_zero_point()), 3u);
        }
    }
    put("]\r\n");
}

static void cmd_infer(char **tok, int ntok)
{
    uint32_t n = 1, w = 10, i;
    int rc;
    uint64_t t0 = 0, t1 = 0;

    if (ntok >= 2 && (!parse_u31(tok[1], &n) || n == 0u)) {
        error("Inference iterations must be >0");
        return;
    }
    if (ntok >= 3 && !parse_u31(tok[2], &w)) {
        error("Inference warmup must be >=0");
        return;
    }
    if (s_db_size == 0u || s_db_pos != s_db_size) {
        error_begin();
        put("Input not loaded: have ");
        put_u64(s_db_pos);
        put(" of ");
        put_u64(s_db_size);
        put(" bytes (db load N, then db HEX)");
        error_end();
        return;
    }
    rc = app_set_input(s_db, s_db_size);
    if (rc != 0) {
        error_begin();
        put("Model rejected the input: got ");
        put_u64(s_db_size);
        put(" bytes, model input is ");
        put_u64(app_input_size());
        put(" bytes (code ");
        put_i64(rc);
        put(")");
        error_end();
        return;
    }
    s_have_results = 0;
    put("m-warmup-start-");
    put_u64(w);
    eol();
    for (i = 0; i < w; i++) {
        rc = app_invoke();
        if (rc != 0) {
            break;
        }
    }
    if (rc == 0) {
        line("m-warmup-done");
        put("m-infer-start-");
        put_u64(n);
        eol();
        /* Both time stamps are taken around the loop only; the lap lines are printed after it,
         * so UART output never falls inside the measured interval. */
        t0 = board_ticks();
        for (i = 0; i < n; i++) {
            rc = app_invoke();
            if (rc != 0) {
                break;
            }
        }
        t1 = board_ticks();
    }
    if (rc != 0) {
        error_begin();
        put("Inference failed (code ");
        put_i64(rc);
        put(")");
        error_end();
        return;
    }
    put_lap(t0);
    put_lap(t1);
    line("m-infer-done");
    put("m-infer-ticks-[");
    put_u64(t1 - t0);
    board_putc(',');
    put_u64(n);
    board_putc(',');
    put(board_tick_unit());
    put("]\r\n");
    s_have_results = 1;
    print_results(0);
}

static void cmd_ops(void)
{
    size_t n = app_profile_count();
    size_t i;
    put("m-ops-[");
    put_u64(n);
    board_putc(',');
    put(board_tick_unit());
    put("]\r\n");
    for (i = 0; i < n; i++) {
        const char *name = "?";
        uint64_t ticks = 0;
        if (app_profile_entry(i, &name, &ticks) != 0) {
            continue;
        }
        put("m-op-[");
        put_u64(i);
        board_putc(',');
        put(name);
        board_putc(',');
        put_u64(ticks);
        put("]\r\n");
    }
}

static void cmd_exit(char **tok, int ntok)
{
    uint32_t code = 0;
    if (ntok >= 2 && (!parse_u31(tok[1], &code) || code > 255u)) {
        error("Exit code must be 0..255");
        return;
    }
    put("m-exit-");
    put_u64(code);
    eol();
    s_exit_code = (int)code;
    s_exit_requested = 1;
}

static void run_command(char *cmd)
{
    char *tok[EE_MAX_TOKENS];
    int ntok = tokenize(cmd, tok, EE_MAX_TOKENS);

    if (ntok == 0) {
        /* empty command: only m-ready (lets a host resynchronise with a bare '%') */
    } else if (ntok > EE_MAX_TOKENS) {
        error("Too many arguments");
    } else if (str_eq(tok[0], "name")) {
        cmd_name();
    } else if (str_eq(tok[0], "timestamp")) {
        cmd_timestamp();
    } else if (str_eq(tok[0], "profile")) {
        cmd_profile();
    } else if (str_eq(tok[0], "help")) {
        cmd_help();
    } else if (str_eq(tok[0], "db")) {
        cmd_db(tok, ntok);
    } else if (str_eq(tok[0], "infer")) {
        cmd_infer(tok, ntok);
    } else if (str_eq(tok[0], "results")) {
        if (ntok >= 2 && !str_eq(tok[1], "q")) {
            error("Usage: results [q]");
        } else {
            print_results(ntok >= 2);
        }
    } else if (str_eq(tok[0], "info")) {
        cmd_info();
    } else if (str_eq(tok[0], "ops")) {
        cmd_ops();
    } else if (str_eq(tok[0], "exit")) {
        cmd_exit(tok, ntok);
    } else {
        error_begin();
        put("Unknown command: ");
        put(tok[0]);
        error_end();
    }
    line("m-ready");
}

/* ------------------------------------------------------------------------- public -- */

void ee_protocol_init(void)
{
    s_cmd_len = 0;
    s_cmd_overflow = 0;
    s_exit_requested = 0;
    s_exit_code = 0;
    line("m-timestamp-mode-performance");
    put_lap(board_ticks());
    line("m-init-done");
    line("m-ready");
}

void ee_protocol_command(const char *cmd)
{
    size_t n = 0;
    while (cmd[n] != '\0' && n < EE_CMD_CAPACITY) {
        s_cmd[n] = cmd[n];
        n++;
    }
    s_cmd[n] = '\0';
    if (cmd[n] != '\0') {
        error("Command too long");
        line("m-ready");
        return;
    }
    run_command(s_cmd);
}

int ee_protocol_feed(char c)
{
    if (c == '%') {
        if (s_cmd_overflow) {
            error_begin();
            put("Command too long: at most ");
            put_u64(EE_CMD_CAPACITY);
            put(" characters");
            error_end();
            line("m-ready");
        } else {
            s_cmd[s_cmd_len] = '\0';
            run_command(s_cmd);
        }
        s_cmd_len = 0;
        s_cmd_overflow = 0;
        return s_exit_requested;
    }
    if (c == '\0') {
        return 0;
    }
    if (s_cmd_len < EE_CMD_CAPACITY) {
        s_cmd[s_cmd_len++] = c;
    } else {
        s_cmd_overflow = 1;
    }
    return 0;
}

int ee_protocol_exit_code(void) { return s_exit_code; }

int ee_protocol_run(void)
{
    ee_protocol_init();
    for (;;) {
        int c = board_getc(250);
        if (c < 0) {
            board_led_toggle(); /* heartbeat while idle */
            continue;
        }
        if (ee_protocol_feed((char)c)) {
            return s_exit_code;
        }
    }
}
