/*
 * Compiled Hodgkin-Huxley kernel with the tutorial's 7 summary statistics fused in.
 *
 * The model is the exponential-Euler scheme of
 * sbilab.simulators.hh_equations.simulate_traces_numpy in float64, equal up to
 * rounding (libmvec's exp; exp(-dt (a + b)) for exp(-dt / tau) with tau = 1/(a + b)):
 * noiseless traces agree to ~1e-8 mV. Every constant comes in at call time: the
 * protocol and the fixed constants through hh_config, and the eight constants that
 * may be inferred (gbar_Na, gbar_K, g_leak, gbar_M, tau_max, V_T, noise_scale,
 * E_leak) plus the gates at rest as one row per simulation (see HH_ROW_*), so the
 * 2-parameter tutorial model and the 8-parameter model of Goncalves et al. 2020
 * are the same code. When only gbar_Na and gbar_K vary between rows (the tutorial),
 * hh_config.per_row is 0 and the other six are read from hh_config as loop
 * invariants: -ffast-math lets gcc reassociate differently around an invariant than
 * around a per-lane load, and this keeps the tutorial's numbers bit-identical to the
 * kernel before per-row constants existed. step() and rng_normals() take the mode as
 * a compile-time constant (always inlined), so each mode compiles to its own loop.
 *
 * Structure: the batch is cut into blocks of HH_LANES simulations that advance
 * together; every per-simulation quantity is a small array indexed by lane and
 * the per-step work is written as `#pragma omp simd` loops over lanes, so gcc
 * vectorises exp/log/cos through glibc's libmvec across simulations (needs
 * -ffast-math -fopenmp-simd). Incomplete blocks are padded with dummy lanes, so
 * every simulation goes through the same vector code: a row's result does not
 * depend on the batch size or its position in the batch.
 *
 * Statistics are streamed during the pass: a plain sum for the rest mean,
 * Welford for the rest variance, Welford/Terriberry central moments up to order 4
 * for the stimulus window, and the tutorial's peak rule for the spike count. The
 * kernel returns raw accumulators; the Python wrapper forms the 7 statistics.
 *
 * Noise: per simulation xoshiro256++ seeded by splitmix64(seed), turned into
 * standard normals by Box-Muller, generated NOISE_BLOCK steps at a time.
 *
 * The file is also a (trivial) CPython extension module so that setuptools builds
 * it with the interpreter's suffix; the kernel itself is called through ctypes,
 * which releases the GIL during the call.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifndef HH_LANES
#define HH_LANES 16
#endif
#define L HH_LANES
#define NOISE_BLOCK 128 /* steps of noise drawn at once; must be even */

/* Raw accumulators returned per simulation (see hh_kernel.py). */
enum { ST_SPIKES, ST_REST_SUM, ST_TAIL_M2, ST_STIM_MEAN, ST_STIM_M2, ST_STIM_M3, ST_STIM_M4, ST_COUNT };

/* Columns of the per-simulation rows (mirrors hh_kernel.ROW_COLUMNS). */
enum { HH_ROW_GNA, HH_ROW_GK, HH_ROW_GLEAK, HH_ROW_GM, HH_ROW_TAU_MAX, HH_ROW_VT, HH_ROW_NOISE, HH_ROW_ELEAK,
       HH_ROW_M0, HH_ROW_H0, HH_ROW_N0, HH_ROW_P0, HH_ROW_COUNT };

/* Mirrors hh_kernel._Config (ctypes): the constants shared by all rows plus derived indices. */
typedef struct {
    double dt, V0, E_Na, E_K, C;
    double g_leak, gbar_M, tau_max, V_T, E_leak, noise_scale; /* used when per_row == 0 */
    double spike_threshold, min_isi;
    int64_t per_row;             /* 1: the six above come from the rows (they vary between simulations) */
    int64_t num_steps;           /* T */
    int64_t rest_end;            /* rest mean over [0, rest_end) */
    int64_t tail_start, tail_end;/* rest std over [tail_start, tail_end) */
    int64_t stim_start, stim_end;/* moments and peaks over [stim_start, stim_end) */
} hh_config;

