/* The built-in cells for many trials at once: all steps of a minibatch, forward and backward, in one call.
 *
 * Built and loaded by native.py. The trials' sequences are "lanes", lane = trial * b + sequence,
 * L = n * b lanes, and every tensor but x is contiguous float32, time-major, lanes innermost:
 *
 *   x          [n][b][T][I]  the inputs, read through the strides given (training reads a copy of
 *                            each group of minibatches, see train_batches)
 *   weight_ih  [n][G*H][I]   per trial, rows in torch's gate order (lstm i, f, g, o; gru r, z, n;
 *                            lstm1997 i, g, o)
 *   weight_hh  [n][G*H][H]
 *   bias       [n][G*H]      bias_ih, plus bias_hh for every cell but gru
 *   bias_hh    [n][G*H]      gru only: b_hn sits inside r * (W_hn h + b_hn)
 *   pre        [T][G*H][L]   the input part of every gate pre-activation, bias included
 *   states     [T][H][L]     the hidden state after every step, h_(-1) = 0
 *
 * What the backward pass needs is kept by the forward pass when it is given somewhere to keep it:
 *   lstm: gates [T][4H][L] (i, f, g, o after their nonlinearities), extra [T][2H][L] (c_t, tanh c_t)
 *   gru:  gates [T][3H][L] (r, z, n after their nonlinearities), extra [T][H][L] (W_hn h + b_hn)
 *   lstm1997: gates [T][3H][L] (i, g, o after their nonlinearities), extra [T][2H][L] (c_t, sigmoid c_t)
 *
 * The recurrence's backward pass returns d loss / d pre, d loss / d weight_hh and, for gru,
 * d loss / d bias_hh; the input part's returns those of x, weight_ih and the bias. Weight gradients
 * are summed over steps per lane in float and over a trial's lanes in double.
 *
 * rnnm_train_batches trains on many minibatches in one call. Each training step (train_step below)
 * freezes the trials whose weights the last update made non-finite, then runs the cell, the linear
 * readout at the scored steps, each trial's mean loss and the gradient of the live trials' summed
 * losses, written straight into a flat [n][P] gradient; then clips it per trial and applies the
 * optimizer's update (Adam, SGD or RMSprop, as torch defines them) to the flat [n][P] weights. The
 * sequences of a few dozen minibatches are first copied together in each trial's order, which keeps
 * the reads of a shuffled order from waiting on the memory one sequence after another.
 *
 * Per-trial weights are spread over the trial's lanes once per call, so that every step is a few
 * loops over all L lanes, which the compiler vectorises. The exponential is written out (Cephes'
 * expf: range reduction and a degree-5 polynomial, about 1 ulp) for the same reason; tanh is
 * 2 sigmoid(2x) - 1, within 2e-7 of the exact value. NaN propagates as in libm. Subnormal numbers
 * are flushed to zero while a call runs (a vanishing gradient otherwise slows every operation on
 * it a hundredfold on x86); the caller's setting is restored before it returns.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

/* MEMORYLESS: h_t = tanh(pre_t), the recurrent weights and bias held at zero and never trained */
/* LSTM1997: Hochreiter & Schmidhuber's 1997 LSTM, gates i, g, o and no forget gate (see lstm97_lanes) */
enum { RNN_TANH = 0, LSTM = 1, GRU = 2, MEMORYLESS = 3, LSTM1997 = 4 };

/* the target of a step that is not scored (cross-entropy's ignore_index) */
#define IGNORE_TARGET (-100)

/* rows per step, in units of H, of what the forward pass keeps besides the gates (lstm's c_t, tanh c_t) */
#define EXTRA_ROWS 2

typedef float *restrict out_t;
typedef const float *restrict in_t;

static inline float exp_(float x) {
    /* clamped where 2^k stays a normal float: the cells saturate long before, and a softmax term
     * below exp(-87) adds at most 2e-38 to its sum */
    x = x > 88.0f ? 88.0f : x;
    x = x < -87.0f ? -87.0f : x;
    /* k = x / ln 2 rounded to the nearest integer: adding and removing 1.5 * 2^23 drops the fraction.
     * Taken from x with NaN as 0, since a NaN converted to an integer is undefined behaviour; r keeps
     * the NaN, and so the result does. */
    const float finite_x = x == x ? x : 0.0f;
    float k = finite_x * 1.44269504088896341f + 12582912.0f;
    k = k - 12582912.0f;
    float r = x - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } scale = {.i = ((int32_t)k + 127) << 23};
    return p * scale.f;
}

/* Cephes' logf for x > 0 (about 1 ulp): x = m 2^e with m in [sqrt(1/2), sqrt(2)), a degree-9 polynomial */
static inline float log_(float x) {
    union {
        float f;
        int32_t i;
    } u = {.f = x};
    float e = (float)(((u.i >> 23) & 0xff) - 126);
    u.i = (u.i & 0x007fffff) | 0x3f000000; /* m in [0.5, 1) */
    float m = u.f;
    if (m < 0.707106781186547524f) {
        e -= 1.0f;
        m = m + m - 1.0f;
    } else {
        m = m - 1.0f;
    }
    const float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    y += -2.12194440e-4f * e;
    y += -0.5f * z;
    return m + y + 0.693359375f * e;
}

static inline float sigmoid_(float x) { return 1.0f / (1.0f + exp_(-x)); }

static inline float tanh_(float x) { return 2.0f / (1.0f + exp_(-2.0f * x)) - 1.0f; }

/* out[r][l] = w[j][r] for every lane l of trial j: w is [n][count] ([n][G*H][K] flattened), out [count][L] */
static void spread(int64_t n, int64_t b, int64_t count, const float *w, float *out) {
    for (int64_t r = 0; r < count; r++)
        for (int64_t j = 0; j < n; j++) {
            const float v = w[j * count + r];
            float *restrict o = out + (r * n + j) * b;
            for (int64_t s = 0; s < b; s++) o[s] = v;
        }
}

/* xl[t][i][l] = x[j, s, t, i] for lane l = j * b + s; x read through stride[0..3] (j, s, t, i) */
static void gather_x(int64_t steps, int64_t n, int64_t b, int64_t inputs, const float *x,
                     const int64_t *stride, float *xl) {
    const int64_t lanes = n * b;
    for (int64_t j = 0; j < n; j++)
        for (int64_t s = 0; s < b; s++)
            for (int64_t t = 0; t < steps; t++)
                for (int64_t i = 0; i < inputs; i++)
                    xl[(t * inputs + i) * lanes + j * b + s] =
                        x[j * stride[0] + s * stride[1] + t * stride[2] + i * stride[3]];
}

/* out[k][l] = base[k][l] + sum_m w[k][m][l] h[m][l] (base NULL: 0); w spread over lanes */
static void recur(int64_t lanes, int64_t rows, int64_t cols, in_t w, in_t base, in_t h, out_t out) {
    for (int64_t k = 0; k < rows; k++) {
        float *restrict o = out + k * lanes;
        if (base)
            memcpy(o, base + k * lanes, sizeof(float) * lanes);
        else
            memset(o, 0, sizeof(float) * lanes);
        for (int64_t m = 0; m < cols; m++) {
            const float *restrict wk = w + (k * cols + m) * lanes, *restrict hm = h + m * lanes;
            for (int64_t l = 0; l < lanes; l++) o[l] += wk[l] * hm[l];
        }
    }
}

