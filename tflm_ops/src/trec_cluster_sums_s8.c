/*
 * trec-tflm: TREC kernel, cluster sums (docs/OP_SPEC.md step 5, the centroids before the division).
 *
 * Per sub-matrix m, the members' sub-vectors summed per cluster straight from the HWC input, over
 * elements [l0, l0 + lb): sums[s][e] of x - zp (int32), members and, on the strip path, in-image
 * members per strip pixel. Strip path, stride 1: neighbouring sub-matrices' windows differ by a row
 * or a column, so each sub-matrix's sums are the previous one's minus the positions it leaves and
 * plus those it gains (move_window; int16 lanes with SXTAB16 when Cin % 4 == 0).
 */
#include "trec_convolve_phases.h"
#include "trec_geometry.h"
#include "trec_ids.h"
#include "trec_nn_support.h"
#include "trec_scratch.h"

/* Visit the strips at the positions of trec_rect r: count each one (sign +1 or -1) in
 * counts[s * (j + 1)] (the members of its cluster s) and its in-image pixels t in
 * counts[s * (j + 1) + 1 + t]; then run the statements given last for each run of n in-image pixels
 * t0 .. t0 + n - 1 of the strip, src pointing at the first one in the input. A run is contiguous in
 * the input: with dilation 1 a strip's in-image pixels are one run, otherwise each pixel is one. */
