/*
 * prunekit sparse kernels: Y^T = W X^T + b for a sparse W stored as column-panel CSR.
 *
 * Why this shape of kernel: with the activations transposed (X^T is in x batch, contiguous
 * along the batch), every non-zero w[i,j] does y[i,:] += w * x[j,:] over contiguous batch
 * floats, so the row's accumulators stay in vector registers for the whole row and each
 * non-zero costs one broadcast plus batch/lanes loads and FMAs. W is cut into vertical panels
 * (each an ordinary CSR matrix over `panel_width` input columns, indices local to the panel)
 * so that the slice of X^T a panel touches stays in L2; the Python side measures which width
 * is fastest for the real input shape. Rows are split between threads by non-zero count, and
 * each thread owns its rows across all panels, so no barrier is needed between panels.
 *
 * No Python or torch headers: the library is loaded with ctypes. The row code is one body
 * (spmm_body.h) compiled per instruction set -- AVX-512, AVX2+FMA, portable -- and picked at
 * run time by CPU features (__builtin_cpu_supports), so one build runs on any x86-64 at its
 * best (the portable path alone on other architectures). The caller may force a path; one the
 * CPU cannot run is refused, never attempted.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#define PK_X86 1
#endif

typedef struct spmm_job {
    int64_t rows, cols, panels, panel_width, batch;
    const int64_t *ptr;      /* panels x (rows + 1) offsets into idx / val */
    const void *idx;         /* column index within the panel: uint16 or int32 */
    int idx_bytes;           /* 2 or 4 */
    const float *val;
    const float *bias;       /* rows floats, or NULL */
    const int64_t *row_cost; /* rows + 1 prefix sums of per-row work, to balance threads */
    const float *xt;         /* cols x batch */
    float *yt;               /* rows x batch */
    const float *x;          /* batch x cols, row-major, transposed panel by panel; or NULL */
    float *scratch;          /* with x: panel_width x batch floats per thread */
    /* the path's row code and transposer */
    void (*panel_rows)(const struct spmm_job *j, const float *xp, int64_t p, int64_t r0,
                       int64_t r1);
    void (*transpose)(const float *x, int64_t ldx, float *xt, int64_t batch, int64_t ncols);
} spmm_job;

/* ---------------------------------------------------------------- kernel paths
 *
 * One body (spmm_body.h) compiled once per path. Vector types are ISA-neutral (GCC/Clang
 * vector extensions; aligned(4) and may_alias make them legal views of any float array), so
 * each path's arithmetic is defined by the source alone and the target attribute only picks
 * the instructions. */
typedef float pk_v16 __attribute__((vector_size(64), aligned(4), may_alias));
typedef float pk_v8 __attribute__((vector_size(32), aligned(4), may_alias));
typedef float pk_v4 __attribute__((vector_size(16), aligned(4), may_alias));

#define PK_CAT2(a, b) a##_##b
#define PK_CAT(a, b) PK_CAT2(a, b)

/* generic: no target attribute, 4 lanes (SSE2 on any x86-64, NEON on arm64, scalar elsewhere) */
#define PK_TARGET
#define PK_LANES 4
#define PK_PATH generic
#include "spmm_path.h"

#ifdef PK_X86
/* avx2: 8 lanes, FMA */
#define PK_TARGET __attribute__((target("avx2,fma")))
#define PK_LANES 8
#define PK_PATH avx2
#include "spmm_path.h"

/* avx2x16: the avx512 path's 16-lane source compiled for AVX2 (its verification path) */
#define PK_TARGET __attribute__((target("avx2,fma")))
#define PK_LANES 16
#define PK_PATH avx2x16
#include "spmm_path.h"

/* avx512: 16 lanes in zmm registers */
#define PK_TARGET __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define PK_LANES 16
#define PK_PATH avx512
#include "spmm_path.h"
#endif