/* out[m][l] = base[m][l] + sum_k w[k][m][l] d[k][l] (base NULL: 0); w spread over lanes */
static void recur_t(int64_t lanes, int64_t rows, int64_t cols, in_t w, in_t base, in_t d, out_t out) {
    if (base)
        memcpy(out, base, sizeof(float) * cols * lanes);
    else
        memset(out, 0, sizeof(float) * cols * lanes);
    for (int64_t k = 0; k < rows; k++) {
        const float *restrict dk = d + k * lanes;
        for (int64_t m = 0; m < cols; m++) {
            const float *restrict wk = w + (k * cols + m) * lanes;
            float *restrict o = out + m * lanes;
            for (int64_t l = 0; l < lanes; l++) o[l] += wk[l] * dk[l];
        }
    }
}

/* acc[k][m][l] += d[k][l] h[m][l] */
static void outer_acc(int64_t lanes, int64_t rows, int64_t cols, in_t d, in_t h, out_t acc) {
    for (int64_t k = 0; k < rows; k++)
        for (int64_t m = 0; m < cols; m++) {
            float *restrict a = acc + (k * cols + m) * lanes;
            const float *restrict dk = d + k * lanes, *restrict hm = h + m * lanes;
            for (int64_t l = 0; l < lanes; l++) a[l] += dk[l] * hm[l];
        }
}

/* out[j][r] = sum over trial j's lanes of acc[r][l], in double */
static void per_trial(int64_t n, int64_t b, int64_t count, const float *acc, float *out) {
    for (int64_t r = 0; r < count; r++)
        for (int64_t j = 0; j < n; j++) {
            double sum = 0.0;
            for (int64_t s = 0; s < b; s++) sum += acc[(r * n + j) * b + s];
            out[j * count + r] = (float)sum;
        }
}

/* One step of every cell on L lanes of one hidden unit. */

/* i_, f_, g_, o_ hold the gates' pre-activations on the way in and the gates on the way out */
static void lstm_lanes(int64_t lanes, out_t i_, out_t f_, out_t g_, out_t o_, in_t c_prev, out_t c,
                       out_t tanh_c, out_t h) {
    for (int64_t l = 0; l < lanes; l++) {
        const float i = sigmoid_(i_[l]), f = sigmoid_(f_[l]), g = tanh_(g_[l]), o = sigmoid_(o_[l]);
        const float cn = f * c_prev[l] + i * g, tc = tanh_(cn);
        i_[l] = i, f_[l] = f, g_[l] = g, o_[l] = o;
        c[l] = cn, tanh_c[l] = tc, h[l] = o * tc;
    }
}

/* The 1997 cell: c_t = c_(t-1) + i g, h_t = o (2 sigmoid(c_t) - 1), g = 4 sigmoid(.) - 2 in [-2, 2].
 * i_, g_, o_ hold the pre-activations on the way in and the gates on the way out; s_c is sigmoid(c_t). */
static void lstm97_lanes(int64_t lanes, out_t i_, out_t g_, out_t o_, in_t c_prev, out_t c, out_t s_c,
                         out_t h) {
    for (int64_t l = 0; l < lanes; l++) {
        const float i = sigmoid_(i_[l]), g = 4.0f * sigmoid_(g_[l]) - 2.0f, o = sigmoid_(o_[l]);
        const float cn = c_prev[l] + i * g, s = sigmoid_(cn);
        i_[l] = i, g_[l] = g, o_[l] = o;
        c[l] = cn, s_c[l] = s, h[l] = o * (2.0f * s - 1.0f);
    }
}

/* r_, z_, n_ hold W_hh h + b_hh on the way in and the gates on the way out */
static void gru_lanes(int64_t lanes, in_t pr, in_t pz, in_t pn, out_t r_, out_t z_, out_t n_, in_t h_prev,
                      out_t gh_n, out_t h) {
    for (int64_t l = 0; l < lanes; l++) {
        const float r = sigmoid_(pr[l] + r_[l]), z = sigmoid_(pz[l] + z_[l]);
        const float ghn = n_[l], nn = tanh_(pn[l] + r * ghn);
        r_[l] = r, z_[l] = z, n_[l] = nn, gh_n[l] = ghn;
        h[l] = nn + z * (h_prev[l] - nn);
    }
}

/* Backward: carry is d loss / d h_t through later steps, carry_c the same for c_t (updated). */

static void elman_back_lanes(int64_t count, in_t grad, in_t carry, in_t h, out_t d) {
    for (int64_t l = 0; l < count; l++) d[l] = (grad[l] + carry[l]) * (1.0f - h[l] * h[l]);
}

static void lstm_back_lanes(int64_t lanes, in_t i_, in_t f_, in_t g_, in_t o_, in_t c_prev, in_t tanh_c,
                            in_t grad, in_t carry, out_t carry_c, out_t di, out_t df, out_t dg, out_t d_o) {
    for (int64_t l = 0; l < lanes; l++) {
        const float i = i_[l], f = f_[l], g = g_[l], o = o_[l], tc = tanh_c[l];
        const float dh = grad[l] + carry[l];
        const float dc = carry_c[l] + dh * o * (1.0f - tc * tc);
        di[l] = dc * g * i * (1.0f - i);
        df[l] = dc * c_prev[l] * f * (1.0f - f);
        dg[l] = dc * i * (1.0f - g * g);
        d_o[l] = dh * tc * o * (1.0f - o);
        carry_c[l] = dc * f;
    }
}

/* the 1997 cell: the cell state carries over whole (no forget gate) */
static void lstm97_back_lanes(int64_t lanes, in_t i_, in_t g_, in_t o_, in_t s_c, in_t grad, in_t carry,
                              out_t carry_c, out_t di, out_t dg, out_t d_o) {
    for (int64_t l = 0; l < lanes; l++) {
        const float i = i_[l], g = g_[l], o = o_[l], s = s_c[l];
        const float dh = grad[l] + carry[l];
        const float dc = carry_c[l] + dh * o * 2.0f * s * (1.0f - s);
        di[l] = dc * g * i * (1.0f - i);
        dg[l] = dc * i * (4.0f - g * g) * 0.25f;
        d_o[l] = dh * (2.0f * s - 1.0f) * o * (1.0f - o);
        carry_c[l] = dc;
    }
}

/* gh*: d loss / d (W_hh h + b_hh); direct: d loss / d h_(t-1) through h_t = n + z (h_(t-1) - n) */
static void gru_back_lanes(int64_t lanes, in_t r_, in_t z_, in_t n_, in_t gh_n, in_t h_prev, in_t grad,
                           in_t carry, out_t dr, out_t dz, out_t dn, out_t ghr, out_t ghz, out_t ghn,
                           out_t direct) {
    for (int64_t l = 0; l < lanes; l++) {
        const float r = r_[l], z = z_[l], nn = n_[l];
        const float dh = grad[l] + carry[l];
        const float d_n = dh * (1.0f - z) * (1.0f - nn * nn);
        const float d_r = d_n * gh_n[l] * r * (1.0f - r);
        const float d_z = dh * (h_prev[l] - nn) * z * (1.0f - z);
        dr[l] = d_r, dz[l] = d_z, dn[l] = d_n;
        ghr[l] = d_r, ghz[l] = d_z, ghn[l] = d_n * r;
        direct[l] = dh * z;
    }
}

