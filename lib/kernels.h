/* kernels.h - the transformer's forward kernels on flat float arrays.
 *
 * Outputs first, then inputs, then sizes.  Legend: N = tokens, D = model
 * dim, H = heads, G = kv heads, hd = head dim, F = feed-forward, V = vocab,
 * T = cache positions.  Every optimised kernel has a plain-loop _ref beside
 * it; tests/test_kernels.c holds them to each other.  The hand-vectorised
 * ones are built with FMA and without, and run on the SIMD path simd.h
 * chose (PARM_SIMD): their last bits depend on it.
 *
 * The fast kernels run on a small pool of threads (parm_kernels_set_threads);
 * while they do, OpenBLAS is asked to stay on one thread so the two pools
 * never fight over the cores.
 */
#ifndef PARM_KERNELS_H
#define PARM_KERNELS_H

#include <stdint.h>
#include <parm/gguf.h>
#include <parm/model.h>

/* Threads of the kernel pool (default: the online CPUs). */
void parm_kernels_set_threads(int n);
int parm_kernels_threads(void);

/* Whether inference may quantise activations to 8 bits for an integer
 * dot (matmul_job.x8): 1 unless the environment's PARM_INT8 is 0, until
 * this sets it.  Off, inference on K-quant weights sums floats, as on
 * their f32 copy but for the order of the sums. */
void parm_kernels_set_int8(int on);
int parm_kernels_int8(void);

/* y[N][out] = x[N][in] W^T, W[out][in] rows of type t (in a multiple of
 * the type's block).  Weights are read in place: quantised ones, and any
 * for a few tokens, a tile of rows at a time; f32 weights for many tokens
 * in output blocks of a fixed size, so the result is the same bytes
 * whatever the thread count. */
void parm_matmul_forward(float *y, const float *x, const void *w, enum parm_ggml_type t,
		    int n, int in, int out);
void parm_matmul_forward_ref(float *y, const float *x, const void *w, enum parm_ggml_type t,
			int n, int in, int out);

/* Several independent matmuls in one parallel pass (q, k, v share x).
 * x8: inference's choice of x quantised to 8 bits for weights of a type
 * with an integer dot (parm_quant_dot_x8_ok), as llama.cpp does, unless
 * parm_kernels_set_int8 turned it off; training keeps x in floats. */
typedef struct {
	float *y;
	const float *x;
	const void *w;
	enum parm_ggml_type t;
	int in, out;
	int x8;
	const void *packed;     /* w packed for x8 (parm_quant_pack), or NULL */
} matmul_job;
void parm_matmul_many_forward(const matmul_job *jobs, int n_jobs, int n);

/* out[N][D] = rows tokens[N] of the table[V][D] of type t. */
void parm_embed_forward(float *out, const void *table, enum parm_ggml_type t,
		   const int *tokens, int n, int d);

/* out[N][D] = x / sqrt(mean(x^2) + eps) * w[D]; out may be x. */
void parm_rmsnorm_forward(float *out, const float *x, const float *w, int n, int d, float eps);
void parm_rmsnorm_forward_ref(float *out, const float *x, const float *w, int n, int d, float eps);


/* Rotate x[N][heads][hd] in place by the positions pos[N]. */
void parm_rope_forward(float *x, const int *pos, int n, int heads, int hd, const parm_rope *rp);
void parm_rope_forward_ref(float *x, const int *pos, int n, int heads, int hd, const parm_rope *rp);

/* Causal grouped-query attention over a cache.  Token i attends to the
 * positions 0..pos[i] of its own cache kc[i], vc[i] ([T][G][hd] each);
 * head h reads kv head h / (H / G).  out[N][H][hd], q[N][H][hd]. */
void parm_attention_forward(float *out, const float *q, const float *const *kc,
		       const float *const *vc, const int *pos, int n,
		       int heads, int kv_heads, int hd);
void parm_attention_forward_ref(float *out, const float *q, const float *const *kc,
			   const float *const *vc, const int *pos, int n,
			   int heads, int kv_heads, int hd);

/* out[N*F] = silu(gate) * up; out may be gate. */
void parm_swiglu_forward(float *out, const float *gate, const float *up, int64_t count);
void parm_swiglu_forward_ref(float *out, const float *gate, const float *up, int64_t count);

/* Row-wise over x[N][V]; out may be x. */
void parm_softmax_forward(float *out, const float *x, int n, int v);
void parm_softmax_forward_ref(float *out, const float *x, int n, int v);
/* The one log-softmax (training, guidance, sampling): (x - max) - log sum,
 * the sum in double; a row with no finite maximum (all -inf or NaN, or a
 * +inf) is copied unchanged. */
void parm_log_softmax_forward(float *out, const float *x, int n, int v);
void parm_log_softmax_forward_ref(float *out, const float *x, int n, int v);

