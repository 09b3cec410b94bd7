/* prompts.h - the input of parm-logits: one prompt per line, either plain
 * text or a JSONL record with a string "prompt" field whose other fields
 * are passed through the stream untouched. */
#ifndef PARM_PROMPTS_H
#define PARM_PROMPTS_H

#include <stdio.h>

typedef struct {
	char *text;             /* the prompt as given */
	char *meta;             /* JSON object text of the other fields, or NULL */
	long line;              /* 1-based input line */
} parm_prompt;

/* Read every prompt from f (name is used in messages).  Blank lines are
 * skipped; a line starting with '{' is JSON.  Returns the count, or -1 +
 * parm_error ("stdin:3: no string field 'prompt'"). */
long parm_read_prompts(FILE *f, const char *name, parm_prompt **out);
void parm_prompts_free(parm_prompt *p, long n);

/* Apply a template: every "{prompt}" in tmpl is replaced by text; NULL
 * tmpl gives a copy of text. */
char *parm_apply_template(const char *tmpl, const char *text);

/* A training or scoring template: "chat" (the backbone's chat template)
 * or a text holding {prompt}; 0, or -1 + parm_error ("'T' has no {prompt}
 * (and is not 'chat')"). */
int parm_check_template(const char *tmpl);

/* A prompt layout in words, for messages: "chat" is "a user's turn of the
 * chat template", "{prompt}" or NULL "the prompt as it is", any other
 * template itself, quoted (in buf[size]). */
const char *parm_layout_words(const char *layout, char *buf, size_t size);

#endif