static int64_t gates_of(int cell) { return cell == LSTM ? 4 : cell == GRU || cell == LSTM1997 ? 3 : 1; }

static int forward(int cell, int64_t steps, int64_t n, int64_t b, int64_t hidden, const float *pre,
                   const float *weight_hh, const float *bias_hh, float *states, float *gates, float *extra) {
    const int64_t lanes = n * b, rows = gates_of(cell) * hidden, width = hidden * lanes;
    /* spread weights, zeros, and one step's gates and cell states when they are not kept */
    float *scratch = malloc(sizeof(float) * ((rows * hidden + 2 * rows) * lanes + 4 * width) + 1);
    if (!scratch) return -1;
    float *w = scratch, *bias = w + rows * hidden * lanes, *act_tmp = bias + rows * lanes;
    float *zeros = act_tmp + rows * lanes, *cell_tmp = zeros + width, *other_tmp = cell_tmp + 2 * width;
    memset(zeros, 0, sizeof(float) * 2 * width);
    spread(n, b, rows * hidden, weight_hh, w);
    if (cell == GRU) spread(n, b, rows, bias_hh, bias);

    for (int64_t t = 0; t < steps; t++) {
        const float *p = pre + t * rows * lanes;
        const float *h_prev = t ? states + (t - 1) * width : zeros;
        float *h = states + t * width;
        float *a = gates ? gates + t * rows * lanes : act_tmp;
        if (cell == MEMORYLESS) {
            for (int64_t l = 0; l < width; l++) h[l] = tanh_(p[l]);
        } else if (cell == RNN_TANH) {
            recur(lanes, rows, hidden, w, p, h_prev, h);
            for (int64_t l = 0; l < width; l++) h[l] = tanh_(h[l]);
        } else if (cell == LSTM || cell == LSTM1997) {
            /* kept: c_t and its squashed form (tanh c_t; sigmoid c_t in the 1997 cell) per step;
               else c alternates between two buffers */
            float *c = extra ? extra + t * 2 * width : cell_tmp + ((t + 1) & 1) * width;
            float *sq = extra ? c + width : other_tmp;
            const float *c_prev = !t ? zeros : extra ? c - 2 * width : cell_tmp + (t & 1) * width;
            recur(lanes, rows, hidden, w, p, h_prev, a);
            for (int64_t u = 0; u < hidden; u++) {
                float *g0 = a + u * lanes, *g1 = a + (hidden + u) * lanes, *g2 = a + (2 * hidden + u) * lanes;
                if (cell == LSTM)
                    lstm_lanes(lanes, g0, g1, g2, a + (3 * hidden + u) * lanes, c_prev + u * lanes, c + u * lanes,
                               sq + u * lanes, h + u * lanes);
                else
                    lstm97_lanes(lanes, g0, g1, g2, c_prev + u * lanes, c + u * lanes, sq + u * lanes, h + u * lanes);
            }
        } else {
            float *gh_n = extra ? extra + t * width : other_tmp;
            recur(lanes, rows, hidden, w, bias, h_prev, a);
            for (int64_t u = 0; u < hidden; u++) {
                gru_lanes(lanes, p + u * lanes, p + (hidden + u) * lanes, p + (2 * hidden + u) * lanes,
                          a + u * lanes, a + (hidden + u) * lanes, a + (2 * hidden + u) * lanes,
                          h_prev + u * lanes, gh_n + u * lanes, h + u * lanes);
            }
        }
    }
    free(scratch);
    return 0;
}

static int backward(int cell, int64_t steps, int64_t n, int64_t b, int64_t hidden, const float *grad_states,
                    const float *weight_hh, const float *states, const float *gates, const float *extra,
                    float *d_pre, float *d_w, float *d_b) {
    const int64_t lanes = n * b, rows = gates_of(cell) * hidden, width = hidden * lanes;
    const int64_t spread_w = rows * hidden * lanes;
    /* spread weights, their gradients' and the bias's accumulators, carries, zeros, d_gh (gru) */
    float *scratch = malloc(sizeof(float) * (2 * spread_w + 2 * rows * lanes + 5 * width) + 1);
    if (!scratch) return -1;
    float *w = scratch, *acc_w = w + spread_w, *acc_b = acc_w + spread_w, *d_gh = acc_b + rows * lanes;
    float *carry_buf = d_gh + rows * lanes, *carry_c = carry_buf + 2 * width, *zeros = carry_c + width;
    float *direct = zeros + width;
    memset(acc_w, 0, sizeof(float) * (spread_w + rows * lanes));
    memset(carry_buf, 0, sizeof(float) * 4 * width);
    spread(n, b, rows * hidden, weight_hh, w);

    for (int64_t t = steps - 1; t >= 0; t--) {
        const float *g = grad_states + t * width, *h = states + t * width;
        const float *h_prev = t ? h - width : zeros;
        const float *carry = carry_buf + (t & 1) * width;
        float *carry_next = carry_buf + ((t + 1) & 1) * width;
        float *d = d_pre + t * rows * lanes;
        if (cell == MEMORYLESS) {
            elman_back_lanes(width, g, zeros, h, d); /* nothing carries over from later steps */
            continue;                               /* and no recurrent weight takes a gradient */
        } else if (cell == RNN_TANH) {
            elman_back_lanes(width, g, carry, h, d);
            recur_t(lanes, rows, hidden, w, NULL, d, carry_next);
        } else if (cell == LSTM1997) {
            const float *a = gates + t * rows * lanes, *sc = extra + t * 2 * width + width;
            for (int64_t u = 0; u < hidden; u++) {
                const int64_t ui = u * lanes, ug = (hidden + u) * lanes, uo = (2 * hidden + u) * lanes;
                lstm97_back_lanes(lanes, a + ui, a + ug, a + uo, sc + ui, g + ui, carry + ui, carry_c + ui, d + ui,
                                  d + ug, d + uo);
            }
            recur_t(lanes, rows, hidden, w, NULL, d, carry_next);
        } else if (cell == LSTM) {
            const float *a = gates + t * rows * lanes, *c = extra + t * 2 * width, *tc = c + width;
            const float *c_prev = t ? c - 2 * width : zeros;
            for (int64_t u = 0; u < hidden; u++) {
                const int64_t ui = u * lanes, uf = (hidden + u) * lanes;
                const int64_t ug = (2 * hidden + u) * lanes, uo = (3 * hidden + u) * lanes;
                lstm_back_lanes(lanes, a + ui, a + uf, a + ug, a + uo, c_prev + ui, tc + ui, g + ui,
                                carry + ui, carry_c + ui, d + ui, d + uf, d + ug, d + uo);
            }
            recur_t(lanes, rows, hidden, w, NULL, d, carry_next);
        } else {
            const float *a = gates + t * rows * lanes, *gh_n = extra + t * width;
            for (int64_t u = 0; u < hidden; u++) {
                const int64_t ur = u * lanes, uz = (hidden + u) * lanes, un = (2 * hidden + u) * lanes;
                gru_back_lanes(lanes, a + ur, a + uz, a + un, gh_n + ur, h_prev + ur, g + ur, carry + ur,
                               d + ur, d + uz, d + un, d_gh + ur, d_gh + uz, d_gh + un, direct + ur);
            }
            recur_t(lanes, rows, hidden, w, direct, d_gh, carry_next);
            for (int64_t l = 0; l < rows * lanes; l++) acc_b[l] += d_gh[l];
        }
        /* the recurrent weights' gradient: d loss / d (W_hh h) times h_(t-1) */
        if (t) outer_acc(lanes, rows, hidden, cell == GRU ? d_gh : d, h_prev, acc_w);
    }
    per_trial(n, b, rows * hidden, acc_w, d_w);
    if (cell == GRU) per_trial(n, b, rows, acc_b, d_b);
    free(scratch);
    return 0;
}

