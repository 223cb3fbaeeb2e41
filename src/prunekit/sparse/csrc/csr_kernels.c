/*
 * prunekit sparse kernels: Y^T = W X^T + b for a sparse W stored as column-panel CSR.
 *
 * Why this shape of kernel: with the activations transposed (X^T is in x batch, contiguous
 * along the batch), every non-zero w[i,j] does y[i,:] += w * x[j,:] over contiguous batch
 * floats, so the row's accumulators stay in vector registers for the whole row and each
 * non-zero costs one broadcast plus batch/8 loads and FMAs. W is cut into vertical panels
 * (each an ordinary CSR matrix over `panel_width` input columns, indices local to the panel)
 * so that the slice of X^T a panel touches stays in L2; the Python side measures which width
 * is fastest for the real input shape. Rows are split between threads by non-zero count, and
 * each thread owns its rows across all panels, so no barrier is needed between panels.
 *
 * No Python or torch headers: the library is loaded with ctypes. AVX2+FMA code is selected
 * at run time (__builtin_cpu_supports), with a portable C fallback, so one build runs on any
 * x86-64 (and the fallback alone on other architectures).
 */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PK_X86 1
#endif

typedef struct {
    int64_t rows, cols, panels, panel_width, batch;
    const int64_t *ptr;      /* panels x (rows + 1) offsets into idx / val */
    const void *idx;         /* column index within the panel: uint16 or int32 */
    int idx_bytes;           /* 2 or 4 */
    const float *val;
    const float *bias;       /* rows floats, or NULL */
    const int64_t *row_cost; /* rows + 1 prefix sums of per-row work, to balance threads */
    const float *xt;         /* cols x batch */
    float *yt;               /* rows x batch */
    int use_avx2;
} spmm_job;

/* ---------------------------------------------------------------- portable fallback */

#define DEFINE_SEGMENT_GENERIC(NAME, IDX_T)                                                 \
    static void NAME(const spmm_job *j, int64_t p, int64_t i) {                            \
        const int64_t B = j->batch;                                                        \
        const int64_t *ptr = j->ptr + p * (j->rows + 1);                                   \
        const IDX_T *idx = (const IDX_T *)j->idx;                                          \
        const float *xp = j->xt + p * j->panel_width * B;                                  \
        float *y = j->yt + i * B;                                                          \
        for (int64_t k = ptr[i]; k < ptr[i + 1]; k++) {                                    \
            const float v = j->val[k];                                                     \
            const float *x = xp + (int64_t)idx[k] * B;                                     \
            for (int64_t c = 0; c < B; c++) y[c] += v * x[c];                              \
        }                                                                                  \
    }

DEFINE_SEGMENT_GENERIC(segment_generic_u16, uint16_t)
DEFINE_SEGMENT_GENERIC(segment_generic_i32, int32_t)

/* ---------------------------------------------------------------- AVX2 + FMA */

#ifdef PK_X86
#define PK_AVX2 __attribute__((target("avx2,fma")))

/* Apply OP(q) for q = 0..NV-1; NV is a compile-time constant, so dead branches vanish and the
 * accumulators stay named scalars (GCC keeps an array of __m256 in memory inside the loop). */
#define PK_FOR_EACH(NV, OP) \
    do { OP(0); if (NV > 1) OP(1); if (NV > 2) { OP(2); OP(3); }                           \
         if (NV > 4) { OP(4); OP(5); OP(6); OP(7); } } while (0)

/* One panel segment of row i for NV*8 batch columns, accumulators in registers. */
#define DEFINE_BLOCK(NAME, IDX_T, NV)                                                       \
    PK_AVX2 static void NAME(const float *val, const IDX_T *idx, int64_t k0, int64_t k1,   \
                             const float *xp, int64_t B, float *y) {                       \
        __m256 a0, a1, a2, a3, a4, a5, a6, a7;                                             \
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = _mm256_setzero_ps();                       \
        (void)a1; (void)a2; (void)a3; (void)a4; (void)a5; (void)a6; (void)a7;              \
        _Pragma("GCC diagnostic push")                                                     \
        _Pragma("GCC diagnostic ignored \"-Wunused-but-set-variable\"")                    \
        PK_FOR_EACH(NV, PK_LOAD);                                                          \
        for (int64_t k = k0; k < k1; k++) {                                                \
            const __m256 v = _mm256_broadcast_ss(val + k);                                 \
            const float *x = xp + (int64_t)idx[k] * B;                                     \
            PK_FOR_EACH(NV, PK_FMA);                                                       \
        }                                                                                  \
        PK_FOR_EACH(NV, PK_STORE);                                                         \
        _Pragma("GCC diagnostic pop")                                                      \
    }
#define PK_LOAD(q) a##q = _mm256_loadu_ps(y + 8 * q)
#define PK_FMA(q) a##q = _mm256_fmadd_ps(v, _mm256_loadu_ps(x + 8 * q), a##q)
#define PK_STORE(q) _mm256_storeu_ps(y + 8 * q, a##q)

