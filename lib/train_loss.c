/* train_loss.c - the training losses over per-position log-probs
 * logp[B][T-1] (train.h), each adding its gradient wrt logp. */
#include <parm/train.h>

#include <math.h>
#include <string.h>

float parm_loss_lm(float *dlogp, const float *logp, const uint8_t *mask,
		   const int *lengths, int B, int T, int *count)
{
	double sum = 0;
	int n = 0;
	for (int b = 0; b < B; b++)
		for (int i = 0; i + 1 < lengths[b]; i++)
			if (!mask || mask[(size_t)b * (T - 1) + i]) {
				sum -= logp[(size_t)b * (T - 1) + i];
				n++;
			}
	if (count)
		*count = n;
	if (!n)
		return 0;
	for (int b = 0; b < B && dlogp; b++)
		for (int i = 0; i + 1 < lengths[b]; i++)
			if (!mask || mask[(size_t)b * (T - 1) + i])
				dlogp[(size_t)b * (T - 1) + i] -= 1.0f / n;
	return (float)(sum / n);
}

/* Position i predicts token i + 1: a response token when i + 1 >= prompt. */
static int first_response_pos(int prompt_len)
{
	return prompt_len > 1 ? prompt_len - 1 : 0;
}

void parm_seq_scores(float *S, const float *logp, const int *prompt_len,
		     const int *lengths, int B, int T)
{
	for (int b = 0; b < B; b++) {
		double s = 0;
		for (int i = first_response_pos(prompt_len[b]); i + 1 < lengths[b]; i++)
			s += logp[(size_t)b * (T - 1) + i];
		S[b] = (float)s;
	}
}

void parm_response_mask(uint8_t *mask, const int *prompt_len, const int *lengths,
			int B, int T)
{
	memset(mask, 0, (size_t)B * (T - 1));
	for (int b = 0; b < B; b++)
		for (int i = first_response_pos(prompt_len[b]); i + 1 < lengths[b]; i++)
			mask[(size_t)b * (T - 1) + i] = 1;
}

/* -log sigmoid(z) = softplus(-z), computed without overflow either way. */
double parm_pair_loss(double Sw, double Sl, double beta, double *dSw, double *dSl)
{
	double z = beta * (Sw - Sl);
	double loss = z > 0 ? log1p(exp(-z)) : -z + log1p(exp(z));
	double sig_neg = z > 0 ? exp(-z) / (1 + exp(-z)) : 1 / (1 + exp(z)); /* sigmoid(-z) */
	if (dSw)
		*dSw = -beta * sig_neg;
	if (dSl)
		*dSl = beta * sig_neg;
	return loss;
}

static void add_score_grad(float *dlogp, double g, int b, const int *prompt_len,
			   const int *lengths, int T)
{
	for (int i = first_response_pos(prompt_len[b]); i + 1 < lengths[b]; i++)
		dlogp[(size_t)b * (T - 1) + i] += (float)g;
}

double parm_arm_loss(float *dlogp, const float *logp, const int *prompt_len,
		     const int *lengths, int P, int T, const int8_t *label, int k,
		     const float *alpha, double beta, double *loss_obj, int *correct,
		     int *labelled)
{
	float S[2 * P > 0 ? 2 * P : 1];
	double total = 0;
	parm_seq_scores(S, logp, prompt_len, lengths, 2 * P, T);
	for (int o = 0; o < k; o++) {
		int n = 0, right = 0;
		double sum = 0;
		for (int p = 0; p < P; p++)
			n += label[(size_t)p * k + o] == 0 || label[(size_t)p * k + o] == 1;
		for (int p = 0; p < P && n; p++) {
			int lab = label[(size_t)p * k + o];
			if (lab != 0 && lab != 1)
				continue;
			int w = 2 * p + lab, l = 2 * p + 1 - lab;
			double dw, dl;
			sum += parm_pair_loss(S[w], S[l], beta, &dw, &dl);
			right += S[w] > S[l];
			if (dlogp) {
				add_score_grad(dlogp, alpha[o] * dw / n, w, prompt_len, lengths, T);
				add_score_grad(dlogp, alpha[o] * dl / n, l, prompt_len, lengths, T);
			}
		}
		double mean = n ? sum / n : 0;
		total += alpha[o] * mean;
		if (loss_obj)
			loss_obj[o] = mean;
		if (correct)
			correct[o] = right;
		if (labelled)
			labelled[o] = n;
	}
	return total;
}