/* Steps of x gathered into lanes at a time: bounds the copy of x for large evaluation batches. */
#define STEP_BLOCK 32

/* pre[t][k][l] = bl[k][l] + sum_i w[k][i][l] xl[t][i][l] for `block` steps of x gathered into lanes */
static void input_steps(int64_t lanes, int64_t block, int64_t inputs, int64_t rows, const float *w,
                        const float *bl, const float *xl, float *pre) {
    for (int64_t t = 0; t < block; t++)
        recur(lanes, rows, inputs, w, bl, xl + t * inputs * lanes, pre + t * rows * lanes);
}

/* acc_b += d_pre[t], acc_w += d_pre[t] xl[t] and, if dxl, dxl[t] = w^T d_pre[t], for `block` steps */
static void input_steps_back(int64_t lanes, int64_t block, int64_t inputs, int64_t rows, const float *w,
                             const float *xl, const float *d_pre, float *acc_w, float *acc_b, float *dxl) {
    for (int64_t t = 0; t < block; t++) {
        const float *d = d_pre + t * rows * lanes;
        for (int64_t l = 0; l < rows * lanes; l++) acc_b[l] += d[l];
        outer_acc(lanes, rows, inputs, d, xl + t * inputs * lanes, acc_w);
        if (dxl) recur_t(lanes, rows, inputs, w, NULL, d, dxl + t * inputs * lanes);
    }
}

/* pre[t][k][l] = bias[j][k] + bias2[j][k] + sum_i w_ih[j][k][i] x[j, s, t, i]; bias2 may be NULL.
 * x is read through stride[0..3] (j, s, t, i). */
static int input_part(int64_t steps, int64_t n, int64_t b, int64_t inputs, int64_t rows, const float *x,
                      const int64_t *stride, const float *w_ih, const float *bias, const float *bias2,
                      float *pre) {
    const int64_t lanes = n * b;
    /* a block of x, the weights and the bias spread over lanes */
    float *scratch = malloc(sizeof(float) * (STEP_BLOCK * inputs + rows * inputs + 2 * rows) * lanes + 1);
    if (!scratch) return -1;
    float *xl = scratch, *w = xl + STEP_BLOCK * inputs * lanes, *bl = w + rows * inputs * lanes;
    float *b2 = bl + rows * lanes;
    spread(n, b, rows * inputs, w_ih, w);
    spread(n, b, rows, bias, bl);
    if (bias2) {
        spread(n, b, rows, bias2, b2);
        for (int64_t l = 0; l < rows * lanes; l++) bl[l] += b2[l];
    }
    for (int64_t t0 = 0; t0 < steps; t0 += STEP_BLOCK) {
        const int64_t block = steps - t0 < STEP_BLOCK ? steps - t0 : STEP_BLOCK;
        gather_x(block, n, b, inputs, x + t0 * stride[2], stride, xl);
        input_steps(lanes, block, inputs, rows, w, bl, xl, pre + t0 * rows * lanes);
    }
    free(scratch);
    return 0;
}

/* d_w_ih[j][k][i] = sum_t,s d[t][k][l] x[j, s, t, i]; d_bias[j][k] = sum_t,s d[t][k][l];
 * d_x[j][s][t][i] = sum_k w_ih[j][k][i] d[t][k][l] (if d_x; contiguous) */
static int input_part_back(int64_t steps, int64_t n, int64_t b, int64_t inputs, int64_t rows, const float *x,
                           const int64_t *stride, const float *w_ih, const float *d_pre, float *d_x,
                           float *d_w_ih, float *d_bias) {
    const int64_t lanes = n * b, spread_w = rows * inputs * lanes, block_x = STEP_BLOCK * inputs * lanes;
    float *scratch = malloc(sizeof(float) * (2 * block_x + 2 * spread_w + rows * lanes) + 1);
    if (!scratch) return -1;
    float *xl = scratch, *dxl = xl + block_x, *w = dxl + block_x;
    float *acc_w = w + spread_w, *acc_b = acc_w + spread_w;
    memset(acc_w, 0, sizeof(float) * (spread_w + rows * lanes));
    spread(n, b, rows * inputs, w_ih, w);
    for (int64_t t0 = 0; t0 < steps; t0 += STEP_BLOCK) {
        const int64_t block = steps - t0 < STEP_BLOCK ? steps - t0 : STEP_BLOCK;
        gather_x(block, n, b, inputs, x + t0 * stride[2], stride, xl);
        input_steps_back(lanes, block, inputs, rows, w, xl, d_pre + t0 * rows * lanes, acc_w, acc_b,
                         d_x ? dxl : NULL);
        if (!d_x) continue;
        for (int64_t j = 0; j < n; j++)
            for (int64_t s = 0; s < b; s++)
                for (int64_t t = 0; t < block; t++)
                    for (int64_t i = 0; i < inputs; i++)
                        d_x[((j * b + s) * steps + t0 + t) * inputs + i] =
                            dxl[(t * inputs + i) * lanes + j * b + s];
    }
    per_trial(n, b, rows * inputs, acc_w, d_w_ih);
    per_trial(n, b, rows, acc_b, d_bias);
    free(scratch);
    return 0;
}

/* ---- One training step, fused ---- */

/* Where each parameter starts in a trial's row of the flat [n][P] tensor. */
enum { W_IH, W_HH, B_IH, B_HH, W_OUT, B_OUT, PARAMS };

/* out[j][k] = flat[j * stride + offset + k] for k < count */
static void unpack(int64_t n, int64_t count, const float *flat, int64_t stride, int64_t offset, float *out) {
    for (int64_t j = 0; j < n; j++) memcpy(out + j * count, flat + j * stride + offset, sizeof(float) * count);
}

static void pack(int64_t n, int64_t count, const float *in, int64_t stride, int64_t offset, float *flat) {
    for (int64_t j = 0; j < n; j++) memcpy(flat + j * stride + offset, in + j * count, sizeof(float) * count);
}

static inline int is_finite_(float v) { return v == v && v <= 3.40282347e38f && v >= -3.40282347e38f; }