/* Rows r0..r1 start from the bias; then panel by panel, so one panel's slice of X^T stays in
 * cache while every row of the share consumes it (the panel width is what the Python side
 * tunes). All batch columns of a segment are done at once, so the non-zeros and their
 * indices stream from memory only once. */
static void run_rows(const spmm_job *j, int tid, int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; i++) {
        float *y = j->yt + i * j->batch;
        const float b = j->bias ? j->bias[i] : 0.0f;
        for (int64_t c = 0; c < j->batch; c++) y[c] = b;
    }
    const int64_t B = j->batch, W = j->panel_width;
    float *mine = j->x ? j->scratch + (int64_t)tid * W * B : NULL;
    for (int64_t p = 0; p < j->panels; p++) {
        const float *xp = j->xt + p * W * B;
        if (mine) { /* this thread's own copy of the panel's slice, hot in its cache */
            const int64_t c0 = p * W, n = c0 + W < j->cols ? W : j->cols - c0;
            j->transpose(j->x + c0, j->cols, mine, B, n);
            xp = mine;
        }
        j->panel_rows(j, xp, p, r0, r1);
    }
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
    run_rows(j, tid, r0, r1);
}

/* ---------------------------------------------------------------- persistent thread pool */

typedef void (*task_fn)(void *arg, int tid, int nthreads);

static pthread_mutex_t pool_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_start = PTHREAD_COND_INITIALIZER;
static pthread_cond_t pool_done = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t call_mutex = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */
static int pool_workers = 0;
static int64_t pool_generation = 0;
static int64_t pool_pending = 0;
static task_fn pool_fn = NULL;
static void *pool_arg = NULL;
static int pool_threads = 1;
static int64_t pool_birth_generation = 0; /* what a new worker has already seen */
static int atfork_registered = 0;

/* How long the calling thread spins for the workers to finish before it sleeps. Why: waking
 * it through a condition variable cost ~50 us per call on a 2-core Xeon VM, where a 1024 x 1024
 * layer at 90 % runs in ~50 us. Workers do not spin between jobs: measured there, a worker
 * spinning 20-100 us after each job made tiny layers faster still but the 4096-wide MLP at
 * batch 1 slower (1.98x -> 1.81x over dense), as it kept a core from the thread it waited on. */
#define SPIN_NS 100000

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Spin until *value is 0, or SPIN_NS pass; returns whether it reached 0. */
static int spin_until_zero(const int64_t *value) {
    const int64_t deadline = now_ns() + SPIN_NS;
    for (unsigned spins = 1;; spins++) {
        if (__atomic_load_n(value, __ATOMIC_ACQUIRE) == 0) return 1;
#ifdef PK_X86
        __builtin_ia32_pause();
#endif
        if (spins % 64 == 0 && now_ns() > deadline) return 0;
    }
}

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
        if (__atomic_sub_fetch(&pool_pending, 1, __ATOMIC_ACQ_REL) == 0)
            pthread_cond_signal(&pool_done);
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
    if (!spin_until_zero(&pool_pending)) { /* the workers are slow: sleep until they finish */
        pthread_mutex_lock(&pool_mutex);
        while (pool_pending > 0) pthread_cond_wait(&pool_done, &pool_mutex);
        pthread_mutex_unlock(&pool_mutex);
    }
    pthread_mutex_unlock(&call_mutex);
}

/* ---------------------------------------------------------------- path table */

typedef void (*panel_rows_fn)(const spmm_job *j, const float *xp, int64_t p, int64_t r0,
                              int64_t r1);

typedef struct {
    const char *name;
    int lanes;
    panel_rows_fn u16, i32;
    void (*transpose)(const float *, int64_t, float *, int64_t, int64_t);
} kernel_path;