#define FOR_STRIP_RUNS(g, input, ids, r, sign, counts, ...)                                            \
    do {                                                                                               \
        const int32_t cps_ = (g)->j + 1, cin_ = (g)->cin;                                              \
        for (int32_t y_ = (r).y0; y_ < (r).y1; y_++) {                                                 \
            const int32_t iy_ = y_ - (g)->pad_h;                                                       \
            const int row_in_ = iy_ >= 0 && iy_ < (g)->in_h;                                           \
            const int8_t *row_ = (input) + (size_t)iy_ * (g)->in_w * cin_;                             \
            for (int32_t x_ = (r).x0; x_ < (r).x1; x_++) {                                             \
                const int32_t s = trec_read_id((ids), (g)->id_size, (size_t)y_ * (g)->pw + x_);        \
                int32_t *cnt_ = (counts) + (size_t)s * cps_;                                           \
                cnt_[0] += (sign);                                                                     \
                if (!row_in_) {                                                                        \
                    continue;                                                                          \
                }                                                                                      \
                const int32_t ix0_ = x_ - (g)->pad_w;                                                  \
                if ((g)->dil_w == 1) {                                                                 \
                    const int32_t t0 = ix0_ < 0 ? -ix0_ : 0, t1_ = TREC_MIN((g)->j, (g)->in_w - ix0_); \
                    if (t0 < t1_) {                                                                    \
                        for (int32_t t_ = t0; t_ < t1_; t_++) {                                        \
                            cnt_[1 + t_] += (sign);                                                    \
                        }                                                                              \
                        const int32_t n = t1_ - t0;                                                    \
                        const int8_t *src = row_ + (size_t)(ix0_ + t0) * cin_;                         \
                        __VA_ARGS__                                                                    \
                    }                                                                                  \
                    continue;                                                                          \
                }                                                                                      \
                for (int32_t t0 = 0; t0 < (g)->j; t0++) {                                              \
                    const int32_t ix_ = ix0_ + t0 * (g)->dil_w;                                        \
                    if (ix_ >= 0 && ix_ < (g)->in_w) {                                                 \
                        cnt_[1 + t0] += (sign);                                                        \
                        const int32_t n = 1;                                                           \
                        const int8_t *src = row_ + (size_t)ix_ * cin_;                                 \
                        __VA_ARGS__                                                                    \
                    }                                                                                  \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
    } while (0)

/* Sum elements [l0, l0 + lb) of the strips at the positions of r into sums[id][0..lb) (x - zp of
 * the in-image elements; padding is zp and adds nothing), sign +1 or -1, counting members and
 * in-image members as FOR_STRIP_RUNS does. */
TREC_NOINLINE static void add_strips(const trec_geom *g, const int8_t *input, const uint8_t *ids, trec_rect r,
                                     int32_t l0, int32_t lb, int32_t sign, int32_t *sums, int32_t *counts)
{
    const int32_t off = g->input_offset;
    FOR_STRIP_RUNS(g, input, ids, r, sign, counts, {
        /* the run's elements inside [l0, l0 + lb) */
        const int32_t e0 = TREC_MAX(t0 * cin_, l0), e1 = TREC_MIN((t0 + n) * cin_, l0 + lb);
        const int8_t *from = src + (e0 - t0 * cin_);
        int32_t *dst = sums + (size_t)s * lb + (e0 - l0);
        if (sign > 0) {
            for (int32_t e = 0; e < e1 - e0; e++) {
                dst[e] += from[e] + off;
            }
        } else {
            for (int32_t e = 0; e < e1 - e0; e++) {
                dst[e] -= from[e] + off;
            }
        }
    });
}

#if TREC_DSP
/* the two lane words of a group of four channels (dst[0], dst[1], adjacent: one LDRD and one
 * STRD) plus or minus its bytes v */
TREC_INLINE void lanes_update(int32_t *dst, int32_t v, int32_t sign)
{
    int32_t even, odd;
    trec_load2(dst, 0, even, odd);
    if (sign > 0) {
        trec_store2(dst, trec_sxtab16(even, v), trec_sxtab16_ror8(odd, v));
    } else {
        trec_store2(dst, trec_ssub16(even, trec_sxtb16(v)), trec_ssub16(odd, trec_sxtb16_ror8(v)));
    }
}

TREC_NOINLINE static void simd_accumulate(const int8_t *src, int32_t words4, int32_t *dst)
{
    for (int32_t q = 0; q < words4; q++, dst += 2) {
        lanes_update(dst, trec_read_s8x4(src + 4 * q), +1);
    }
}

TREC_NOINLINE static void simd_subtract(const int8_t *src, int32_t words4, int32_t *dst)
{
    for (int32_t q = 0; q < words4; q++, dst += 2) {
        lanes_update(dst, trec_read_s8x4(src + 4 * q), -1);
    }
}
#endif

#if TREC_DSP
/* simd_strips for strips of one pixel (L = Cin) and one-byte ids: every position counts a member,
 * those inside the image (a rectangle of r) also an in-image member and their pixel's channels.
 * Inlined with a constant sign; the general walk costs ~70 instructions per position here, and the
 * moves between neighbouring windows are rectangles one position wide, so the loops step pointers
 * and keep no per-row tests. */
TREC_INLINE void simd_pixels(const trec_geom *g, const int8_t *input, const uint8_t *ids, trec_rect r, int32_t sign,
                             int32_t *sums16, int32_t *counts)
{
    const int32_t words = g->l / 2, groups = g->cin / 4, cin = g->cin, width = r.x1 - r.x0;
    const int32_t pw = g->pw;
    const uint8_t *row = ids + (size_t)r.y0 * pw + r.x0;
    for (int32_t y = r.y0; y < r.y1; y++, row += pw) {
        for (int32_t x = 0; x < width; x++) {
            counts[2 * row[x]] += sign;
        }
    }
    const int32_t x0 = TREC_MAX(r.x0, g->pad_w), x1 = TREC_MIN(r.x1, g->pad_w + g->in_w);
    const int32_t y0 = TREC_MAX(r.y0, g->pad_h), y1 = TREC_MIN(r.y1, g->pad_h + g->in_h);
    if (x0 >= x1 || y0 >= y1) {
        return;
    }
    const int32_t n = x1 - x0;
    const size_t in_row = (size_t)g->in_w * cin;
    row = ids + (size_t)y0 * pw + x0;
    const int8_t *src_row = input + ((size_t)(y0 - g->pad_h) * g->in_w + (size_t)(x0 - g->pad_w)) * cin;
    for (int32_t y = y0; y < y1; y++, row += pw, src_row += in_row) {
        const int8_t *src = src_row;
        for (int32_t x = 0; x < n; x++, src += cin) {
            const int32_t s = row[x];
            counts[2 * s + 1] += sign;
            int32_t *dst = sums16 + (size_t)s * words;
            const int8_t *from = src;
            int32_t *const end = dst + 2 * groups;
            if (groups & 1) {
                lanes_update(dst, trec_read_s8x4(from), sign);
                dst += 2, from += 4;
            }
            for (; dst != end; dst += 4, from += 8) { /* two groups per step */
                lanes_update(dst + 2, trec_read_s8x4(from + 4), sign);
                lanes_update(dst, trec_read_s8x4(from), sign);
            }
        }
    }
}

TREC_NOINLINE static void simd_pixels_add(const trec_geom *g, const int8_t *input, const uint8_t *ids, trec_rect r,
                                          int32_t *sums16, int32_t *counts)
{
    simd_pixels(g, input, ids, r, +1, sums16, counts);
}

TREC_NOINLINE static void simd_pixels_subtract(const trec_geom *g, const int8_t *input, const uint8_t *ids, trec_rect r,
                                               int32_t *sums16, int32_t *counts)
{
    simd_pixels(g, input, ids, r, -1, sums16, counts);
}
#endif

/* simd_strips for strips of several pixels or two-byte ids */
TREC_NOINLINE static void simd_strips_general(const trec_geom *g, const int8_t *input, const uint8_t *ids, trec_rect r,
                                              int32_t sign, int32_t *sums16, int32_t *counts)
{
#if TREC_DSP
    const int32_t words = g->l / 2;
    FOR_STRIP_RUNS(g, input, ids, r, sign, counts, {
        int32_t *dst = sums16 + (size_t)s * words + (size_t)t0 * (cin_ / 2);
        if (sign > 0) {
            simd_accumulate(src, n * cin_ / 4, dst);
        } else {
            simd_subtract(src, n * cin_ / 4, dst);
        }
    });
#else
    (void)g; (void)input; (void)ids; (void)r; (void)sign; (void)sums16; (void)counts;
#endif
}

/* add_strips on the SIMD path: whole strips into sums16, int16 lanes in SXTB16's order (mod 2^16:
 * exact once every cluster holds at most 256 members again); the dispatch is inlined into the
 * window moves, which call it twice per sub-matrix */
TREC_INLINE void simd_strips(const trec_geom *g, const int8_t *input, const uint8_t *ids, trec_rect r, int32_t sign,
                             int32_t *sums16, int32_t *counts)
{
#if TREC_DSP
    if (g->j == 1 && g->id_size == 1) {
        if (sign > 0) {
            simd_pixels_add(g, input, ids, r, sums16, counts);
        } else {
            simd_pixels_subtract(g, input, ids, r, sums16, counts);
        }
        return;
    }
#endif
    simd_strips_general(g, input, ids, r, sign, sums16, counts);
}

/* Stride 1: turn sub-matrix prev's sums and counts into sub-matrix m's by removing the
 * positions of prev's window outside m's and adding those of m's outside prev's (a row or a column
 * between neighbouring sub-matrices instead of a whole window); int16 lanes when simd. */
static void move_window(const trec_geom *g, const int8_t *input, const uint8_t *ids, int32_t prev, int32_t m, int simd,
                        int32_t *sums, int32_t *counts)
{
    const trec_rect v = trec_window_of(g, prev), w = trec_window_of(g, m);
    const int32_t dy = w.y0 - v.y0, dx = w.x0 - v.x0;
    if (simd && ((dy == 0 && dx != 0 && TREC_ABS(dx) < g->out_w) || (dx == 0 && dy != 0 && TREC_ABS(dy) < g->out_h))) {
        /* the visit order's moves: one band leaves, one enters (trec_rect_minus' general case costs
         * as much again as sums of a one-position-wide band) */
        trec_rect gone = v, came = w;
        if (dx > 0) {
            gone.x1 = w.x0, came.x0 = v.x1;
        } else if (dx < 0) {
            gone.x0 = w.x1, came.x1 = v.x0;
        } else if (dy > 0) {
            gone.y1 = w.y0, came.y0 = v.y1;
        } else {
            gone.y0 = w.y1, came.y1 = v.y0;
        }
        simd_strips(g, input, ids, gone, -1, sums, counts);
        simd_strips(g, input, ids, came, +1, sums, counts);
        return;
    }
    trec_rect parts[8];
    const int32_t n_out = trec_rect_minus(v, w, parts);
    const int32_t n_in = trec_rect_minus(w, v, parts + n_out);
    for (int32_t i = 0; i < n_out + n_in; i++) {
        const int32_t sign = i < n_out ? -1 : +1;
        if (simd) {
            simd_strips(g, input, ids, parts[i], sign, sums, counts);
        } else {
            add_strips(g, input, ids, parts[i], 0, g->l, sign, sums, counts);
        }
    }
}

/* Strip path sums of sub-matrix m, elements [l0, l0 + lb): sums[s][.] of x - zp, counts as in
 * add_strips. incremental (stride 1, whole sub-vectors): sums and counts hold sub-matrix prev's
 * when prev >= 0. */
void trec_strip_sums(const trec_geom *g, const int8_t *input, const uint8_t *ids, int32_t m, int32_t prev,
                     int32_t slots, int32_t l0, int32_t lb, int incremental, int32_t *sums, int32_t *counts)
{
    const int32_t cps = g->j + 1;
    int32_t y0, x0;
    trec_strip_origin(g, m, &y0, &x0);
    if (g->stride_h == 1 && g->stride_w == 1) {
        const trec_rect w = {y0, y0 + g->out_h, x0, x0 + g->out_w};
        if (incremental && prev >= 0) {
            move_window(g, input, ids, prev, m, 0, sums, counts);
        } else {
            memset(sums, 0, (size_t)slots * lb * 4);
            memset(counts, 0, (size_t)slots * cps * 4);
            add_strips(g, input, ids, w, l0, lb, +1, sums, counts);
        }
    } else {
        memset(sums, 0, (size_t)slots * lb * 4);
        memset(counts, 0, (size_t)slots * cps * 4);
        for (int32_t oy = 0; oy < g->out_h; oy++) {
            const int32_t y = y0 + oy * g->stride_h;
            for (int32_t ox = 0; ox < g->out_w; ox++) {
                const int32_t x = x0 + ox * g->stride_w;
                const trec_rect one = {y, y + 1, x, x + 1};
                add_strips(g, input, ids, one, l0, lb, +1, sums, counts);
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------------
 * SIMD sums (strip path, Cin a multiple of 4, DSP): raw int8 accumulated in int16 lanes, two SXTAB16
 * per four values, in the "unordered" lane order of SXTB16 ((x0,x2),(x1,x3) per group of four) which
 * products then use directly against a filter slice in the same order. int16 lanes hold the raw sum of
 * at most 256 int8 values exactly; clusters with more members of a sub-matrix are summed in int32.
 * The zero point is applied in the products: offset * sum_t (in-image members of strip pixel t) *
 * (sum of the filter over pixel t's channels).
 * ---------------------------------------------------------------------------------------------- */
/* visit the window positions of sub-matrix m: f(y, x) */
#define FOR_WINDOW(g, m, y, x, body)                         \
    do {                                                     \
        int32_t y0_, x0_;                                    \
        trec_strip_origin((g), (m), &y0_, &x0_);             \
        for (int32_t oy_ = 0; oy_ < (g)->out_h; oy_++) {     \
            const int32_t y = y0_ + oy_ * (g)->stride_h;     \
            for (int32_t ox_ = 0; ox_ < (g)->out_w; ox_++) { \
                const int32_t x = x0_ + ox_ * (g)->stride_w; \
                body                                         \
            }                                                \
        }                                                    \
    } while (0)

/* Sums of sub-matrix m: sums16[s] (L/2 words) for clusters of <= 256 members, sums32[big[s]] (L
 * int32, natural order) otherwise; counts[s*(j+1)] members, counts[s*(j+1)+1+t] in-image members.
 * Returns the number of big clusters; with none, big[] is not written. */
int32_t trec_strip_sums_simd(const trec_geom *g, const int8_t *input, const uint8_t *ids, int32_t m, int32_t prev,
                             int32_t slots, int32_t *counts, int32_t *big, int32_t *sums16, int32_t *sums32)
{
    const int32_t cps = g->j + 1, words = g->l / 2, cin = g->cin;
#if TREC_DSP
    if (trec_simd_incremental(g)) {
        if (prev < 0) {
            memset(counts, 0, (size_t)slots * cps * 4);
            memset(sums16, 0, (size_t)slots * words * 4);
            simd_strips(g, input, ids, trec_window_of(g, m), +1, sums16, counts);
        } else {
            move_window(g, input, ids, prev, m, 1, sums16, counts);
        }
        (void)big;
        (void)sums32;
        return 0;
    }
#endif
    memset(counts, 0, (size_t)slots * cps * 4);
    FOR_WINDOW(g, m, y, x, { counts[(size_t)trec_read_id(ids, g->id_size, (size_t)y * g->pw + x) * cps]++; });
    int32_t n_big = 0;
    for (int32_t s = 0; s < slots; s++) {
        big[s] = counts[(size_t)s * cps] > TREC_SIMD_LANE_MEMBERS ? n_big++ : -1;
    }
    memset(sums16, 0, (size_t)slots * words * 4);
    if (n_big) {
        memset(sums32, 0, (size_t)n_big * g->l * 4);
    }
#if TREC_DSP
    FOR_WINDOW(g, m, y, x, {
        const int32_t iy = y - g->pad_h;
        if (iy >= 0 && iy < g->in_h) {
            const int32_t s = trec_read_id(ids, g->id_size, (size_t)y * g->pw + x);
            int32_t *cnt = counts + (size_t)s * cps + 1;
            const int8_t *row = input + (size_t)iy * g->in_w * cin;
            for (int32_t t = 0; t < g->j; t++) {
                const int32_t ix = x - g->pad_w + t * g->dil_w;
                if (ix < 0 || ix >= g->in_w) {
                    continue;
                }
                cnt[t]++;
                const int8_t *src = row + (size_t)ix * cin;
                if (big[s] < 0) {
                    simd_accumulate(src, cin / 4, sums16 + (size_t)s * words + (size_t)t * (cin / 2));
                } else {
                    int32_t *dst = sums32 + (size_t)big[s] * g->l + (size_t)t * cin;
                    for (int32_t c = 0; c < cin; c++) {
                        dst[c] += src[c];
                    }
                }
            }
        }
    });
#else
    (void)input;
    (void)cin;
    (void)prev;
#endif
    return n_big;
}

/* General path: the runs of a block of elements, one per tap (consecutive channels of one input
 * pixel), at most RUNS at a time so that they live on the stack. */
#define RUNS 16
typedef struct {
    int32_t dy[RUNS], dx[RUNS]; /* the tap's offset from a row's window origin, in input pixels */
    int32_t src[RUNS];          /* its first element's offset in the input from the origin pixel */
    int32_t ci[RUNS];           /* its first channel */
    int32_t len[RUNS], dst[RUNS];
    int32_t n, max_dy, max_dx;
} trec_runs;

/* the runs of elements [k, k1) (at most RUNS of them); returns where the next group starts */
static int32_t block_runs(const trec_geom *g, int32_t k, int32_t k1, int32_t k0, trec_runs *r)
{
    const int32_t cin = g->cin;
    int32_t tap = k / cin, ci = k - tap * cin;
    r->n = r->max_dy = r->max_dx = 0;
    while (k < k1 && r->n < RUNS) {
        const int32_t ky = tap / g->kw, kx = tap - ky * g->kw, i = r->n++;
        r->dy[i] = ky * g->dil_h;
        r->dx[i] = kx * g->dil_w;
        r->src[i] = (r->dy[i] * g->in_w + r->dx[i]) * cin + ci;
        r->ci[i] = ci;
        r->len[i] = TREC_MIN(cin - ci, k1 - k);
        r->dst[i] = k - k0;
        r->max_dy = TREC_MAX(r->max_dy, r->dy[i]);
        r->max_dx = TREC_MAX(r->max_dx, r->dx[i]);
        k += r->len[i];
        tap++;
        ci = 0;
    }
    return k;
}

/* dst[j] += src[j] + off for one run */
TREC_INLINE void add_run(int32_t *dst, const int8_t *src, int32_t len, int32_t off)
{
    for (int32_t j = 0; j < len; j++) {
        dst[j] += src[j] + off;
    }
}

/* General path sums of sub-matrix m over elements [l0, l0 + lb) of its sub-vectors: the taps'
 * runs are found once per block, not per row, and rows whose window lies inside the image (most
 * of them) skip the bounds tests. */
TREC_NOINLINE void trec_row_sums(const trec_geom *g, const int8_t *input, const uint8_t *ids, int32_t m, int32_t slots,
                                 int32_t l0, int32_t lb, int32_t *sums, int32_t *counts)
{
    memset(sums, 0, (size_t)slots * lb * 4);
    if (l0 == 0) {
        memset(counts, 0, (size_t)slots * 4);
    }
    const int32_t k0 = m * g->l + l0, k1 = TREC_MIN(k0 + lb, g->k);
    const int32_t cin = g->cin, off = g->input_offset, in_h = g->in_h, in_w = g->in_w;
    trec_runs r;
    for (int32_t k = k0, first = 1; k < k1; first = 0) {
        k = block_runs(g, k, k1, k0, &r);
        int32_t n = 0;
        for (int32_t oy = 0; oy < g->out_h; oy++) {
            const int32_t iy0 = oy * g->stride_h - g->pad_h;
            const int rows_in = iy0 >= 0 && iy0 + r.max_dy < in_h;
            for (int32_t ox = 0; ox < g->out_w; ox++, n++) {
                const int32_t ix0 = ox * g->stride_w - g->pad_w;
                const int32_t s = trec_read_id(ids, g->id_size, (size_t)n * g->m + m);
                if (l0 == 0 && first) {
                    counts[s]++;
                }
                int32_t *acc = sums + (size_t)s * lb;
                if (rows_in && ix0 >= 0 && ix0 + r.max_dx < in_w) {
                    const int8_t *origin = input + ((size_t)iy0 * in_w + ix0) * cin;
                    for (int32_t i = 0; i < r.n; i++) {
                        add_run(acc + r.dst[i], origin + r.src[i], r.len[i], off);
                    }
                    continue;
                }
                for (int32_t i = 0; i < r.n; i++) {
                    const int32_t iy = iy0 + r.dy[i], ix = ix0 + r.dx[i];
                    if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) {
                        continue; /* padding: zp, adds nothing */
                    }
                    add_run(acc + r.dst[i], input + ((size_t)iy * in_w + ix) * cin + r.ci[i], r.len[i], off);
                }
            }
        }
    }
}