/* A trial with a weight that is not finite is diverged, and a diverged trial's weights are zero. */
static void freeze(int64_t n, int64_t width_p, float *flat, uint8_t *diverged) {
    for (int64_t j = 0; j < n; j++) {
        float *row = flat + j * width_p;
        for (int64_t k = 0; k < width_p && !diverged[j]; k++)
            if (!is_finite_(row[k])) diverged[j] = 1;
        if (diverged[j]) memset(row, 0, sizeof(float) * width_p);
    }
}

/* as torch.nan_to_num: NaN to 0, infinities to the largest finite floats */
static inline float finite_(float v) {
    if (v != v) return 0.0f;
    if (v > 3.40282347e38f) return 3.40282347e38f;
    if (v < -3.40282347e38f) return -3.40282347e38f;
    return v;
}

/* Readout scores at steps [first, steps), each scored step's loss summed per trial (sum[j], in double,
 * count[j] scored steps) and d step loss / d score in dz [steps - first][C][L] (0 where unscored, and
 * where a raw score is not finite, as nan_to_num's gradient). y is int64 classes (IGNORE unscored) or,
 * for regression, float targets (NaN unscored), read through y_stride (j, s, t). */
static void readout_loss(int regression, int64_t steps, int64_t first, int64_t n, int64_t b, int64_t hidden,
                         int64_t classes, const float *states, const float *w_out, const float *b_out,
                         const void *y, const int64_t *y_stride, double *sum, int64_t *count, float *z,
                         float *dz) {
    const int64_t lanes = n * b;
    for (int64_t j = 0; j < n; j++) sum[j] = 0.0, count[j] = 0;
    for (int64_t t = first; t < steps; t++) {
        const float *h = states + t * hidden * lanes;
        float *d = dz + (t - first) * classes * lanes;
        recur(lanes, classes, hidden, w_out, b_out, h, z);
        for (int64_t j = 0; j < n; j++)
            for (int64_t s = 0; s < b; s++) {
                const int64_t l = j * b + s, at = j * y_stride[0] + s * y_stride[1] + (t - first) * y_stride[2];
                if (regression) {
                    const float target = ((const float *)y)[at];
                    const float raw = z[l];
                    if (target != target) {
                        d[l] = 0.0f;
                        continue;
                    }
                    const float error = finite_(raw) - target;
                    sum[j] += (double)(error * error);
                    count[j]++;
                    d[l] = is_finite_(raw) ? 2.0f * error : 0.0f;
                    continue;
                }
                const int64_t target = ((const int64_t *)y)[at];
                if (target == IGNORE_TARGET) {
                    for (int64_t c = 0; c < classes; c++) d[c * lanes + l] = 0.0f;
                    continue;
                }
                float top = finite_(z[l]);
                for (int64_t c = 1; c < classes; c++) {
                    const float v = finite_(z[c * lanes + l]);
                    top = v > top ? v : top;
                }
                float total = 0.0f;
                for (int64_t c = 0; c < classes; c++) {
                    const float e = exp_(finite_(z[c * lanes + l]) - top);
                    d[c * lanes + l] = e;
                    total += e;
                }
                const float lse = top + log_(total);
                sum[j] += (double)(lse - finite_(z[target * lanes + l]));
                count[j]++;
                for (int64_t c = 0; c < classes; c++) {
                    const float raw = z[c * lanes + l];
                    const float grad = d[c * lanes + l] / total - (c == target ? 1.0f : 0.0f);
                    d[c * lanes + l] = is_finite_(raw) ? grad : 0.0f;
                }
            }
    }
}

static int train_step(int cell, int regression, int64_t steps, int64_t first, int64_t n, int64_t b,
                      int64_t inputs, int64_t hidden, int64_t classes, float *flat, int64_t width_p,
                      const int64_t *offset, const float *x, const int64_t *x_stride, const void *y,
                      const int64_t *y_stride, uint8_t *diverged, float *loss, float *grad) {
    const int64_t lanes = n * b, rows = gates_of(cell) * hidden, width = hidden * lanes;
    const int64_t scored = steps - first, read_w = classes * hidden;
    const int64_t sizes[PARAMS] = {rows * inputs, rows * hidden, rows, rows, read_w, classes};
    int64_t total = 0;
    for (int p = 0; p < PARAMS; p++) total += n * sizes[p];
    /* per-trial losses, counts, weights and gradients, then per-lane work */
    const int64_t lane_floats = steps * (2 * rows * lanes + (2 + EXTRA_ROWS) * width) +
                                scored * classes * lanes + (2 * read_w + 2 * classes) * lanes +
                                steps * inputs * lanes + (2 * rows * inputs + 3 * rows) * lanes;
    double *sum = malloc(sizeof(double) * n + sizeof(int64_t) * n + sizeof(float) * (2 * total + lane_floats));
    if (!sum) return -1;
    int64_t *count = (int64_t *)(sum + n);
    float *wp[PARAMS], *gp[PARAMS];
    float *cursor = (float *)(count + n);
    for (int p = 0; p < PARAMS; p++) wp[p] = cursor, cursor += n * sizes[p];
    for (int p = 0; p < PARAMS; p++) gp[p] = cursor, cursor += n * sizes[p];
    float *pre = cursor, *states = pre + steps * rows * lanes, *gates = states + steps * width;
    float *extra = gates + steps * rows * lanes, *grad_states = extra + steps * EXTRA_ROWS * width;
    float *dz = grad_states + steps * width, *w_out = dz + scored * classes * lanes;
    float *b_out = w_out + read_w * lanes, *acc_w = b_out + classes * lanes, *acc_b = acc_w + read_w * lanes;
    float *xl = acc_b + classes * lanes, *w_ih = xl + steps * inputs * lanes, *acc_ih = w_ih + rows * inputs * lanes;
    float *b_in = acc_ih + rows * inputs * lanes, *b_hh = b_in + rows * lanes, *acc_bias = b_hh + rows * lanes;
    int status = -1;

    freeze(n, width_p, flat, diverged);
    for (int p = 0; p < PARAMS; p++) unpack(n, sizes[p], flat, width_p, offset[p], wp[p]);
    /* the input part as input_part computes it, on x gathered into lanes once for both passes */
    gather_x(steps, n, b, inputs, x, x_stride, xl);
    spread(n, b, rows * inputs, wp[W_IH], w_ih);
    spread(n, b, rows, wp[B_IH], b_in);
    if (cell != GRU) {
        spread(n, b, rows, wp[B_HH], b_hh);
        for (int64_t l = 0; l < rows * lanes; l++) b_in[l] += b_hh[l];
    }
    input_steps(lanes, steps, inputs, rows, w_ih, b_in, xl, pre);
    const int keeps = gates_of(cell) > 1;
    if (forward(cell, steps, n, b, hidden, pre, wp[W_HH], cell == GRU ? wp[B_HH] : NULL, states,
                keeps ? gates : NULL, keeps ? extra : NULL))
        goto done;

    spread(n, b, read_w, wp[W_OUT], w_out);
    spread(n, b, classes, wp[B_OUT], b_out);
    /* the scores of one step land in acc_w, free until the backward pass */
    readout_loss(regression, steps, first, n, b, hidden, classes, states, w_out, b_out, y, y_stride, sum, count,
                 acc_w, dz);
    for (int64_t j = 0; j < n; j++) {
        const float mean = (float)sum[j] / (float)(count[j] > 1 ? count[j] : 1);
        if (!is_finite_(mean)) diverged[j] = 1;
        /* a diverged trial's loss is masked out: it sends back no gradient */
        const float scale = diverged[j] ? 0.0f : 1.0f / (float)(count[j] > 1 ? count[j] : 1);
        loss[j] = mean;
        for (int64_t l = j * b; l < (j + 1) * b; l++)
            for (int64_t r = 0; r < scored * classes; r++) dz[r * lanes + l] *= scale;
    }

    memset(acc_w, 0, sizeof(float) * (read_w + classes) * lanes);
    memset(grad_states, 0, sizeof(float) * first * width);
    for (int64_t t = first; t < steps; t++) {
        const float *d = dz + (t - first) * classes * lanes;
        recur_t(lanes, classes, hidden, w_out, NULL, d, grad_states + t * width);
        outer_acc(lanes, classes, hidden, d, states + t * width, acc_w);
        for (int64_t l = 0; l < classes * lanes; l++) acc_b[l] += d[l];
    }
    per_trial(n, b, read_w, acc_w, gp[W_OUT]);
    per_trial(n, b, classes, acc_b, gp[B_OUT]);
    /* d pre reuses pre, read for the last time above */
    if (backward(cell, steps, n, b, hidden, grad_states, wp[W_HH], states, gates, extra, pre, gp[W_HH],
                 gp[B_HH]))
        goto done;
    memset(acc_ih, 0, sizeof(float) * rows * inputs * lanes);
    memset(acc_bias, 0, sizeof(float) * rows * lanes);
    input_steps_back(lanes, steps, inputs, rows, w_ih, xl, pre, acc_ih, acc_bias, NULL);
    per_trial(n, b, rows * inputs, acc_ih, gp[W_IH]);
    per_trial(n, b, rows, acc_bias, gp[B_IH]);
    if (cell == MEMORYLESS)
        memset(gp[B_HH], 0, sizeof(float) * n * rows);
    else if (cell != GRU)
        memcpy(gp[B_HH], gp[B_IH], sizeof(float) * n * rows);
    for (int p = 0; p < PARAMS; p++) pack(n, sizes[p], gp[p], width_p, offset[p], grad);
    for (int64_t j = 0; j < n; j++)
        if (diverged[j]) memset(grad + j * width_p, 0, sizeof(float) * width_p);
    status = 0;
done:
    free(sum);
    return status;
}

