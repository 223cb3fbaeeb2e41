/*
 * The sparse kernel's body, written once and compiled once per kernel path (csr_kernels.c
 * includes this file for every path and index type, with different macros).
 *
 * Why one body: the arithmetic is GCC/Clang vector extensions (vector_size types), whose
 * semantics do not depend on the instruction set; only the codegen does. So the AVX-512 path
 * is this very source with 16-lane vectors under target("avx512f,..."), the AVX2 path the same
 * with 8 lanes, and the "avx2x16" path the 16-lane source compiled for AVX2: a machine without
 * AVX-512 executes, and the tests check, every line the AVX-512 path runs.
 *
 * Expects, defined by the includer:
 *   PK_TARGET   function attribute selecting the instruction set (or nothing)
 *   PK_LANES    lanes of the widest vector this path uses: 16, 8 or 4
 *   PK_IDX      the column index type: uint16_t or int32_t
 *   PK_NAME(n)  n suffixed with the path and index type, so every instantiation is distinct
 */

/* y[0 : NV*W) += sum over k of val[k] * x_k[0 : NV*W), for one row's non-zeros k0..k1 of one
 * panel, with the accumulators in registers. NV vectors of W lanes per chain; with SETS == 2
 * even and odd non-zeros feed two independent chains, so that few wide vectors (4 zmm for 64
 * batch columns) still hide the FMA latency. NV and SETS are constants at every call site:
 * after inlining, the guarded lines of unused accumulators vanish. */
#define PK_DEFINE_BLOCK(VT, W)                                                                 \
    PK_TARGET static inline __attribute__((always_inline)) void PK_NAME(block_##VT)(           \
        const float *restrict val, const PK_IDX *restrict idx, int64_t k0, int64_t k1,         \
        const float *restrict xp, int64_t B, float *restrict y, const int NV, const int SETS) { \
        VT a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0}, a7 = {0};     \
        VT b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};                                             \
        int64_t k = k0;                                                                        \
        if (SETS == 2) {                                                                       \
            for (; k + 2 <= k1; k += 2) {                                                      \
                const float v = val[k], u = val[k + 1];                                        \
                const VT *x = (const VT *)(xp + (int64_t)idx[k] * B);                          \
                const VT *z = (const VT *)(xp + (int64_t)idx[k + 1] * B);                      \
                a0 += v * x[0]; b0 += u * z[0];                                                \
                if (NV > 1) { a1 += v * x[1]; b1 += u * z[1]; }                                \
                if (NV > 2) { a2 += v * x[2]; b2 += u * z[2]; a3 += v * x[3]; b3 += u * z[3]; } \
            }                                                                                  \
        }                                                                                      \
        for (; k < k1; k++) {                                                                  \
            const float v = val[k];                                                            \
            const VT *x = (const VT *)(xp + (int64_t)idx[k] * B);                              \
            a0 += v * x[0];                                                                    \
            if (NV > 1) a1 += v * x[1];                                                        \
            if (NV > 2) { a2 += v * x[2]; a3 += v * x[3]; }                                    \
            if (NV > 4) { a4 += v * x[4]; a5 += v * x[5]; a6 += v * x[6]; a7 += v * x[7]; }    \
        }                                                                                      \
        VT *out = (VT *)y;                                                                     \
        out[0] += a0 + b0;                                                                     \
        if (NV > 1) out[1] += a1 + b1;                                                         \
        if (NV > 2) { out[2] += a2 + b2; out[3] += a3 + b3; }                                  \
        if (NV > 4) { out[4] += a4; out[5] += a5; out[6] += a6; out[7] += a7; }                \
    }

PK_DEFINE_BLOCK(pk_v16, 16)
PK_DEFINE_BLOCK(pk_v8, 8)
PK_DEFINE_BLOCK(pk_v4, 4)
#undef PK_DEFINE_BLOCK

/* One batch column: a sparse dot product over the row's non-zeros, in 4 chains. */
PK_TARGET static inline float PK_NAME(dot)(const float *restrict val, const PK_IDX *restrict idx,
                                           int64_t k0, int64_t k1, const float *restrict xp,
                                           int64_t B) {
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    int64_t k = k0;
    for (; k + 4 <= k1; k += 4) {
        a0 += val[k] * xp[(int64_t)idx[k] * B];
        a1 += val[k + 1] * xp[(int64_t)idx[k + 1] * B];
        a2 += val[k + 2] * xp[(int64_t)idx[k + 2] * B];
        a3 += val[k + 3] * xp[(int64_t)idx[k + 3] * B];
    }
    for (; k < k1; k++) a0 += val[k] * xp[(int64_t)idx[k] * B];
    return (a0 + a1) + (a2 + a3);
}

/* Row i of panel p, all batch columns: the widest blocks first, narrower ones for the tail
 * (a 16-lane path still runs 8- and 4-lane vectors there), single columns last. With SETS=1
 * only where 8 vectors already give 8 independent chains. */
