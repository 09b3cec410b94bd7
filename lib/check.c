/* check.c - refusing streams made with another tokenizer */
#include <parm/check.h>
#include <parm/util.h>

int parm_check_tokenizer(const parm_header *h, const parm_tokenizer *t, const char *name)
{
	int V = parm_tok_n_vocab(t);
	unsigned long long fp = parm_tok_fingerprint(t);
	if (h->n_vocab == V && h->fingerprint == fp)
		return 0;
	return parm_fail("the stream's tokenizer (%d tokens, fingerprint %016llx) "
			 "is not %s's (%d tokens, fingerprint %016llx)",
			 h->n_vocab, (unsigned long long)h->fingerprint, name, V, fp);
}
