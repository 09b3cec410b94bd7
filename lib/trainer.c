/* trainer.c - the training loop: steps over seeded epoch orders, gradient
 * accumulation, clipping, AdamW on a cosine schedule, evaluation,
 * checkpoints and resume.  See trainer.h. */
#include <parm/trainer.h>

#include <math.h>
#include <string.h>

#include <parm/util.h>

long parm_loop_steps_per_epoch(long n_train, int batch, int accum)
{
	long per_step = (long)batch * accum;
	return (n_train + per_step - 1) / per_step;
}

long parm_loop_total_steps(const parm_loop_opts *o, long n_train)
{
	if (o->steps > 0)
		return o->steps;
	return o->epochs * parm_loop_steps_per_epoch(n_train, o->batch, o->accum);
}

/* A key unique to (seed, step, micro-batch): splitmix64 of the three. */
static uint64_t step_key(uint64_t seed, long step, int micro)
{
	uint64_t z = seed ^ ((uint64_t)step * 0x9e3779b97f4a7c15ULL) ^
		     ((uint64_t)(micro + 1) * 0xd1b54a32d192ed03ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

typedef struct {
	parm_trainer *t;
	const parm_task *task;
	const parm_loop_opts *o;
	parm_adamw adam;
	long total, spe, epoch_cached;
	long *order;
	double *metric;
	int have_metric;
	double t0, train_time;
	int64_t tokens;
	long start;
} loop;

static void loop_init(loop *L, parm_trainer *t, const parm_task *task, const parm_loop_opts *o)
{
	*L = (loop){ .t = t, .task = task, .o = o, .epoch_cached = -1 };
	parm_adamw_init(&L->adam, o->weight_decay);
	for (int i = 0; i < parm_train_n_tensors(t); i++) {
		const parm_train_tensor *p = parm_train_tensor_at(t, i);
		parm_adamw_add(&L->adam, p->data, p->grad, p->count, p->decay);
	}
	L->total = parm_loop_total_steps(o, task->n_train);
	L->spe = parm_loop_steps_per_epoch(task->n_train, o->batch, o->accum);
	L->order = parm_xmalloc(sizeof(long) * (size_t)(task->n_train ? task->n_train : 1));
	L->metric = parm_xcalloc((size_t)task->n_metrics + 1, sizeof(double));
}

static void loop_free(loop *L)
{
	parm_adamw_free(&L->adam);
	free(L->order);
	free(L->metric);
}

/* One optimiser step: the micro-batches of its slice of the epoch order,
 * then clip, schedule and update.  Returns the step's mean loss or NAN. */
static double loop_step(loop *L, long step, float *lr, float *norm)
{
	const parm_loop_opts *o = L->o;
	long n = L->task->n_train, epoch = step / L->spe, j = step % L->spe;
	if (epoch != L->epoch_cached) {
		parm_epoch_order(L->order, n, o->seed, epoch);
		L->epoch_cached = epoch;
	}
	long per_step = (long)o->batch * o->accum, lo = j * per_step;
	long hi = lo + per_step < n ? lo + per_step : n;
	double loss = 0;
	parm_train_zero_grad(L->t);
	parm_train_set_training(L->t, 1);
	for (int m = 0; lo + (long)m * o->batch < hi; m++) {
		long a = lo + (long)m * o->batch, b = a + o->batch < hi ? a + o->batch : hi;
		float w = (float)(b - a) / (float)(hi - lo);
		parm_train_set_forward_count(L->t, (uint64_t)step * (uint64_t)o->accum + (uint64_t)m);
		double l = L->task->micro(L->task->ctx, L->t, L->order + a, (int)(b - a), w,
					  step_key(o->seed, step, m), &L->tokens);
		if (isnan(l))
			return NAN;
		loss += l * w;
	}
	*norm = parm_clip_grad_norm(&L->adam, o->clip);
	*lr = parm_cosine_lr(step, o->warmup, L->total, o->lr);
	parm_adamw_step(&L->adam, *lr);
	return loss;
}

static int loop_eval(loop *L)
{
	if (!L->task->n_metrics)
		return 0;
	if (L->task->eval(L->task->ctx, L->t, L->metric) < 0)
		return -1;
	L->have_metric = 1;
	return 0;
}

static void loop_report(loop *L, long step, double loss, float lr, float norm,
			int evaluated, int ckpt)
{
	const parm_task *task = L->task;
	if (!task->report)
		return;
	double el = parm_now() - L->t0, done = (double)(step - L->start);
	parm_report r = {
		.step = step, .total = L->total, .steps_per_epoch = L->spe,
		.epoch = L->spe && step ? (step - 1) / L->spe + 1 : 1, .loss = loss, .lr = lr, .grad_norm = norm,
		.tokens_per_s = L->train_time > 0 ? (double)L->tokens / L->train_time : 0,
		.elapsed = el, .eta = done > 0 ? el / done * (double)(L->total - step) : NAN,
		.n_metrics = task->n_metrics, .metric_names = task->metric_names,
		.metric = L->have_metric ? L->metric : NULL, .evaluated = evaluated,
		.checkpointed = ckpt, .final = step == L->total,
	};
	task->report(task->rctx, &r);
}

static int loop_checkpoint(loop *L, long step)
{
	parm_ckpt c = {
		.fingerprint = (char *)L->o->fingerprint, .step = step,
		.epoch = L->spe ? step / L->spe : 0,
		.pos = L->spe ? step % L->spe * L->o->batch * L->o->accum : 0,
		.rng = L->o->seed, .n_params = parm_train_n_params(L->t),
		.params = parm_train_params(L->t), .m = L->adam.m, .v = L->adam.v,
		.adam_step = L->adam.step,
	};
	return parm_ckpt_save(L->o->ckpt_path, &c);
}

/* Load the checkpoint into the parameters and the optimiser. */
static int loop_resume(loop *L)
{
	parm_ckpt c;
	const char *path = L->o->ckpt_path;
	if (parm_ckpt_load(path, &c) < 0)
		return -1;
	const char *why = parm_ckpt_mismatch(c.fingerprint, L->o->fingerprint ? L->o->fingerprint : "");
	int rc = -1;
	if (why)
		parm_fail("%s: made by a different run (%s); remove it or use the same options", path, why);
	else if (c.n_params != parm_train_n_params(L->t) || c.n_params != L->adam.n_total)
		parm_fail("%s: holds %zu parameters, the model has %zu", path, c.n_params,
			  parm_train_n_params(L->t));
	else if (c.step > L->total)
		parm_fail("%s: at step %ld, beyond this run's %ld", path, c.step, L->total);
	else {
		memcpy(parm_train_params(L->t), c.params, c.n_params * sizeof(float));
		memcpy(L->adam.m, c.m, c.n_params * sizeof(float));
		memcpy(L->adam.v, c.v, c.n_params * sizeof(float));
		L->adam.step = c.adam_step;
		L->start = c.step;
		rc = 0;
	}
	parm_ckpt_free(&c);
	return rc;
}

static int want_every(long every, long step, long total)
{
	return step == total || (every > 0 && step % every == 0);
}

static int loop_body(loop *L)
{
	const parm_loop_opts *o = L->o;
	if (o->resume && loop_resume(L) < 0)
		return -1;
	if (L->task->n_train < 1)
		return parm_fail("no training examples");
	L->t0 = parm_now();
	if (L->start < L->total && loop_eval(L) < 0)
		return -1;
	loop_report(L, L->start, NAN, 0, 0, L->have_metric, 0);
	for (long s = L->start; s < L->total; s++) {
		float lr = 0, norm = 0;
		double t1 = parm_now(), loss = loop_step(L, s, &lr, &norm);
		L->train_time += parm_now() - t1;
		if (isnan(loss))
			return -1;
		int ev = want_every(o->eval_every, s + 1, L->total);
		if (ev && loop_eval(L) < 0)
			return -1;
		int ck = o->ckpt_path && want_every(o->ckpt_every, s + 1, L->total);
		if (ck && loop_checkpoint(L, s + 1) < 0)
			return -1;
		loop_report(L, s + 1, loss, lr, norm, ev && L->have_metric, ck);
	}
	if (L->start == L->total && loop_eval(L) < 0)
		return -1;
	return 0;
}

int parm_loop_run(parm_trainer *t, const parm_task *task, const parm_loop_opts *o,
		  double *metric)
{
	if (o->batch < 1 || o->accum < 1 || (o->steps <= 0 && o->epochs <= 0))
		return parm_fail("training: batch, accumulation and a step or epoch budget must be positive");
	loop L;
	loop_init(&L, t, task, o);
	int rc = loop_body(&L);
	if (rc == 0 && metric && L.have_metric)
		memcpy(metric, L.metric, sizeof(double) * (size_t)task->n_metrics);
	loop_free(&L);
	return rc;
}