/* ---- Optimizer steps: torch's update rules, with the hyper-parameters the caller passes ---- */

enum { ADAM = 0, SGD = 1, RMSPROP = 2 };

/* hyper[]: the learning rate, Adam's betas, the epsilon of Adam and RMSprop, RMSprop's alpha, the clip norm */
enum { LR, BETA1, BETA2, EPS, ALPHA, CLIP, HYPER };

/* clock[]: optimizer steps taken, and Adam's beta1 and beta2 to the power of that count */
enum { STEPS_TAKEN, BETA1_POWER, BETA2_POWER, CLOCK };

/* grad[j] *= min(1, max_norm / (|grad[j]| + 1e-6)) for every trial j, as the engine's clip does */
static void clip_rows(int64_t n, int64_t width_p, float *grad, float max_norm) {
    for (int64_t j = 0; j < n; j++) {
        float *row = grad + j * width_p;
        double squares = 0.0;
        for (int64_t k = 0; k < width_p; k++) squares += (double)row[k] * row[k];
        /* the sum of squares as a float, as torch's norm holds it: above the largest float (a norm
         * past 1.8e19) it is infinite and the factor 0, where a norm taken in double would clip */
        const float factor = max_norm / (__builtin_sqrtf((float)squares) + 1e-6f);
        if (factor < 1.0f)
            for (int64_t k = 0; k < width_p; k++) row[k] *= factor;
    }
}

/* One update of every weight from its gradient. Every trial's state is its own: the rules work
 * elementwise. state holds Adam's first and second moments ([2][count]) or RMSprop's square average. */
static void update(int optimizer, int64_t count, float *restrict p, const float *restrict g,
                   float *restrict state, const double *hyper, double *clock) {
    clock[STEPS_TAKEN] += 1.0;
    if (optimizer == SGD) {
        const float lr = (float)hyper[LR];
        for (int64_t k = 0; k < count; k++) p[k] -= lr * g[k];
    } else if (optimizer == RMSPROP) {
        const float lr = (float)hyper[LR], eps = (float)hyper[EPS];
        const float alpha = (float)hyper[ALPHA], rest = (float)(1.0 - hyper[ALPHA]);
        for (int64_t k = 0; k < count; k++) {
            state[k] = state[k] * alpha + rest * g[k] * g[k];
            p[k] -= lr * g[k] / (__builtin_sqrtf(state[k]) + eps);
        }
    } else {
        float *restrict m = state, *restrict v = state + count;
        clock[BETA1_POWER] *= hyper[BETA1];
        clock[BETA2_POWER] *= hyper[BETA2];
        /* the bias corrections in double, as torch computes them, then the update in float */
        const float step_size = (float)(hyper[LR] / (1.0 - clock[BETA1_POWER]));
        const float correction2_sqrt = (float)__builtin_sqrt(1.0 - clock[BETA2_POWER]);
        const float w1 = (float)(1.0 - hyper[BETA1]), beta2 = (float)hyper[BETA2];
        const float w2 = (float)(1.0 - hyper[BETA2]), eps = (float)hyper[EPS];
        for (int64_t k = 0; k < count; k++) {
            m[k] += w1 * (g[k] - m[k]);
            v[k] = v[k] * beta2 + w2 * g[k] * g[k];
            p[k] -= step_size * m[k] / (__builtin_sqrtf(v[k]) / correction2_sqrt + eps);
        }
    }
}

/* Minibatches whose sequences are copied together, in their order, before they are trained on: at
 * most GROUP_BATCHES, and at most GROUP_FLOATS inputs of all trials unless one minibatch has more. */
#define GROUP_BATCHES 32
#define GROUP_FLOATS (1 << 22)

/* Sequences fetched ahead of the one being copied: the rows of a shuffled order each miss the cache,
 * and asking early lets those misses overlap. */
#define FETCH_AHEAD 8

/* out[j][s][:] = rows[j][order[j * order_stride + s]][:] for s < count, where a row is `width` elements of
 * `size` bytes at rows + (j * trial_stride + r * row_stride) elements: each trial's sequences in order. */
static void gather_rows(int64_t n, int64_t count, int64_t width, int64_t size, const char *rows,
                        int64_t trial_stride, int64_t row_stride, const int64_t *order, int64_t order_stride,
                        char *out) {
    const int64_t bytes = width * size;
    for (int64_t j = 0; j < n; j++) {
        const char *trial = rows + j * trial_stride * size;
        const int64_t *picked = order + j * order_stride;
        for (int64_t s = 0; s < count; s++) {
            if (s + FETCH_AHEAD < count) {
                const char *ahead = trial + picked[s + FETCH_AHEAD] * row_stride * size;
                for (int64_t at = 0; at < bytes; at += 64) __builtin_prefetch(ahead + at);
            }
            memcpy(out + (j * count + s) * bytes, trial + picked[s] * row_stride * size, bytes);
        }
    }
}

