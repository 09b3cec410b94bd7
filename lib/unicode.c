/* unicode.c - codepoint flags from the generated range table, UTF-8 as
 * llama.cpp reads it, and GPT-2's byte mapping. */
#include <pthread.h>
#include "unicode.h"
#include "unicode_tab.h"

#define N_RANGES (sizeof unicode_ranges / sizeof unicode_ranges[0])

static unsigned range_flags(size_t i) { return unicode_ranges[i] & 0x1ff; }
static uint32_t range_start(size_t i) { return unicode_ranges[i] >> 9; }

/* Binary search for the last range starting at or before cpt. */
static unsigned flags_search(uint32_t cpt)
{
	size_t lo = 0, hi = N_RANGES;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (range_start(mid) <= cpt)
			lo = mid;
		else
			hi = mid;
	}
	return range_flags(lo);
}

/* Latin-1 is most text: looked up in a table built once. */
static unsigned short latin1_flags[256];
static pthread_once_t latin1_once = PTHREAD_ONCE_INIT;

static void latin1_init(void)
{
	for (uint32_t c = 0; c < 256; c++)
		latin1_flags[c] = (unsigned short)flags_search(c);
}

unsigned parm_ucp_flags(uint32_t cpt)
{
	if (cpt >= 0x110000)
		return UCP_UNDEFINED;
	if (cpt >= 256)
		return flags_search(cpt);
	pthread_once(&latin1_once, latin1_init);
	return latin1_flags[cpt];
}

int parm_utf8_len(unsigned char lead)
{
	static const unsigned char len[16] = {1,1,1,1,1,1,1,1,1,1,1,1,2,2,3,4};
	return len[lead >> 4];
}

static int is_cont(const char *s, size_t n, size_t i)
{
	return i < n && ((unsigned char)s[i] & 0xc0) == 0x80;
}

uint32_t parm_utf8_next(const char *s, size_t n, size_t *off)
{
	const unsigned char *u = (const unsigned char *)s + *off;
	size_t i = *off;
	int need;
	uint32_t cpt;
	if (u[0] < 0x80) {
		*off += 1;
		return u[0];
	}
	if ((u[0] & 0xe0) == 0xc0)
		need = 1, cpt = u[0] & 0x1f;
	else if ((u[0] & 0xf0) == 0xe0)
		need = 2, cpt = u[0] & 0x0f;
	else if ((u[0] & 0xf8) == 0xf0)
		need = 3, cpt = u[0] & 0x07;
	else
		need = 0, cpt = 0;      /* continuation byte or 0xf8.. lead */
	for (int k = 1; k <= need; k++)
		if (!is_cont(s, n, i + k))
			need = 0;
	if (need == 0) {
		*off += 1;
		return 0xfffd;
	}
	for (int k = 1; k <= need; k++)
		cpt = cpt << 6 | (u[k] & 0x3f);
	*off += 1 + need;
	return cpt;
}

int parm_utf8_put(char *out, uint32_t cpt)
{
	unsigned char *o = (unsigned char *)out;
	if (cpt < 0x80) {
		o[0] = (unsigned char)cpt;
		return 1;
	}
	if (cpt < 0x800) {
		o[0] = 0xc0 | cpt >> 6;
		o[1] = 0x80 | (cpt & 0x3f);
		return 2;
	}
	if (cpt > 0x10ffff)
		cpt = 0xfffd;
	if (cpt < 0x10000) {
		o[0] = 0xe0 | cpt >> 12;
		o[1] = 0x80 | (cpt >> 6 & 0x3f);
		o[2] = 0x80 | (cpt & 0x3f);
		return 3;
	}
	o[0] = 0xf0 | cpt >> 18;
	o[1] = 0x80 | (cpt >> 12 & 0x3f);
	o[2] = 0x80 | (cpt >> 6 & 0x3f);
	o[3] = 0x80 | (cpt & 0x3f);
	return 4;
}

/* GPT-2 keeps the printable Latin-1 bytes ('!'..'~', 0xa1..0xac,
 * 0xae..0xff) as themselves and maps the rest, in order, to U+0100... */
static int byte_is_printable(int b)
{
	return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
}

static uint32_t byte_ucp[256];
static short ucp_byte[512];             /* the codepoints are all below 512 */
static pthread_once_t byte_map_once = PTHREAD_ONCE_INIT;

static void byte_map_init(void)
{
	uint32_t next = 256;
	for (int c = 0; c < 512; c++)
		ucp_byte[c] = -1;
	for (int b = 0; b < 256; b++) {
		byte_ucp[b] = byte_is_printable(b) ? (uint32_t)b : next++;
		ucp_byte[byte_ucp[b]] = (short)b;
	}
}

uint32_t parm_byte_to_ucp(unsigned char b)
{
	pthread_once(&byte_map_once, byte_map_init);
	return byte_ucp[b];
}

int parm_ucp_to_byte(uint32_t cpt)
{
	pthread_once(&byte_map_once, byte_map_init);
	return cpt < 512 ? ucp_byte[cpt] : -1;
}
