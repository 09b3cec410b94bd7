/* test_optim - AdamW against a hand-worked example and the plain loop,
 * the cosine schedule, gradient clipping. */
#include "tap.h"
#include <parm/optim.h>
#include <parm/util.h>

#include <math.h>
#include <string.h>

static int near(double a, double b, double tol)
{
	return fabs(a - b) <= tol * (1 + fabs(b));
}

/* One parameter p = 1, lr 0.1, wd 0.01, gradients 0.5 then -0.25:
 * step 1: p = 0.999 (decay); m = 0.05, v = 0.00025; m̂ = 0.5, v̂ = 0.25;
 *         p -= 0.1 * 0.5 / (0.5 + 1e-8)          -> 0.899000002
 * step 2: p = 0.899000002 * 0.999; m = 0.02, v = 0.00031225;
 *         m̂ = 0.02/0.19, v̂ = 0.00031225/0.001999 = 0.1562031;
 *         p -= 0.1 * 0.1052632 / (0.3952254 + 1e-8)  -> 0.8714673 */
static void test_hand_example(void)
{
	float p = 1, g = 0;
	parm_adamw o;
	parm_adamw_init(&o, 0.01f);
	parm_adamw_add(&o, &p, &g, 1, 1);
	g = 0.5f;
	parm_adamw_step(&o, 0.1f);
	ok(near(p, 0.899000002, 1e-6) && near(o.m[0], 0.05, 1e-6) &&
	   near(o.v[0], 0.00025, 1e-6), "AdamW step 1: p %.9f m %g v %g", p, o.m[0], o.v[0]);
	g = -0.25f;
	parm_adamw_step(&o, 0.1f);
	ok(near(p, 0.8714672987, 1e-6) && near(o.m[0], 0.02, 1e-6) &&
	   near(o.v[0], 0.00031225, 1e-6) && o.step == 2,
	   "AdamW step 2: p %.9f (hand 0.871467299) m %g v %g", p, o.m[0], o.v[0]);
	parm_adamw_free(&o);

	p = 1, g = 0.5f;
	parm_adamw_init(&o, 0.01f);
	parm_adamw_add(&o, &p, &g, 1, 0);
	parm_adamw_step(&o, 0.1f);
	ok(near(p, 0.9, 1e-6), "no decay in a group without it: p %.9f", p);
	parm_adamw_free(&o);
}

static float frand(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static void test_against_ref(void)
{
	enum { N = 1003, STEPS = 50 };
	float *p = parm_xmalloc(N * sizeof *p), *pr = parm_xmalloc(N * sizeof *pr);
	float *m = parm_xcalloc(N, sizeof *m), *v = parm_xcalloc(N, sizeof *v);
	float *mr = parm_xcalloc(N, sizeof *mr), *vr = parm_xcalloc(N, sizeof *vr);
	float *g = parm_xmalloc(N * sizeof *g);
	unsigned s = 7;
	double worst = 0;
	for (int i = 0; i < N; i++)
		p[i] = pr[i] = frand(&s);
	for (long t = 1; t <= STEPS; t++) {
		for (int i = 0; i < N; i++)
			g[i] = frand(&s) * (i % 7 == 0 ? 1e-4f : 1.0f);
		parm_adamw_update(p, m, v, g, N, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.05f, t);
		parm_adamw_update_ref(pr, mr, vr, g, N, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.05f, t);
	}
	for (int i = 0; i < N; i++)
		worst = fmax(worst, fabs(p[i] - pr[i]));
	ok(worst < 1e-5, "AdamW = plain-loop reference over %d steps (max |dp| %.2g)",
	   STEPS, worst);
	free(p), free(pr), free(m), free(v), free(mr), free(vr), free(g);
}

/* HF get_cosine_schedule_with_warmup(warmup 20, total 120), peak 5e-4. */
static void test_schedule(void)
{
	const float peak = 5e-4f;
	ok(parm_cosine_lr(0, 20, 120, peak) == 0, "lr at step 0 of a warm-up is 0");
	ok(near(parm_cosine_lr(5, 20, 120, peak), 1.25e-4, 1e-6), "lr at 5/20 warm-up: 1.25e-4");
	ok(near(parm_cosine_lr(20, 20, 120, peak), 5e-4, 1e-6), "lr at the end of warm-up: peak");
	ok(near(parm_cosine_lr(70, 20, 120, peak), 2.5e-4, 1e-6), "lr half way: peak/2");
	ok(near(parm_cosine_lr(45, 20, 120, peak), 5e-4 * 0.5 * (1 + cos(M_PI * 0.25)), 1e-6),
	   "lr a quarter way: %g", parm_cosine_lr(45, 20, 120, peak));
	ok(parm_cosine_lr(120, 20, 120, peak) < 1e-12, "lr at the end: 0");
	ok(near(parm_cosine_lr(0, 0, 10, peak), 5e-4, 1e-6), "no warm-up starts at peak");
}

static void test_clip(void)
{
	float p[5] = {0}, g1[3] = {3, 0, 0}, g2[2] = {0, 4};
	parm_adamw o;
	parm_adamw_init(&o, 0);
	parm_adamw_add(&o, p, g1, 3, 1);
	parm_adamw_add(&o, p + 3, g2, 2, 0);
	ok(o.n_total == 5, "state holds both groups");
	float norm = parm_clip_grad_norm(&o, 10);
	ok(near(norm, 5, 1e-6) && g1[0] == 3 && g2[1] == 4, "norm 5 under 10: unchanged");
	norm = parm_clip_grad_norm(&o, 1);
	ok(near(norm, 5, 1e-6), "returns the norm before clipping (%g)", norm);
	ok(near(parm_grad_norm(&o), 1, 1e-5) && near(g1[0] / g2[1], 0.75, 1e-6),
	   "clipped to norm 1 (%g), direction kept", parm_grad_norm(&o));
	parm_adamw_zero_grad(&o);
	ok(parm_grad_norm(&o) == 0, "zero_grad clears every group");
	parm_adamw_free(&o);
}

/* Saving m, v and step and restoring them continues exactly. */
static void test_state_restore(void)
{
	float p[4] = {1, 2, 3, 4}, g[4], q[4];
	parm_adamw a, b;
	parm_adamw_init(&a, 0.05f);
	parm_adamw_add(&a, p, g, 4, 1);
	for (int t = 0; t < 3; t++) {
		for (int i = 0; i < 4; i++)
			g[i] = (float)(i - t);
		parm_adamw_step(&a, 1e-2f);
	}
	memcpy(q, p, sizeof q);
	parm_adamw_init(&b, 0.05f);
	parm_adamw_add(&b, q, g, 4, 1);
	memcpy(b.m, a.m, sizeof(float) * 4);
	memcpy(b.v, a.v, sizeof(float) * 4);
	b.step = a.step;
	parm_adamw_step(&a, 1e-2f);
	parm_adamw_step(&b, 1e-2f);
	ok(!memcmp(p, q, sizeof q), "restored state continues bit for bit");
	parm_adamw_free(&a);
	parm_adamw_free(&b);
}

int main(void)
{
	test_hand_example();
	test_against_ref();
	test_schedule();
	test_clip();
	test_state_restore();
	return tap_done();
}