/* The minibatches of sequences order[j][0 .. count) of every trial j, `batch` at a time (the last one
 * may be short): for each, train_step, the clip (hyper[CLIP] > 0), the optimizer's update, and
 * total[j] += the trial's loss. Ends by freezing the trials the last update made diverge. Each
 * sequence's steps are contiguous in x ([n][S][T][I]) and y ([n][S][T - first]), whose trials and
 * sequences are read through x_stride[0..1] and y_stride[0..1]. */
static int train_batches(int cell, int regression, int64_t steps, int64_t first, int64_t n, int64_t count,
                         int64_t batch, int64_t inputs, int64_t hidden, int64_t classes, float *flat,
                         int64_t width_p, const int64_t *offset, const float *x, const int64_t *x_stride,
                         const void *y, const int64_t *y_stride, const int64_t *order, int64_t order_stride,
                         uint8_t *diverged, float *total, int optimizer, const double *hyper, float *state,
                         double *clock) {
    const int64_t batch_x = n * batch * steps * inputs, fits = GROUP_FLOATS / batch_x;
    const int64_t group = (fits < 1 ? 1 : fits > GROUP_BATCHES ? GROUP_BATCHES : fits) * batch;
    const int64_t scored = steps - first;
    const int64_t y_size = regression ? sizeof(float) : sizeof(int64_t);
    const int64_t group_x = n * group * steps * inputs, group_y = n * group * scored;
    /* the floats before the targets, an even count: int64 targets must start on 8 bytes */
    const int64_t before_y = (n * width_p + n + group_x + 1) / 2 * 2;
    float *grad = malloc(sizeof(float) * before_y + y_size * group_y + 1);
    if (!grad) return -1;
    float *loss = grad + n * width_p, *xg = loss + n;
    char *yg = (char *)(grad + before_y);
    int status = 0;
    for (int64_t from = 0; from < count && !status; from += group) {
        const int64_t taken = count - from < group ? count - from : group;
        const int64_t xg_stride[4] = {taken * steps * inputs, steps * inputs, inputs, 1};
        const int64_t yg_stride[3] = {taken * scored, scored, 1};
        gather_rows(n, taken, steps * inputs, sizeof(float), (const char *)x, x_stride[0], x_stride[1],
                    order + from, order_stride, (char *)xg);
        gather_rows(n, taken, scored, y_size, (const char *)y, y_stride[0], y_stride[1], order + from,
                    order_stride, yg);
        for (int64_t start = 0; start < taken && !status; start += batch) {
            const int64_t b = taken - start < batch ? taken - start : batch;
            status = train_step(cell, regression, steps, first, n, b, inputs, hidden, classes, flat, width_p,
                                offset, xg + start * xg_stride[1], xg_stride, yg + start * scored * y_size,
                                yg_stride, diverged, loss, grad);
            if (status) break;
            if (hyper[CLIP] > 0.0) clip_rows(n, width_p, grad, (float)hyper[CLIP]);
            update(optimizer, n * width_p, flat, grad, state, hyper, clock);
            for (int64_t j = 0; j < n; j++) total[j] += loss[j];
        }
    }
    if (!status) freeze(n, width_p, flat, diverged);
    free(grad);
    return status;
}

/* A cumulative log-sum-exp along the middle dimension of [outer][T][inner], for users' cells
 * (scan.py): y_0 = x_0, y_t = log(exp(y_(t-1)) + exp(x_t)), as torch.logcumsumexp computes it.
 * The scans run over [T][L] blocks (lanes innermost, vectorised): a block of one outer index
 * where inner is wide, else a few outer indices' sequences copied together into a buffer. What
 * is carried from step to step (y, and the backward pass's r) is kept in double, as torch keeps
 * its running value: in float its rounding would grow with the length. */

/* The scans' loops in the machine's widest vectors: GCC prefers 256 bits where 512 are there,
 * which measured here took a block half again as long (its exponentials and logarithms are many
 * instructions, and wider vectors run fewer of them) */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("prefer-vector-width=512")
#endif
/* exp(d) for d <= 0, exactly 0 below -87 where exp_ would clamp */
static inline float decay_(float d) { return d < -87.0f ? 0.0f : exp_(d); }

/* log(exp(a) + exp(b)), the running value a in double */
static inline double log_add_exp_(double a, float x) {
    const double b = x, hi = a > b ? a : b, lo = a > b ? b : a;
    const float u = decay_((float)(lo - hi)), s = 1.0f + u;
    /* log1p(u) that keeps a small u: log(1 + u) * u / ((1 + u) - 1) (Goldberg) */
    const float l = s == 1.0f ? u : log_(s) * (u / (s - 1.0f));
    /* equal terms, infinities included (where lo - hi is NaN), add log 2 */
    return lo == hi ? hi + 0.6931471805599453 : hi + (double)l;
}

static void log_cum_sum_exp(int64_t steps, int64_t lanes, in_t x, out_t y, double *restrict carry) {
    for (int64_t l = 0; l < lanes; l++) y[l] = (float)(carry[l] = x[l]);
    for (int64_t t = 1; t < steps; t++) {
        in_t now = x + t * lanes;
        out_t out = y + t * lanes;
        for (int64_t l = 0; l < lanes; l++) out[l] = (float)(carry[l] = log_add_exp_(carry[l], now[l]));
    }
}

/* d y_s / d x_t = exp(x_t - y_s) for s >= t, so dx_t = e_t r_t with e_t = exp(x_t - y_t) and
 * r_t = g_t + exp(y_t - y_(t+1)) r_(t+1), where exp(y_t - y_(t+1)) = 1 - e_(t+1): every factor is
 * at most 1, as y never decreases and y_t >= x_t, and one exponential a step serves both. A y's
 * shares of its terms, e_t (1 - e_(t+1)) ... (1 - e_s), sum to 1 by construction, since e_0 = 1.
 * Equal values (infinities included) differ by 0: where infinities tie, the later term takes the
 * whole share, finite where torch's gradient is NaN. */
static inline float gap_(float below, float above) { return below == above ? 0.0f : below - above; }

static void log_cum_sum_exp_back(int64_t steps, int64_t lanes, in_t x, in_t y, in_t g, out_t dx,
                                 double *restrict r, float *restrict e) {
    const int64_t last = (steps - 1) * lanes;
    for (int64_t l = 0; l < lanes; l++) {
        r[l] = g[last + l];
        e[l] = decay_(gap_(x[last + l], y[last + l]));
        dx[last + l] = (float)((double)e[l] * r[l]);
    }
    for (int64_t t = steps - 2; t >= 0; t--) {
        const int64_t at = t * lanes;
        for (int64_t l = 0; l < lanes; l++) {
            /* in double: a factor within float32's rounding of 1, repeated over the scan, would drift */
            r[l] = (double)g[at + l] + (1.0 - (double)e[l]) * r[l];
            e[l] = decay_(gap_(x[at + l], y[at + l]));
            dx[at + l] = (float)((double)e[l] * r[l]);
        }
    }
}