/* One panel segment of row i for a single batch column: a sparse dot product, 4 chains. */
#define DEFINE_DOT(NAME, IDX_T)                                                             \
    PK_AVX2 static inline float NAME(const float *val, const IDX_T *idx, int64_t k0,        \
                                     int64_t k1, const float *xp, int64_t B) {             \
        float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;                                  \
        int64_t k = k0;                                                                    \
        for (; k + 4 <= k1; k += 4) {                                                      \
            a0 += val[k] * xp[(int64_t)idx[k] * B];                                        \
            a1 += val[k + 1] * xp[(int64_t)idx[k + 1] * B];                                \
            a2 += val[k + 2] * xp[(int64_t)idx[k + 2] * B];                                \
            a3 += val[k + 3] * xp[(int64_t)idx[k + 3] * B];                                \
        }                                                                                  \
        for (; k < k1; k++) a0 += val[k] * xp[(int64_t)idx[k] * B];                        \
        return (a0 + a1) + (a2 + a3);                                                      \
    }

#define DEFINE_SEGMENT_AVX2(NAME, IDX_T, SFX)                                               \
    DEFINE_BLOCK(block8_##SFX, IDX_T, 8)                                                   \
    DEFINE_BLOCK(block4_##SFX, IDX_T, 4)                                                   \
    DEFINE_BLOCK(block2_##SFX, IDX_T, 2)                                                   \
    DEFINE_BLOCK(block1_##SFX, IDX_T, 1)                                                   \
    DEFINE_DOT(dot_##SFX, IDX_T)                                                           \
    PK_AVX2 static void NAME(const spmm_job *j, int64_t p, int64_t i) {                    \
        const int64_t B = j->batch;                                                        \
        const int64_t *ptr = j->ptr + p * (j->rows + 1);                                   \
        const int64_t k0 = ptr[i], k1 = ptr[i + 1];                                        \
        if (k0 == k1) return;                                                              \
        const IDX_T *idx = (const IDX_T *)j->idx;                                          \
        const float *xp = j->xt + p * j->panel_width * B;                                  \
        float *y = j->yt + i * B;                                                          \
        int64_t c = 0;                                                                     \
        for (; c + 64 <= B; c += 64) block8_##SFX(j->val, idx, k0, k1, xp + c, B, y + c);   \
        if (c + 32 <= B) { block4_##SFX(j->val, idx, k0, k1, xp + c, B, y + c); c += 32; }  \
        if (c + 16 <= B) { block2_##SFX(j->val, idx, k0, k1, xp + c, B, y + c); c += 16; }  \
        if (c + 8 <= B) { block1_##SFX(j->val, idx, k0, k1, xp + c, B, y + c); c += 8; }    \
        for (; c < B; c++) y[c] += dot_##SFX(j->val, idx, k0, k1, xp + c, B);              \
    }

DEFINE_SEGMENT_AVX2(segment_avx2_u16, uint16_t, u16)
DEFINE_SEGMENT_AVX2(segment_avx2_i32, int32_t, i32)
#endif

typedef void (*segment_fn)(const spmm_job *j, int64_t p, int64_t i);

/* Rows r0..r1 start from the bias; then panel by panel, so one panel's slice of X^T stays in
 * cache while every row of the share consumes it (the panel width is what the Python side
 * tunes). All batch columns of a segment are done at once, so the non-zeros and their
 * indices stream from memory only once. */
static void run_rows(const spmm_job *j, int64_t r0, int64_t r1) {
    const int wide = j->idx_bytes == 4;
    segment_fn segment = wide ? segment_generic_i32 : segment_generic_u16;
#ifdef PK_X86
    if (j->use_avx2) segment = wide ? segment_avx2_i32 : segment_avx2_u16;
#endif
    for (int64_t i = r0; i < r1; i++) {
        float *y = j->yt + i * j->batch;
        const float b = j->bias ? j->bias[i] : 0.0f;
        for (int64_t c = 0; c < j->batch; c++) y[c] = b;
    }
    for (int64_t p = 0; p < j->panels; p++)
        for (int64_t i = r0; i < r1; i++) segment(j, p, i);
}

/* First row whose cumulative cost reaches `target` (binary search over the prefix sums). */
static int64_t split_row(const spmm_job *j, int64_t target) {
    int64_t lo = 0, hi = j->rows;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (j->row_cost[mid] < target) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static void run_share(void *arg, int tid, int nthreads) {
    const spmm_job *j = (const spmm_job *)arg;
    const int64_t total = j->row_cost[j->rows];
    const int64_t r0 = split_row(j, total * tid / nthreads);
    const int64_t r1 = tid + 1 == nthreads ? j->rows : split_row(j, total * (tid + 1) / nthreads);
    run_rows(j, r0, r1);
}

/* ---------------------------------------------------------------- persistent thread pool */

typedef void (*task_fn)(void *arg, int tid, int nthreads);

static pthread_mutex_t pool_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_start = PTHREAD_COND_INITIALIZER;
static pthread_cond_t pool_done = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t call_mutex = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */
static int pool_workers = 0;
static int64_t pool_generation = 0;
static int pool_pending = 0;
static task_fn pool_fn = NULL;
static void *pool_arg = NULL;
static int pool_threads = 1;
static int64_t pool_birth_generation = 0; /* what a new worker has already seen */
static int atfork_registered = 0;

static void *worker_main(void *arg) {
    const int tid = (int)(intptr_t)arg;
    pthread_mutex_lock(&pool_mutex);
    int64_t seen = pool_birth_generation;
    for (;;) {
        while (pool_generation == seen) pthread_cond_wait(&pool_start, &pool_mutex);
        seen = pool_generation;
        if (tid < pool_threads) {
            task_fn fn = pool_fn;
            void *fn_arg = pool_arg;
            const int n = pool_threads;
            pthread_mutex_unlock(&pool_mutex);
            fn(fn_arg, tid, n);
            pthread_mutex_lock(&pool_mutex);
        }
        if (--pool_pending == 0) pthread_cond_signal(&pool_done);
    }
    return NULL;
}

/* A forked child has none of the parent's worker threads: start from an empty pool. */
static void pool_after_fork_child(void) {
    pthread_mutex_init(&pool_mutex, NULL);
    pthread_mutex_init(&call_mutex, NULL);
    pthread_cond_init(&pool_start, NULL);
    pthread_cond_init(&pool_done, NULL);
    pool_workers = 0;
    pool_pending = 0;
}

/* Grow the pool to `wanted` workers (tids 1..wanted); returns how many exist afterwards. */
static int pool_grow(int wanted) {
    if (!atfork_registered) {
        pthread_atfork(NULL, NULL, pool_after_fork_child);
        atfork_registered = 1;
    }
    pool_birth_generation = pool_generation;
    while (pool_workers < wanted) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int ok = pthread_create(&thread, &attr, worker_main,
                                      (void *)(intptr_t)(pool_workers + 1)) == 0;
        pthread_attr_destroy(&attr);
        if (!ok) break;
        pool_workers++;
    }
    return pool_workers;
}

static void pool_run(task_fn fn, void *arg, int nthreads) {
    if (nthreads <= 1) { /* the caller's thread alone: no pool, no lock, concurrent callers ok */
        fn(arg, 0, 1);
        return;
    }
    pthread_mutex_lock(&call_mutex);
    pthread_mutex_lock(&pool_mutex);
    const int workers = pool_grow(nthreads - 1);
    if (workers < nthreads - 1) nthreads = workers + 1;
    if (nthreads <= 1) {
        pthread_mutex_unlock(&pool_mutex);
        pthread_mutex_unlock(&call_mutex);
        fn(arg, 0, 1);
        return;
    }
    pool_fn = fn;
    pool_arg = arg;
    pool_threads = nthreads;
    pool_pending = pool_workers;
    pool_generation++;
    pthread_cond_broadcast(&pool_start);
    pthread_mutex_unlock(&pool_mutex);
    fn(arg, 0, nthreads);
    pthread_mutex_lock(&pool_mutex);
    while (pool_pending > 0) pthread_cond_wait(&pool_done, &pool_mutex);
    pthread_mutex_unlock(&pool_mutex);
    pthread_mutex_unlock(&call_mutex);
}

/* ---------------------------------------------------------------- exported API */

/* 1 when the AVX2+FMA path runs on this CPU, 0 for the portable fallback. */
int pk_has_avx2(void) {
#ifdef PK_X86
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
#else
    return 0;
#endif
}

/* Version of this C interface; the Python side refuses a library of another version. */
int pk_abi_version(void) { return 2; }

/* A sparse matrix in column-panel CSR, described once and reused for every call. */
typedef struct {
    int64_t rows, cols, panels, panel_width;
    const int64_t *ptr;      /* panels x (rows + 1) offsets into idx / val */
    const void *idx;         /* column index within the panel: uint16 or int32 */
    const float *val;
    const float *bias;       /* rows floats, or NULL */
    const int64_t *row_cost; /* rows + 1 prefix sums of per-row work */
    int32_t idx_bytes;       /* 2 or 4 */
    int32_t reserved;
} pk_matrix;

/* yt[rows x batch] = W xt[cols x batch] + bias; returns 0, or a negative code on bad input. */
int pk_spmm(const pk_matrix *m, const float *xt, float *yt, int64_t batch, int nthreads,
            int allow_avx2) {
    if (m->rows < 0 || m->cols < 0 || batch < 0 || m->panels < 1 || m->panel_width < 1) return -1;
    if (m->idx_bytes != 2 && m->idx_bytes != 4) return -2;
    if (m->panels * m->panel_width < m->cols) return -3;
    spmm_job job = {m->rows, m->cols, m->panels, m->panel_width, batch, m->ptr, m->idx,
                    m->idx_bytes, m->val, m->bias, m->row_cost, xt, yt,
                    allow_avx2 && pk_has_avx2()};
    if (m->rows == 0 || batch == 0) return 0;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > m->rows) nthreads = (int)m->rows;
    pool_run(run_share, &job, nthreads);
    return 0;
}
