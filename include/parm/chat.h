/* chat.h - chat templates as llama.cpp applies them without a Jinja engine
 * (src/llama-chat.cpp): a model's tokenizer.chat_template, or a built-in
 * name, is recognised by the same tests llama.cpp makes, then the
 * messages are laid out by that template's rule.  The text holds special
 * tokens as text ("<|im_start|>"): tokenise it with parm_tokenize_special.
 */
#ifndef PARM_CHAT_H
#define PARM_CHAT_H

#include "gguf.h"

typedef struct {
	const char *role;               /* "system", "user", "assistant" */
	const char *content;
} parm_chat_msg;

/* The name of the built-in template llama.cpp would use for tmpl (a
 * built-in name, or a Jinja template's text), or NULL when it recognises
 * none. */
const char *parm_chat_detect(const char *tmpl);

/* The messages laid out by tmpl, the assistant's turn opened when
 * add_assistant: a malloc'd string, or NULL + parm_error (not recognised,
 * or recognised as a template parm does not lay out, named). */
char *parm_chat_apply(const char *tmpl, const parm_chat_msg *msgs, int n, int add_assistant);

/* One user turn, after a system turn when system is not NULL, with the
 * assistant's turn opened: what a prompt becomes in chat mode. */
char *parm_chat_prompt(const char *tmpl, const char *system, const char *user);

/* The model's tokenizer.chat_template (NUL-terminated copy), or NULL +
 * parm_error when it has none. */
char *parm_chat_template_of(const parm_gguf *g);

/* The built-in names parm lays out, for messages: "chatml, llama2, ...". */
const char *parm_chat_names(void);

#endif
