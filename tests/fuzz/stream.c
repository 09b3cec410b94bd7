/* stream.c - fuzz the stream reader: the input is a stream, read from a
 * memfd as a tool reads its stdin (parm_reader_new, parm_read_header, then
 * parm_read_record up to FIN or an error); every field read is touched. */
#include "fuzz.h"
#include <parm/stream.h>

#define MAX_RECORDS 100000

static volatile uint64_t sink;

static void touch_header(const parm_header *h)
{
	for (int i = 0; i < h->n_vocab; i++)
		sink += h->piece_len[i] + (uint8_t)h->pieces[i][h->piece_len[i]];
	for (int i = 0; i < h->n_chain; i++)
		sink += (uint8_t)h->chain[i][0];
	sink += h->feedback ? (uint8_t)h->feedback[0] : 0;
}

static void touch_round(const parm_record *rec, int n_vocab)
{
	for (int i = 0; i < rec->n_steps; i++) {
		const parm_step *s = &rec->steps[i];
		int n = s->sparse ? s->k : n_vocab;
		for (int j = 0; j < n; j++)
			sink += (uint64_t)(s->logits[j] == s->logits[j]) + (s->sparse ? (uint64_t)s->ids[j] : 0);
	}
}

static void touch_record(const parm_record *rec, int n_vocab)
{
	switch (rec->type) {
	case PARM_REC_START:
		sink += (uint8_t)rec->prompt[0] + (rec->meta ? (uint8_t)rec->meta[0] : 0);
		for (int i = 0; i < rec->n_tokens; i++)
			sink += (uint64_t)rec->tokens[i];
		break;
	case PARM_REC_ROUND:
		touch_round(rec, n_vocab);
		break;
	case PARM_REC_END:
		sink += (uint8_t)rec->reason[0] + (uint64_t)rec->length;
		break;
	default:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	parm_reader *r = parm_reader_new(fuzz_memfd(data, size));
	parm_header h;
	parm_record rec;
	if (parm_read_header(r, &h) == 0) {
		touch_header(&h);
		for (int n = 0; n < MAX_RECORDS && parm_read_record(r, &rec) == 0; n++) {
			touch_record(&rec, h.n_vocab);
			if (rec.type == PARM_REC_FIN)
				break;
		}
		parm_header_free(&h);
	}
	parm_reader_free(r);
	return 0;
}