PK_TARGET static inline __attribute__((always_inline)) void PK_NAME(segment)(
    const PK_IDX *restrict idx, const float *restrict val, int64_t k0, int64_t k1,
    const float *restrict xp, int64_t B, float *restrict y) {
    int64_t c = 0;
#if PK_LANES == 16
    for (; c + 64 <= B; c += 64) PK_NAME(block_pk_v16)(val, idx, k0, k1, xp + c, B, y + c, 4, 2);
    if (c + 32 <= B) { PK_NAME(block_pk_v16)(val, idx, k0, k1, xp + c, B, y + c, 2, 2); c += 32; }
    if (c + 16 <= B) { PK_NAME(block_pk_v16)(val, idx, k0, k1, xp + c, B, y + c, 1, 2); c += 16; }
    if (c + 8 <= B) { PK_NAME(block_pk_v8)(val, idx, k0, k1, xp + c, B, y + c, 1, 2); c += 8; }
#elif PK_LANES == 8
    for (; c + 64 <= B; c += 64) PK_NAME(block_pk_v8)(val, idx, k0, k1, xp + c, B, y + c, 8, 1);
    if (c + 32 <= B) { PK_NAME(block_pk_v8)(val, idx, k0, k1, xp + c, B, y + c, 4, 2); c += 32; }
    if (c + 16 <= B) { PK_NAME(block_pk_v8)(val, idx, k0, k1, xp + c, B, y + c, 2, 2); c += 16; }
    if (c + 8 <= B) { PK_NAME(block_pk_v8)(val, idx, k0, k1, xp + c, B, y + c, 1, 2); c += 8; }
#else
    for (; c + 32 <= B; c += 32) PK_NAME(block_pk_v4)(val, idx, k0, k1, xp + c, B, y + c, 8, 1);
    if (c + 16 <= B) { PK_NAME(block_pk_v4)(val, idx, k0, k1, xp + c, B, y + c, 4, 2); c += 16; }
    if (c + 8 <= B) { PK_NAME(block_pk_v4)(val, idx, k0, k1, xp + c, B, y + c, 2, 2); c += 8; }
#endif
    if (c + 4 <= B) { PK_NAME(block_pk_v4)(val, idx, k0, k1, xp + c, B, y + c, 1, 2); c += 4; }
    for (; c < B; c++) y[c] += PK_NAME(dot)(val, idx, k0, k1, xp + c, B);
}

/* Rows r0..r1 of panel p, whose slice of X^T starts at xp: one call per panel and thread, so the
 * row loop is compiled with the path (no indirect call per row, the invariants hoisted). */
PK_TARGET static void PK_NAME(panel_rows)(const spmm_job *j, const float *xp, int64_t p,
                                          int64_t r0, int64_t r1) {
    const int64_t B = j->batch;
    const int64_t *ptr = j->ptr + p * (j->rows + 1);
    const PK_IDX *idx = (const PK_IDX *)j->idx;
    for (int64_t i = r0; i < r1; i++)
        if (ptr[i] < ptr[i + 1])
            PK_NAME(segment)(idx, j->val, ptr[i], ptr[i + 1], xp, B, j->yt + i * B);
}

#ifndef PK_TRANSPOSE_DONE_FOR_PATH
/* xt[0:ncols, :] = x[:, 0:ncols]^T, where x is batch rows `ldx` floats apart and xt is ncols x
 * batch: 8 x 8 tiles transposed in registers by three rounds of shuffles (pairs of rows
 * interleaved, then pairs of pairs, then halves swapped), scalar copies at the ragged edges.
 * Column group outer, batch inner: each group writes whole rows of xt, and the lines of x it
 * reads are reused by the next group. Once per path, not per index type (the first include of
 * this body defines it). */
PK_TARGET static void PK_CAT(transpose, PK_PATH)(const float *restrict x, int64_t ldx,
                                                 float *restrict xt, int64_t batch,
                                                 int64_t ncols) {
    typedef int pk_i8 __attribute__((vector_size(32)));
    const int64_t b8 = batch / 8 * 8, c8 = ncols / 8 * 8;
    for (int64_t c = 0; c < c8; c += 8) {
        for (int64_t b = 0; b < b8; b += 8) {
            pk_v8 r[8], t[8], u[8];
            for (int q = 0; q < 8; q++) r[q] = *(const pk_v8 *)(x + (b + q) * ldx + c);
            for (int q = 0; q < 8; q += 2) {
                t[q] = __builtin_shuffle(r[q], r[q + 1], (pk_i8){0, 8, 1, 9, 4, 12, 5, 13});
                t[q + 1] = __builtin_shuffle(r[q], r[q + 1], (pk_i8){2, 10, 3, 11, 6, 14, 7, 15});
            }
            for (int q = 0; q < 8; q += 4) {
                u[q] = __builtin_shuffle(t[q], t[q + 2], (pk_i8){0, 1, 8, 9, 4, 5, 12, 13});
                u[q + 1] = __builtin_shuffle(t[q], t[q + 2], (pk_i8){2, 3, 10, 11, 6, 7, 14, 15});
                u[q + 2] = __builtin_shuffle(t[q + 1], t[q + 3], (pk_i8){0, 1, 8, 9, 4, 5, 12, 13});
                u[q + 3] = __builtin_shuffle(t[q + 1], t[q + 3], (pk_i8){2, 3, 10, 11, 6, 7, 14, 15});
            }
            for (int q = 0; q < 4; q++) {
                *(pk_v8 *)(xt + (c + q) * batch + b) =
                    __builtin_shuffle(u[q], u[q + 4], (pk_i8){0, 1, 2, 3, 8, 9, 10, 11});
                *(pk_v8 *)(xt + (c + q + 4) * batch + b) =
                    __builtin_shuffle(u[q], u[q + 4], (pk_i8){4, 5, 6, 7, 12, 13, 14, 15});
            }
        }
        for (int64_t q = c; q < c + 8; q++)
            for (int64_t b = b8; b < batch; b++) xt[q * batch + b] = x[b * ldx + q];
    }
    for (int64_t c = c8; c < ncols; c++)
        for (int64_t b = 0; b < batch; b++) xt[c * batch + b] = x[b * ldx + c];
}
#define PK_TRANSPOSE_DONE_FOR_PATH
#endif