static inline double efun(double z) {
    /* z / (exp(z) - 1), continued by 1 - z/2 near zero (as hodgkin_huxley.efun). */
    const int small = fabs(z) < 1e-4;
    const double safe = small ? 1.0 : z;
    return small ? 1.0 - z / 2.0 : safe / (exp(safe) - 1.0);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Per-lane xoshiro256++ states, structure of arrays so lanes vectorise. */
typedef struct {
    uint64_t s0[L], s1[L], s2[L], s3[L];
} rng_block;

static void rng_seed(rng_block *r, const uint64_t *seeds) {
    for (int l = 0; l < L; ++l) {
        uint64_t x = seeds[l];
        r->s0[l] = splitmix64(&x);
        r->s1[l] = splitmix64(&x);
        r->s2[l] = splitmix64(&x);
        r->s3[l] = splitmix64(&x);
    }
}

/* Fill out[j][l] (NOISE_BLOCK x L) with scale * N(0, 1) draws by Box-Muller; scale is per lane when per_row. */
static inline __attribute__((always_inline)) void rng_normals(rng_block *restrict r, double scale,
                                                              const double *restrict lane_scale, const int per_row,
                                                              double (*restrict out)[L]) {
    const double two_pi = 6.283185307179586476925286766559, half_pi = 1.5707963267948966192313216916398;
    for (int j = 0; j < NOISE_BLOCK; j += 2) {
#pragma omp simd
        for (int l = 0; l < L; ++l) {
            uint64_t s0 = r->s0[l], s1 = r->s1[l], s2 = r->s2[l], s3 = r->s3[l], t;
            const uint64_t a = rotl(s0 + s3, 23) + s0;
            t = s1 << 17; s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = rotl(s3, 45);
            const uint64_t b = rotl(s0 + s3, 23) + s0;
            t = s1 << 17; s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = rotl(s3, 45);
            r->s0[l] = s0; r->s1[l] = s1; r->s2[l] = s2; r->s3[l] = s3;
            const double u1 = (double)(int64_t)((a >> 11) + 1) * 0x1.0p-53; /* (0, 1] */
            const double u2 = (double)(int64_t)(b >> 11) * 0x1.0p-53;       /* [0, 1) */
            const double radius = (per_row ? lane_scale[l] : scale) * sqrt(-2.0 * log(u1));
            /* sin written as a shifted cos: gcc would fuse sin+cos into sincos, which
             * has no libmvec variant and blocks vectorisation of the whole loop. */
            out[j][l] = radius * cos(two_pi * u2);
            out[j + 1][l] = radius * cos(two_pi * u2 - half_pi);
        }
    }
}

/* Per-lane state of one block of simulations. */
typedef struct {
    double V[L], m[L], h[L], n[L], p[L];
    double gna[L], gk[L], g_leak[L], gbar_M[L], tau_max[L], V_T[L], leak[L]; /* leak = g_leak E_leak */
    double noise_scale[L];               /* noise_scale / sqrt(dt) */
    double v1[L], v2[L];                 /* V one and two steps back (peak rule) */
    double last_peak[L], spikes[L];
    double rest_sum[L];
    double tail_mean[L], tail_m2[L];
    double mean[L], m2[L], m3[L], m4[L];
} hh_block;

/* Fold V[k] (all lanes) into the streamed statistics. */
static void accumulate(const hh_config *restrict c, hh_block *restrict b, int64_t k, const double *restrict time) {
    if (k < c->rest_end) {
#pragma omp simd
        for (int l = 0; l < L; ++l) b->rest_sum[l] += b->V[l];
    }
    if (k >= c->tail_start && k < c->tail_end) {
        const double inv_n = 1.0 / (double)(k - c->tail_start + 1);
#pragma omp simd
        for (int l = 0; l < L; ++l) {
            const double delta = b->V[l] - b->tail_mean[l];
            b->tail_mean[l] += delta * inv_n;
            b->tail_m2[l] += delta * (b->V[l] - b->tail_mean[l]);
        }
    }
    if (k >= c->stim_start && k < c->stim_end) {
        /* Terriberry's streaming central moments; count-dependent factors are per step. */
        const double n = (double)(k - c->stim_start + 1), inv_n = 1.0 / n;
        const double f1 = n - 1.0, f3 = n - 2.0, f4 = n * n - 3.0 * n + 3.0;
#pragma omp simd
        for (int l = 0; l < L; ++l) {
            const double delta = b->V[l] - b->mean[l];
            const double dn = delta * inv_n, dn2 = dn * dn;
            const double term1 = delta * dn * f1;
            const double m2 = b->m2[l], m3 = b->m3[l];
            b->mean[l] += dn;
            b->m4[l] += term1 * dn2 * f4 + 6.0 * dn2 * m2 - 4.0 * dn * m3;
            b->m3[l] = m3 + term1 * dn * f3 - 3.0 * dn * m2;
            b->m2[l] = m2 + term1;
        }
    }
    /* Peak at i = k - 2: V[i] > thr, V[i+1] >= V[i], V[i+2] < V[i+1], t_on < t[i] < t_off. */
    const int64_t i = k - 2;
    if (i >= c->stim_start && i < c->stim_end) {
        const double t = time[i], thr = c->spike_threshold, isi = c->min_isi;
#pragma omp simd
        for (int l = 0; l < L; ++l) {
            const int peak = (b->v2[l] > thr) & (b->v1[l] >= b->v2[l]) & (b->V[l] < b->v1[l]);
            const int counted = peak & (t - b->last_peak[l] > isi);
            b->spikes[l] += counted ? 1.0 : 0.0;
            b->last_peak[l] = peak ? t : b->last_peak[l];
        }
    }
#pragma omp simd
    for (int l = 0; l < L; ++l) {
        b->v2[l] = b->v1[l];
        b->v1[l] = b->V[l];
    }
}

/* One exponential-Euler step (all lanes): V from the old gates, then gates at V_new. */
static inline __attribute__((always_inline)) void step(const hh_config *restrict c, hh_block *restrict b,
                                                       double current, const double *restrict noise,
                                                       const int per_row) {
    const double dt = c->dt, C = c->C, g_leak_c = c->g_leak, gbar_M_c = c->gbar_M, V_T_c = c->V_T;
    const double E_Na = c->E_Na, E_K = c->E_K, leak_c = c->g_leak * c->E_leak, tau_max_c = c->tau_max;
#pragma omp simd
    for (int l = 0; l < L; ++l) {
        const double g_leak = per_row ? b->g_leak[l] : g_leak_c, gbar_M = per_row ? b->gbar_M[l] : gbar_M_c;
        const double V_T = per_row ? b->V_T[l] : V_T_c, leak = per_row ? b->leak[l] : leak_c;
        const double tau_max = per_row ? b->tau_max[l] : tau_max_c;
        const double m = b->m[l], h = b->h[l], n = b->n[l], p = b->p[l];
        const double g_na = m * m * m * h * b->gna[l];
        const double n2 = n * n;
        const double g_k = n2 * n2 * b->gk[l];
        const double g_m = gbar_M * p;
        const double tau_v_inv = (g_na + g_k + g_leak + g_m) / C;
        const double v_inf = (g_na * E_Na + g_k * E_K + leak + g_m * E_K + current + noise[l]) / (tau_v_inv * C);
        const double V = v_inf + (b->V[l] - v_inf) * exp(-dt * tau_v_inv);
        b->V[l] = V;

        const double v = V - V_T;
        const double alpha_m = 0.32 * efun(-0.25 * (v - 13.0)) / 0.25;
        const double beta_m = 0.28 * efun(0.2 * (v - 40.0)) / 0.2;
        const double alpha_h = 0.128 * exp(-(v - 17.0) / 18.0);
        const double beta_h = 4.0 / (1.0 + exp(-0.2 * (v - 40.0)));
        const double alpha_n = 0.032 * efun(-0.2 * (v - 15.0)) / 0.2;
        const double beta_n = 0.5 * exp(-(v - 10.0) / 40.0);
        const double vp = V + 35.0;

        /* q_inf = a / (a + b), tau_q = 1 / (a + b), so exp(-dt / tau_q) = exp(-dt (a + b)). */
        const double sm = alpha_m + beta_m, sh = alpha_h + beta_h, sn = alpha_n + beta_n;
        const double m_inf = alpha_m / sm, h_inf = alpha_h / sh, n_inf = alpha_n / sn;
        const double p_inf = 1.0 / (1.0 + exp(-0.1 * vp));
        const double tau_p = tau_max / (3.3 * exp(0.05 * vp) + exp(-0.05 * vp));
        b->m[l] = m_inf + (m - m_inf) * exp(-dt * sm);
        b->h[l] = h_inf + (h - h_inf) * exp(-dt * sh);
        b->n[l] = n_inf + (n - n_inf) * exp(-dt * sn);
        b->p[l] = p_inf + (p - p_inf) * exp(-dt / tau_p);
    }
}

/* Simulate `count` <= L rows starting at `row0`; lanes >= count are padding. */
static inline __attribute__((always_inline)) void run_block(
    const hh_config *restrict c, int64_t row0, int count, const double *restrict rows, const uint64_t *restrict seeds,
    const double *restrict current, const double *restrict time, double *restrict traces, double *restrict stats,
    const int per_row) {
    const int64_t T = c->num_steps;
    const double sqrt_dt = sqrt(c->dt), noise_scale = c->noise_scale / sqrt_dt;
    int noisy = per_row ? 0 : c->noise_scale != 0.0;
    hh_block b;
    rng_block rng;
    double noise[NOISE_BLOCK][L], vbuf[NOISE_BLOCK][L];
    uint64_t lane_seeds[L];
    memset(&b, 0, sizeof b);
    memset(noise, 0, sizeof noise);
    for (int l = 0; l < L; ++l) {
        const int64_t row = row0 + (l < count ? l : 0); /* padding repeats the first row */
        const double *r = rows + HH_ROW_COUNT * row;
        b.gna[l] = r[HH_ROW_GNA];
        b.gk[l] = r[HH_ROW_GK];
        b.g_leak[l] = r[HH_ROW_GLEAK];
        b.gbar_M[l] = r[HH_ROW_GM];
        b.tau_max[l] = r[HH_ROW_TAU_MAX];
        b.V_T[l] = r[HH_ROW_VT];
        b.leak[l] = r[HH_ROW_GLEAK] * r[HH_ROW_ELEAK];
        b.noise_scale[l] = r[HH_ROW_NOISE] / sqrt_dt;
        noisy |= per_row && r[HH_ROW_NOISE] != 0.0;
        lane_seeds[l] = seeds[row];
        b.V[l] = c->V0;
        b.m[l] = r[HH_ROW_M0]; b.h[l] = r[HH_ROW_H0]; b.n[l] = r[HH_ROW_N0]; b.p[l] = r[HH_ROW_P0];
        b.v1[l] = b.v2[l] = c->V0;
        b.last_peak[l] = -1e300; /* finite (fast-math): any first peak is > min_isi after it */
    }
    rng_seed(&rng, lane_seeds);
    accumulate(c, &b, 0, time);
    if (traces)
        for (int l = 0; l < count; ++l) traces[(row0 + l) * T] = c->V0;

    for (int64_t k = 1; k < T; ++k) {
        const int j = (int)((k - 1) % NOISE_BLOCK);
        if (j == 0 && noisy) rng_normals(&rng, noise_scale, b.noise_scale, per_row, noise);
        step(c, &b, current[k - 1], noise[j], per_row);
        if (stats) accumulate(c, &b, k, time);
        if (traces) {
            /* Buffer [step][lane] and write whole row segments: strided per-step stores are slow. */
            memcpy(vbuf[j], b.V, sizeof b.V);
            if (j == NOISE_BLOCK - 1 || k == T - 1) {
                const int64_t k0 = k - j;
                for (int l = 0; l < count; ++l) {
                    double *row = traces + (row0 + l) * T + k0;
                    for (int i = 0; i <= j; ++i) row[i] = vbuf[i][l];
                }
            }
        }
    }

    if (stats)
        for (int l = 0; l < count; ++l) {
            double *out = stats + (row0 + l) * ST_COUNT;
            out[ST_SPIKES] = b.spikes[l];
            out[ST_REST_SUM] = b.rest_sum[l];
            out[ST_TAIL_M2] = b.tail_m2[l];
            out[ST_STIM_MEAN] = b.mean[l];
            out[ST_STIM_M2] = b.m2[l];
            out[ST_STIM_M3] = b.m3[l];
            out[ST_STIM_M4] = b.m4[l];
        }
}

/*
 * Simulate rows [0, batch) of rows [batch, HH_ROW_COUNT] with seeds [batch].
 * current, time: [T]. traces: [batch, T] or NULL. stats: [batch, 7] raw accumulators or NULL.
 * Returns 0 on success.
 */
int hh_simulate(const hh_config *c, int64_t batch, const double *rows, const uint64_t *seeds,
                const double *current, const double *time, double *traces, double *stats) {
    if (c->num_steps < 1 || batch < 0) return 1;
    for (int64_t row0 = 0; row0 < batch; row0 += L) {
        const int count = (int)(batch - row0 < L ? batch - row0 : L);
        if (c->per_row)
            run_block(c, row0, count, rows, seeds, current, time, traces, stats, 1);
        else
            run_block(c, row0, count, rows, seeds, current, time, traces, stats, 0);
    }
    return 0;
}

/* Lanes per block (for the wrapper's chunking and for tests). */
int hh_lanes(void) { return L; }

/* Size of hh_config, so the wrapper can check its ctypes mirror. */
int64_t hh_config_size(void) { return (int64_t)sizeof(hh_config); }

/* Columns of a per-simulation row, so the wrapper can check its layout. */
int hh_row_columns(void) { return HH_ROW_COUNT; }

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_hh_kernel",
    .m_doc = "Compiled HH kernel; called through ctypes by sbilab.simulators.hh_kernel.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__hh_kernel(void) { return PyModule_Create(&module); }
