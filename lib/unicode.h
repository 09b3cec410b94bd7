/* unicode.h - what the tokenisers need to know about codepoints: the
 * general category group and whitespace flags that llama.cpp's
 * pre-tokeniser regexes test, UTF-8 decoding with llama.cpp's rules, and
 * GPT-2's byte <-> printable-codepoint mapping.
 */
#ifndef PARM_UNICODE_H
#define PARM_UNICODE_H

#include <stddef.h>
#include <stdint.h>

enum {                                  /* bits of parm_ucp_flags() */
	UCP_UNDEFINED = 1 << 0,
	UCP_NUMBER = 1 << 1,            /* \p{N} */
	UCP_LETTER = 1 << 2,            /* \p{L} */
	UCP_SEPARATOR = 1 << 3,         /* \p{Z} */
	UCP_MARK = 1 << 4,              /* \p{M} */
	UCP_PUNCT = 1 << 5,             /* \p{P} */
	UCP_SYMBOL = 1 << 6,            /* \p{S} */
	UCP_CONTROL = 1 << 7,           /* \p{C}, unassigned included */
	UCP_SPACE = 1 << 8              /* White_Space (\s) */
};

/* Never 0 for a codepoint: every one is in some category.  Codepoints past
 * U+10FFFF are UCP_UNDEFINED. */
unsigned parm_ucp_flags(uint32_t cpt);

/* Decode one codepoint at s[*off] (off < n) and advance *off, as
 * llama.cpp does: a bad lead byte or a truncated sequence consumes one byte
 * and yields U+FFFD; overlong forms are not rejected. */
uint32_t parm_utf8_next(const char *s, size_t n, size_t *off);
/* Bytes of the sequence a lead byte starts (1 for a stray continuation). */
int parm_utf8_len(unsigned char lead);
/* Encode cpt (<= U+10FFFF, else U+FFFD) into out[4]; returns its length. */
int parm_utf8_put(char *out, uint32_t cpt);

/* GPT-2 byte-level BPE: byte b stands for codepoint parm_byte_to_ucp(b);
 * parm_ucp_to_byte gives it back, or -1 for codepoints no byte maps to. */
uint32_t parm_byte_to_ucp(unsigned char b);
int parm_ucp_to_byte(uint32_t cpt);

#endif
