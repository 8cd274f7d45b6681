/*
 * trec-tflm: the TREC kernel's geometry (not a public header): the layer's shape and hash settings
 * derived once (trec_geom, trec_make_geom in trec_convolve_plan_s8.c), the strip path's position
 * grid and its rectangles, and where a row's cluster ids are.
 */
#ifndef TREC_GEOMETRY_H
#define TREC_GEOMETRY_H

#include <stddef.h>
#include <stdint.h>

#include "trec/trec_nnfunctions.h"
#include "trec_nn_support.h"

typedef struct {
    int32_t in_h, in_w, cin;
    int32_t kh, kw;
    int32_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
    int32_t out_h, out_w, cout;
    int32_t input_offset, output_offset, act_min, act_max;
    int32_t n;  /* rows = out_h * out_w */
    int32_t k;  /* kh * kw * cin */
    int32_t l;  /* sub-vector length */
    int32_t la; /* l rounded up to even */
    int32_t m;  /* sub-matrices = ceil(k / l) */
    int32_t kp; /* m * l (zero-extended row) */
    int32_t hbits;
    int32_t hq; /* hbits rounded up to a multiple of 4: hash vectors are kept in quads */
    int32_t center;
    int32_t id_size;   /* bytes per code / id: 1 when H <= 8, else 2 */
    int32_t strip;     /* strip path: l == j * cin, kw % j == 0 */
    int32_t j;         /* strip path: pixels per strip */
    int32_t ph, pw;    /* strip path: position grid (padded input rows x strip start columns) */
    int32_t max_slots; /* clusters of one sub-matrix at most */
    int32_t map_cap;   /* compaction map entries (power of two) */
    int32_t direct;    /* map is a direct table indexed by code (map_cap == 2^H) */
    int32_t wide;      /* cluster dot products may exceed int32: int64 path */
} trec_geom;

/* Validates the arguments of both public functions and derives the geometry. */
TREC_INTERNAL trec_status trec_make_geom(const trec_conv_params *cp, const trec_hash_params *hp, const trec_dims *in,
                                         const trec_dims *f, const trec_dims *out, trec_geom *g);

/* A rectangle of the strip path's position grid, [y0, y1) x [x0, x1). */
typedef struct {
    int32_t y0, y1, x0, x1;
} trec_rect;

/* grid position of sub-matrix m's strip for row (0, 0); row (oy, ox) adds (oy*sh, ox*sw) */
static inline void trec_strip_origin(const trec_geom *g, int32_t m, int32_t *y, int32_t *x)
{
    const int32_t per_row = g->kw / g->j;
    const int32_t ky = m / per_row;
    *y = ky * g->dil_h;
    *x = (m - ky * per_row) * g->j * g->dil_w;
}

/* The i-th sub-matrix the passes visit. On the strip path the kernel rows are walked back and forth
 * (boustrophedon), so that each sub-matrix's window is the previous one's moved by one column or
 * one row, never back across the kernel's width: the incremental sums then update 2 x out_h or
 * 2 x out_w positions per sub-matrix (L3: 448 per pass instead of 672). */
static inline int32_t trec_visit_order(const trec_geom *g, int32_t i)
{
    if (!g->strip) {
        return i;
    }
    const int32_t per_row = g->kw / g->j, ky = i / per_row, kx = i - ky * per_row;
    return ky * per_row + ((ky & 1) ? per_row - 1 - kx : kx);
}

/* The parts of rectangle a outside rectangle b (at most 4 rectangles). */
static inline int32_t trec_rect_minus(trec_rect a, trec_rect b, trec_rect *out)
{
    int32_t n = 0;
    const int32_t my0 = TREC_MAX(a.y0, b.y0), my1 = TREC_MIN(a.y1, b.y1);
    const trec_rect parts[4] = {{a.y0, TREC_MIN(a.y1, b.y0), a.x0, a.x1},
                                {TREC_MAX(a.y0, b.y1), a.y1, a.x0, a.x1},
                                {my0, my1, a.x0, TREC_MIN(a.x1, b.x0)},
                                {my0, my1, TREC_MAX(a.x0, b.x1), a.x1}};
    for (int i = 0; i < 4; i++) {
        if (parts[i].y1 > parts[i].y0 && parts[i].x1 > parts[i].x0) {
            out[n++] = parts[i];
        }
    }
    return n;
}

/* strip path, stride 1: the positions of sub-matrix m's strips */
static inline trec_rect trec_window_of(const trec_geom *g, int32_t m)
{
    int32_t y0, x0;
    trec_strip_origin(g, m, &y0, &x0);
    const trec_rect w = {y0, y0 + g->out_h, x0, x0 + g->out_w};
    return w;
}

/* Index of row (oy, ox)'s id for sub-matrix m: trec_row_base(oy, ox) + id_off[m]. */
TREC_INLINE size_t trec_row_base(const trec_geom *g, int32_t oy, int32_t ox)
{
    if (g->strip) {
        return (size_t)oy * g->stride_h * g->pw + (size_t)ox * g->stride_w;
    }
    return ((size_t)oy * g->out_w + ox) * g->m;
}

#endif /* TREC_GEOMETRY_H */