/* In order of preference; the index is what pk_spmm's `path` argument names. */
static const kernel_path PATHS[] = {
#ifdef PK_X86
    {"avx512", 16, panel_rows_avx512_u16, panel_rows_avx512_i32, transpose_avx512},
    {"avx2", 8, panel_rows_avx2_u16, panel_rows_avx2_i32, transpose_avx2},
    {"avx2x16", 16, panel_rows_avx2x16_u16, panel_rows_avx2x16_i32, transpose_avx2x16},
#endif
    {"generic", 4, panel_rows_generic_u16, panel_rows_generic_i32, transpose_generic},
};
#define PATH_COUNT ((int)(sizeof PATHS / sizeof PATHS[0]))

/* Whether this CPU (and its OS, which must save the wide registers) runs path i. */
static int path_runs_here(int i) {
#ifdef PK_X86
    __builtin_cpu_init();
    const char *name = PATHS[i].name;
    if (strcmp(name, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (strcmp(name, "avx2") == 0 || strcmp(name, "avx2x16") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    (void)i;
    return 1;
}

/* The answers of path_runs_here, found once (every pk_spmm call reads them). */
static int path_supported[PATH_COUNT];
static pthread_once_t path_probe_once = PTHREAD_ONCE_INIT;

static void probe_paths(void) {
    for (int i = 0; i < PATH_COUNT; i++) path_supported[i] = path_runs_here(i);
}

/* ---------------------------------------------------------------- exported API */

/* Version of this C interface; the Python side refuses a library of another version. */
int pk_abi_version(void) { return 4; }

int pk_path_count(void) { return PATH_COUNT; }

/* The name of path i ("avx512", "avx2", "avx2x16", "generic"), or NULL past the end. */
const char *pk_path_name(int i) { return i >= 0 && i < PATH_COUNT ? PATHS[i].name : NULL; }

/* Vector lanes of path i's widest blocks, or 0 past the end. */
int pk_path_lanes(int i) { return i >= 0 && i < PATH_COUNT ? PATHS[i].lanes : 0; }

/* 1 when path i runs on this CPU, else 0 (also past the end). */
int pk_path_supported(int i) {
    pthread_once(&path_probe_once, probe_paths);
    return i >= 0 && i < PATH_COUNT && path_supported[i];
}

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

/* yt[rows x batch] = W xt[cols x batch] + bias with kernel path `path` (-1: the first this CPU
 * runs). When `x` is not NULL it holds the activations as batch x cols (row-major), `xt` is
 * ignored and `scratch` holds panel_width x batch floats per thread: before each panel, every
 * thread transposes that panel's slice of x into its own scratch. Why not one shared transposed
 * copy first: a separate single-threaded copy cost a seventh of the multiplication (64 x 4096),
 * and a copy shared by the threads leaves half of it in the other core's cache; per-thread
 * slices repeat the (cheap) transposition and are read where they were written. Returns 0, or
 * a negative code without touching yt: -1..-3 bad shapes, -4 a path this CPU cannot run
 * (refused, never attempted). */
int pk_spmm(const pk_matrix *m, const float *xt, float *yt, int64_t batch, int nthreads,
            int path, const float *x, float *scratch) {
    if (m->rows < 0 || m->cols < 0 || batch < 0 || m->panels < 1 || m->panel_width < 1) return -1;
    if (m->idx_bytes != 2 && m->idx_bytes != 4) return -2;
    if (m->panels * m->panel_width < m->cols) return -3;
    if (path < 0)
        for (path = 0; !pk_path_supported(path); path++) {}
    if (!pk_path_supported(path)) return -4;
    const kernel_path *chosen = &PATHS[path];
    spmm_job job = {m->rows, m->cols, m->panels, m->panel_width, batch, m->ptr, m->idx,
                    m->idx_bytes, m->val, m->bias, m->row_cost, xt, yt, x, scratch,
                    m->idx_bytes == 4 ? chosen->i32 : chosen->u16, chosen->transpose};
    if (m->rows == 0 || batch == 0) return 0;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > m->rows) nthreads = (int)m->rows;
    pool_run(run_share, &job, nthreads);
    return 0;
}