/* ---- training ----
 *
 * Backward passes, llm.c style: each _backward sits beside its forward,
 * takes the output's gradient and ACCUMULATES (+=) into the gradients of
 * the inputs and weights, so a tensor used twice (a tied embedding, the
 * residual stream) simply receives both contributions.  Any gradient
 * output given as NULL is not computed.  Legend: N = tokens of a packed
 * batch, S = sequences in it.
 */

/* dx[N][in] += dy[N][out] W for W[out][in] of any type (a tile of rows is
 * dequantised at a time, so frozen quantised weights are read in place);
 * dw[out][in] += dy^T x (f32 weights only: trainable weights are f32). */
void parm_matmul_backward(float *dx, float *dw, const float *dy, const float *x,
		     const void *w, enum parm_ggml_type t, int n, int in, int out);
void parm_matmul_backward_ref(float *dx, float *dw, const float *dy, const float *x,
			 const void *w, enum parm_ggml_type t, int n, int in, int out);

/* dtable[V][D] (f32) rows tokens[n] += dout[N][D]. */
void parm_embed_backward(float *dtable, const float *dout, const int *tokens, int n, int d);

/* From the forward's input x[N][D] (not its output). */
void parm_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x,
		      const float *w, int n, int d, float eps);
void parm_rmsnorm_backward_ref(float *dx, float *dw, const float *dout, const float *x,
			  const float *w, int n, int d, float eps);

/* The rotation is orthogonal (times mscale): the gradient of the rotated
 * x[N][heads][hd] is turned back in place by the transposed rotation,
 * angle -theta, times mscale. */
void parm_rope_backward(float *dx, const int *pos, int n, int heads, int hd, const parm_rope *rp);

/* Causal grouped-query attention for training, no cache: the tokens of
 * sequence s are rows start[s] .. start[s] + len[s] - 1 of q[N][H][hd],
 * k[N][G][hd], v[N][G][hd], and each attends to its own sequence up to
 * itself.  lse[N][H] keeps every row's log-sum-exp of the scaled scores:
 * the backward pass recomputes the probabilities from it (one more Q K^T
 * per head) instead of keeping S x H x T x T of them. */
void parm_attention_train_forward(float *out, float *lse, const float *q, const float *k,
			     const float *v, const int *start, const int *len, int n_seq,
			     int heads, int kv_heads, int hd);
void parm_attention_train_forward_ref(float *out, float *lse, const float *q, const float *k,
				 const float *v, const int *start, const int *len, int n_seq,
				 int heads, int kv_heads, int hd);
void parm_attention_train_backward(float *dq, float *dk, float *dv, const float *dout,
			      const float *q, const float *k, const float *v,
			      const float *out, const float *lse, const int *start,
			      const int *len, int n_seq, int heads, int kv_heads, int hd);
void parm_attention_train_backward_ref(float *dq, float *dk, float *dv, const float *dout,
				  const float *q, const float *k, const float *v,
				  const float *out, const float *lse, const int *start,
				  const int *len, int n_seq, int heads, int kv_heads, int hd);

/* From the forward's inputs gate, up [count] (parm_vexp's exp, on the pool). */
void parm_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
		     const float *up, int64_t count);
void parm_swiglu_backward_ref(float *dgate, float *dup, const float *dout, const float *gate,
			 const float *up, int64_t count);

/* dx[N][V] += dout - exp(out) sum(dout), out = log_softmax(x). */
void parm_log_softmax_backward(float *dx, const float *dout, const float *out, int n, int v);

/* y[count] = exp(x[count]), 8 lanes at a time, within 2.5e-7 relative of
 * expf for normal results (smaller ones underflow gradually to 0); -inf
 * gives 0, +inf inf, NaN NaN; y may be x.  The log-prob kernels below use
 * it; the reference is expf. */
void parm_vexp(float *y, const float *x, int64_t count);
void parm_vexp_ref(float *y, const float *x, int64_t count);

/* logp[N] = log_softmax(logits[n])[targets[n]], without writing the row
 * (rows run on the kernel pool). */
void parm_logprob_forward(float *logp, const float *logits, const int *targets, int n, int v);
void parm_logprob_forward_ref(float *logp, const float *logits, const int *targets, int n, int v);
/* dlogits[N][V] += dlogp[n] (onehot(targets[n]) - softmax(logits[n])). */
void parm_logprob_backward(float *dlogits, const float *dlogp, const float *logits,
		      const int *targets, int n, int v);
void parm_logprob_backward_ref(float *dlogits, const float *dlogp, const float *logits,
			  const int *targets, int n, int v);

/* Cross-entropy is the negated log-prob: losses[N] = -logp. */
void parm_crossentropy_forward(float *losses, const float *logits, const int *targets, int n, int v);
void parm_crossentropy_backward(float *dlogits, const float *dlosses, const float *logits,
			   const int *targets, int n, int v);

#endif