/* lanes scanned together when the inner dimension is narrower */
#define SCAN_LANES 256

/* n floats from src to dst, eight at a time where it can: a row here is one sequence's step,
 * often eight or sixteen lanes wide, too short for memcpy's call to pay */
static inline void copy_row(float *restrict dst, const float *restrict src, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) dst[i + k] = src[i + k];
    for (; i < n; i++) dst[i] = src[i];
}

/* [c][T][inner] at src <-> [T][c * inner] at block */
static void to_block(int64_t c, int64_t steps, int64_t inner, const float *src, float *block) {
    if (inner == 1) { /* a transpose, kept apart so that the compiler sees no inner loop */
        for (int64_t t = 0; t < steps; t++)
            for (int64_t j = 0; j < c; j++) block[t * c + j] = src[j * steps + t];
        return;
    }
    for (int64_t j = 0; j < c; j++)
        for (int64_t t = 0; t < steps; t++) copy_row(block + (t * c + j) * inner, src + (j * steps + t) * inner, inner);
}

static void from_block(int64_t c, int64_t steps, int64_t inner, const float *block, float *dst) {
    if (inner == 1) {
        for (int64_t j = 0; j < c; j++)
            for (int64_t t = 0; t < steps; t++) dst[j * steps + t] = block[t * c + j];
        return;
    }
    for (int64_t j = 0; j < c; j++)
        for (int64_t t = 0; t < steps; t++) copy_row(dst + (j * steps + t) * inner, block + (t * c + j) * inner, inner);
}

/* y = logcumsumexp(x) (backward: dx from x, y and g) over [outer][T][inner] */
static int log_cum_sum_exp_all(int backward, int64_t outer, int64_t steps, int64_t inner, const float *x,
                               const float *y, const float *g, float *out) {
    const int64_t whole = steps * inner;
    /* outer indices a block holds: one scans in place */
    int64_t per = SCAN_LANES / inner;
    per = per > outer ? outer : per < 1 ? 1 : per;
    const int64_t lanes = per * inner, buffered = per > 1 ? (backward ? 4 : 2) * per * whole : 0;
    double *carry = malloc((size_t)lanes * (sizeof(double) + sizeof(float)));
    float *buffer = buffered ? malloc((size_t)buffered * sizeof(float)) : NULL;
    if (carry == NULL || (buffered && buffer == NULL)) {
        free(carry);
        free(buffer);
        return -1;
    }
    float *shares = (float *)(carry + lanes);
    float *bx = buffer, *bo = buffer + per * whole, *by = bo + per * whole, *bg = by + per * whole;
    for (int64_t o = 0; o < outer; o += per) {
        const int64_t c = outer - o < per ? outer - o : per, at = o * whole;
        if (per == 1) {
            if (backward)
                log_cum_sum_exp_back(steps, inner, x + at, y + at, g + at, out + at, carry, shares);
            else
                log_cum_sum_exp(steps, inner, x + at, out + at, carry);
            continue;
        }
        to_block(c, steps, inner, x + at, bx);
        if (backward) {
            to_block(c, steps, inner, y + at, by);
            to_block(c, steps, inner, g + at, bg);
            log_cum_sum_exp_back(steps, c * inner, bx, by, bg, bo, carry, shares);
        } else {
            log_cum_sum_exp(steps, c * inner, bx, bo, carry);
        }
        from_block(c, steps, inner, bo, out + at);
    }
    free(buffer);
    free(carry);
    return 0;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

static unsigned int flush_subnormals(void) {
#if defined(__SSE__)
    const unsigned int before = _mm_getcsr();
    _mm_setcsr(before | 0x8040); /* flush to zero, denormals are zero */
    return before;
#else
    return 0;
#endif
}

static void restore_subnormals(unsigned int before) {
#if defined(__SSE__)
    _mm_setcsr(before);
#else
    (void)before;
#endif
}

int rnnm_forward(int cell, int64_t steps, int64_t n, int64_t b, int64_t hidden, const float *pre,
                 const float *weight_hh, const float *bias_hh, float *states, float *gates, float *extra) {
    const unsigned int mode = flush_subnormals();
    const int status = forward(cell, steps, n, b, hidden, pre, weight_hh, bias_hh, states, gates, extra);
    restore_subnormals(mode);
    return status;
}

int rnnm_backward(int cell, int64_t steps, int64_t n, int64_t b, int64_t hidden, const float *grad_states,
                  const float *weight_hh, const float *states, const float *gates, const float *extra,
                  float *d_pre, float *d_w, float *d_b) {
    const unsigned int mode = flush_subnormals();
    const int status = backward(cell, steps, n, b, hidden, grad_states, weight_hh, states, gates, extra,
                                d_pre, d_w, d_b);
    restore_subnormals(mode);
    return status;
}

int rnnm_input(int64_t steps, int64_t n, int64_t b, int64_t inputs, int64_t rows, const float *x,
               const int64_t *x_stride, const float *w_ih, const float *bias, const float *bias2,
               float *pre) {
    const unsigned int mode = flush_subnormals();
    const int status = input_part(steps, n, b, inputs, rows, x, x_stride, w_ih, bias, bias2, pre);
    restore_subnormals(mode);
    return status;
}

int rnnm_input_backward(int64_t steps, int64_t n, int64_t b, int64_t inputs, int64_t rows, const float *x,
                        const int64_t *x_stride, const float *w_ih, const float *d_pre, float *d_x,
                        float *d_w_ih, float *d_bias) {
    const unsigned int mode = flush_subnormals();
    const int status =
        input_part_back(steps, n, b, inputs, rows, x, x_stride, w_ih, d_pre, d_x, d_w_ih, d_bias);
    restore_subnormals(mode);
    return status;
}

int rnnm_train_batches(int cell, int regression, int64_t steps, int64_t first, int64_t n, int64_t count,
                       int64_t batch, int64_t inputs, int64_t hidden, int64_t classes, float *flat,
                       int64_t width_p, const int64_t *offset, const float *x, const int64_t *x_stride,
                       const void *y, const int64_t *y_stride, const int64_t *order, int64_t order_stride,
                       uint8_t *diverged, float *total, int optimizer, const double *hyper, float *state,
                       double *clock) {
    const unsigned int mode = flush_subnormals();
    const int status = train_batches(cell, regression, steps, first, n, count, batch, inputs, hidden, classes,
                                     flat, width_p, offset, x, x_stride, y, y_stride, order, order_stride,
                                     diverged, total, optimizer, hyper, state, clock);
    restore_subnormals(mode);
    return status;
}

int rnnm_logcumsumexp(int64_t outer, int64_t steps, int64_t inner, const float *x, float *y) {
    const unsigned int mode = flush_subnormals();
    const int status = log_cum_sum_exp_all(0, outer, steps, inner, x, NULL, NULL, y);
    restore_subnormals(mode);
    return status;
}

int rnnm_logcumsumexp_backward(int64_t outer, int64_t steps, int64_t inner, const float *x, const float *y,
                               const float *g, float *dx) {
    const unsigned int mode = flush_subnormals();
    const int status = log_cum_sum_exp_all(1, outer, steps, inner, x, y, g, dx);
    restore_subnormals(mode);
    return status;
}
