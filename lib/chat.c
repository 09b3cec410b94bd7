/* chat.c - llama.cpp's built-in chat templates (legend in chat.h).  The
 * recognition below is llama_chat_detect_template's chain of tests, in its
 * order and in full (so a template is taken for the one llama.cpp takes
 * it for); the layouts are those of llm_chat_apply_template for the
 * templates listed in names[] and are held to llama.cpp's output, on every
 * template and several conversations, by tests/test_llamacpp.c. */
#include <parm/chat.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <parm/util.h>

/* Templates parm lays out; llama.cpp's other names are known (so they are
 * refused by name) but not laid out. */
enum tmpl {
	T_CHATML, T_LLAMA2, T_LLAMA2_SYS, T_LLAMA2_SYS_BOS, T_LLAMA2_SYS_STRIP, T_MISTRAL_V1,
	T_MISTRAL_V3, T_MISTRAL_V3_TEKKEN, T_MISTRAL_V7, T_MISTRAL_V7_TEKKEN, T_PHI3, T_PHI4,
	T_FALCON3, T_ZEPHYR, T_MONARCH, T_GEMMA, T_ORION, T_OPENCHAT, T_VICUNA, T_VICUNA_ORCA,
	T_DEEPSEEK, T_COMMAND_R, T_LLAMA3, T_CHATGLM3, T_CHATGLM4, T_GLMEDGE, T_DEEPSEEK2,
	T_DEEPSEEK3, T_LLAMA4, T_N_LAID_OUT
};

static const char *const names[T_N_LAID_OUT] = {
	"chatml", "llama2", "llama2-sys", "llama2-sys-bos", "llama2-sys-strip", "mistral-v1",
	"mistral-v3", "mistral-v3-tekken", "mistral-v7", "mistral-v7-tekken", "phi3", "phi4",
	"falcon3", "zephyr", "monarch", "gemma", "orion", "openchat", "vicuna", "vicuna-orca",
	"deepseek", "command-r", "llama3", "chatglm3", "chatglm4", "glmedge", "deepseek2",
	"deepseek3", "llama4",
};

/* llama.cpp's built-in names that parm does not lay out. */
static const char *const other_names[] = {
	"deepseek-ocr", "minicpm", "exaone3", "exaone4", "exaone-moe",
	"rwkv-world", "granite", "granite-4.0", "granite-4.1", "gigachat", "megrez", "yandex",
	"bailing", "bailing-think", "bailing2", "smolvlm", "hunyuan-moe", "gpt-oss",
	"hunyuan-dense", "hunyuan-vl", "kimi-k2", "seed_oss", "grok-2", "pangu-embedded",
	"solar-open", "dots1",
};

const char *parm_chat_names(void)
{
	return "chatml, llama2, llama2-sys, llama2-sys-bos, llama2-sys-strip, mistral-v1, "
	       "mistral-v3, mistral-v3-tekken, mistral-v7, mistral-v7-tekken, phi3, phi4, "
	       "falcon3, zephyr, monarch, gemma, orion, openchat, vicuna, vicuna-orca, deepseek, "
	       "command-r, llama3, chatglm3, chatglm4, glmedge, deepseek2, deepseek3, llama4";
}

static int has(const char *tmpl, const char *s)
{
	return strstr(tmpl, s) != NULL;
}

static const char *detect_mistral_llama2(const char *t)
{
	if (has(t, "[SYSTEM_PROMPT]"))
		return "mistral-v7";
	if (has(t, "' [INST] ' + system_message") || has(t, "[AVAILABLE_TOOLS]")) {
		if (has(t, " [INST]"))
			return "mistral-v1";
		return has(t, "\"[INST]\"") ? "mistral-v3-tekken" : "mistral-v3";
	}
	if (has(t, "content.strip()"))
		return "llama2-sys-strip";
	if (has(t, "bos_token + '[INST]"))
		return "llama2-sys-bos";
	return has(t, "<<SYS>>") ? "llama2-sys" : "llama2";
}

/* The first half of llama.cpp's chain: the common templates. */
static const char *detect_common(const char *t)
{
	if (has(t, "<|im_start|>"))
		return has(t, "<|im_sep|>") ? "phi4" : has(t, "<end_of_utterance>") ? "smolvlm" : "chatml";
	if (!strncmp(t, "mistral", 7) || has(t, "[INST]"))
		return detect_mistral_llama2(t);
	if (has(t, "<|assistant|>") && has(t, "<|end|>"))
		return "phi3";
	if (has(t, "[gMASK]<sop>"))
		return "chatglm4";
	if (has(t, "<|assistant|>") && has(t, "<|user|>"))
		return has(t, "<|tool_declare|>") ? "exaone-moe" : has(t, "</s>") ? "falcon3" : "glmedge";
	if (has(t, "<|{{ item['role'] }}|>") && has(t, "<|begin_of_image|>"))
		return "glmedge";
	if (has(t, "<|user|>") && has(t, "<|endoftext|>"))
		return "zephyr";
	if (has(t, "bos_token + message['role']"))
		return "monarch";
	if (has(t, "<start_of_turn>"))
		return "gemma";
	if (has(t, "'\\n\\nAssistant: ' + eos_token"))
		return "orion";
	if (has(t, "GPT4 Correct "))
		return "openchat";
	if (has(t, "USER: ") && has(t, "ASSISTANT: "))
		return has(t, "SYSTEM: ") ? "vicuna-orca" : "vicuna";
	if (has(t, "### Instruction:") && has(t, "<|EOT|>"))
		return "deepseek";
	if (has(t, "<|START_OF_TURN_TOKEN|>") && has(t, "<|USER_TOKEN|>"))
		return "command-r";
	if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>"))
		return "llama3";
	if (has(t, "[gMASK]sop"))
		return "chatglm3";
	return NULL;
}

/* The rest of the chain: templates parm recognises but does not lay out. */
static const char *detect_rare(const char *t)
{
	static const struct { const char *a, *b, *c, *name; } rules[] = {
		{ "<\xe7\x94\xa8\xe6\x88\xb7>", NULL, NULL, "minicpm" },
		{ "'Assistant: ' + message['content'] + eos_token", NULL, NULL, "deepseek2" },
		{ "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>", "<\xef\xbd\x9cUser\xef\xbd\x9c>",
		  "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "deepseek3" },
		{ "[|system|]", "[|assistant|]", "[|endofturn|]", "exaone3 or exaone4" },
		{ "rwkv-world", NULL, NULL, "rwkv-world" },
		{ "{{- 'User: ' + message['content']|trim + '\\n\\n' -}}", NULL, NULL, "rwkv-world" },
		{ "<|start_of_role|>", NULL, NULL, "granite (3.x, 4.0 or 4.1)" },
		{ "message['role'] + additional_special_tokens[0] + message['content'] + additional_special_tokens[1]",
		  NULL, NULL, "gigachat" },
		{ "<|role_start|>", NULL, NULL, "megrez" },
		{ " \xd0\x90\xd1\x81\xd1\x81\xd0\xb8\xd1\x81\xd1\x82\xd0\xb5\xd0\xbd\xd1\x82:", NULL, NULL, "yandex" },
		{ "<role>ASSISTANT</role>", "'HUMAN'", NULL, "bailing" },
		{ "<role>ASSISTANT</role>", "\"HUMAN\"", "<think>", "bailing-think" },
		{ "<role>ASSISTANT</role>", "<role>HUMAN</role>", "<|role_end|>", "bailing2" },
		{ "<|header_start|>", "<|header_end|>", NULL, "llama4" },
		{ "<|endofuserprompt|>", NULL, NULL, "dots1" },
		{ "<|extra_0|>", "<|extra_4|>", NULL, "hunyuan-moe" },
		{ "<|start|>", "<|channel|>", NULL, "gpt-oss" },
		{ "<\xef\xbd\x9chy_Assistant\xef\xbd\x9c>", NULL, NULL, "hunyuan-vl or hunyuan-dense" },
		{ "<|im_assistant|>assistant<|im_middle|>", NULL, NULL, "kimi-k2" },
		{ "<seed:bos>", NULL, NULL, "seed_oss" },
		{ "'Assistant: '  + message['content'] + '<|separator|>", NULL, NULL, "grok-2" },
		{ "[unused9]\xe7\xb3\xbb\xe7\xbb\x9f\xef\xbc\x9a[unused10]", NULL, NULL, "pangu-embedded" },
		{ "<|begin|>", "<|end|>", "<|content|>", "solar-open" },
	};
	for (size_t i = 0; i < sizeof rules / sizeof *rules; i++)
		if (has(t, rules[i].a) && (!rules[i].b || has(t, rules[i].b)) &&
		    (!rules[i].c || has(t, rules[i].c)))
			return rules[i].name;
	return NULL;
}

static int laid_out(const char *name)
{
	for (int i = 0; name && i < T_N_LAID_OUT; i++)
		if (!strcmp(names[i], name))
			return i;
	return -1;
}

const char *parm_chat_detect(const char *tmpl)
{
	int i = laid_out(tmpl);
	if (i >= 0)
		return names[i];
	for (size_t k = 0; k < sizeof other_names / sizeof *other_names; k++)
		if (!strcmp(other_names[k], tmpl))
			return other_names[k];
	const char *name = detect_common(tmpl);
	return name ? name : detect_rare(tmpl);
}

/* ---- layouts ---- */

/* s without leading and trailing C-locale whitespace, as a length. */
static const char *trimmed(const char *s, int *len)
{
	const char *e = s + strlen(s);
	while (s < e && isspace((unsigned char)*s))
		s++;
	while (e > s && isspace((unsigned char)e[-1]))
		e--;
	*len = (int)(e - s);
	return s;
}

static int is(const char *role, const char *want)
{
	return !strcmp(role, want);
}

static void lay_mistral(FILE *f, enum tmpl t, const parm_chat_msg *m, int n)
{
	if (t == T_MISTRAL_V7 || t == T_MISTRAL_V7_TEKKEN) {
		const char *sp = t == T_MISTRAL_V7 ? " " : "";
		for (int i = 0; i < n; i++)
			if (is(m[i].role, "system"))
				fprintf(f, "[SYSTEM_PROMPT]%s%s[/SYSTEM_PROMPT]", sp, m[i].content);
			else if (is(m[i].role, "user"))
				fprintf(f, "[INST]%s%s[/INST]", sp, m[i].content);
			else
				fprintf(f, "%s%s</s>", sp, m[i].content);
		return;
	}
	const char *lead = t == T_MISTRAL_V1 ? " " : "", *trail = t == T_MISTRAL_V3_TEKKEN ? "" : " ";
	int inside = 0, len;
	for (int i = 0; i < n; i++) {
		if (!inside)
			fprintf(f, "%s[INST]%s", lead, trail), inside = 1;
		if (is(m[i].role, "system")) {
			fprintf(f, "%s\n\n", m[i].content);
		} else if (is(m[i].role, "user")) {
			fprintf(f, "%s%s[/INST]", m[i].content, lead);
		} else {
			const char *c = t == T_MISTRAL_V3 ? trimmed(m[i].content, &len) : m[i].content;
			if (t != T_MISTRAL_V3)
				len = (int)strlen(c);
			fprintf(f, "%s%.*s</s>", trail, len, c);
			inside = 0;
		}
	}
}

static void lay_llama2(FILE *f, enum tmpl t, const parm_chat_msg *m, int n)
{
	int inside = 1, len;
	fputs("[INST] ", f);
	for (int i = 0; i < n; i++) {
		const char *c = m[i].content;
		len = (int)strlen(c);
		if (t == T_LLAMA2_SYS_STRIP)
			c = trimmed(c, &len);
		if (!inside)
			fputs(t == T_LLAMA2_SYS_BOS ? "<s>[INST] " : "[INST] ", f), inside = 1;
		if (is(m[i].role, "system"))
			fprintf(f, t != T_LLAMA2 ? "<<SYS>>\n%.*s\n<</SYS>>\n\n" : "%.*s\n", len, c);
		else if (is(m[i].role, "user"))
			fprintf(f, "%.*s [/INST]", len, c);
		else
			fprintf(f, "%.*s</s>", len, c), inside = 0;
	}
}

/* Templates of one line per message: prefix role infix content suffix. */
static void lay_simple(FILE *f, enum tmpl t, const parm_chat_msg *m, int n, int add_ass)
{
	static const struct { const char *pre, *mid, *post, *ass; } form[] = {
		[T_CHATML] = { "<|im_start|>", "\n", "<|im_end|>\n", "<|im_start|>assistant\n" },
		[T_PHI3] = { "<|", "|>\n", "<|end|>\n", "<|assistant|>\n" },
		[T_PHI4] = { "<|im_start|>", "<|im_sep|>", "<|im_end|>", "<|im_start|>assistant<|im_sep|>" },
		[T_FALCON3] = { "<|", "|>\n", "\n", "<|assistant|>\n" },
		[T_ZEPHYR] = { "<|", "|>\n", "<|endoftext|>\n", "<|assistant|>\n" },
		[T_CHATGLM3] = { "<|", "|>\n ", "", "<|assistant|>" },
		[T_CHATGLM4] = { "<|", "|>\n", "", "<|assistant|>\n" },
		[T_GLMEDGE] = { "<|", "|>\n", "", "<|assistant|>" },
	};
	if (t == T_CHATGLM3)
		fputs("[gMASK]sop", f);
	if (t == T_CHATGLM4)
		fputs("[gMASK]<sop>", f);
	for (int i = 0; i < n; i++)
		fprintf(f, "%s%s%s%s%s", form[t].pre, m[i].role, form[t].mid, m[i].content, form[t].post);
	if (add_ass)
		fputs(form[t].ass, f);
}

static void lay_gemma(FILE *f, const parm_chat_msg *m, int n, int add_ass)
{
	char *sys = parm_xstrdup("");
	int len;
	for (int i = 0; i < n; i++) {
		const char *c = trimmed(m[i].content, &len);
		if (is(m[i].role, "system")) {
			size_t have = strlen(sys);
			sys = parm_xrealloc(sys, have + len + 1);
			memcpy(sys + have, c, len);
			sys[have + len] = '\0';
			continue;
		}
		const char *role = is(m[i].role, "assistant") ? "model" : m[i].role;
		fprintf(f, "<start_of_turn>%s\n", role);
		if (*sys && strcmp(role, "model"))
			fprintf(f, "%s\n\n", sys), sys[0] = '\0';
		fprintf(f, "%.*s<end_of_turn>\n", len, c);
	}
	if (add_ass)
		fputs("<start_of_turn>model\n", f);
	free(sys);
}

static void lay_orion(FILE *f, const parm_chat_msg *m, int n)
{
	char *sys = parm_xstrdup("");
	for (int i = 0; i < n; i++) {
		if (is(m[i].role, "system")) {
			size_t have = strlen(sys), len = strlen(m[i].content);
			sys = parm_xrealloc(sys, have + len + 1);
			memcpy(sys + have, m[i].content, len + 1);
		} else if (is(m[i].role, "user")) {
			fputs("Human: ", f);
			if (*sys)
				fprintf(f, "%s\n\n", sys), sys[0] = '\0';
			fprintf(f, "%s\n\nAssistant: </s>", m[i].content);
		} else {
			fprintf(f, "%s</s>", m[i].content);
		}
	}
	free(sys);
}

/* DeepSeek's full-width bars: <｜User｜>, <｜Assistant｜>, <｜end▁of▁sentence｜> */
#define USER_DS "<\xef\xbd\x9cUser\xef\xbd\x9c>"
#define ASSISTANT_DS "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"
#define EOS_DS "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"

/* monarch, openchat, vicuna, deepseek (1-3), command-r, llama3, llama4: a
 * role decides each message's frame. */
static void lay_roles(FILE *f, enum tmpl t, const parm_chat_msg *m, int n, int add_ass)
{
	int len;
	for (int i = 0; i < n; i++) {
		const char *r = m[i].role, *c = m[i].content, *tc = trimmed(c, &len);
		if (t == T_MONARCH)
			fprintf(f, "%s%s\n%s</s>\n", i ? "<s>" : "", r, c);
		else if (t == T_OPENCHAT && is(r, "system"))
			fprintf(f, "%s<|end_of_turn|>", c);
		else if (t == T_OPENCHAT)
			fprintf(f, "GPT4 Correct %c%s: %s<|end_of_turn|>", toupper((unsigned char)r[0]),
				r[0] ? r + 1 : "", c);
		else if ((t == T_VICUNA || t == T_VICUNA_ORCA) && is(r, "system"))
			fprintf(f, t == T_VICUNA_ORCA ? "SYSTEM: %s\n" : "%s\n\n", c);
		else if (t == T_VICUNA || t == T_VICUNA_ORCA)
			fprintf(f, is(r, "user") ? "USER: %s\n" : is(r, "assistant") ? "ASSISTANT: %s</s>\n" : "", c);
		else if (t == T_DEEPSEEK)
			fprintf(f, is(r, "system") ? "%s" : is(r, "user") ? "### Instruction:\n%s\n" :
				is(r, "assistant") ? "### Response:\n%s\n<|EOT|>\n" : "", c);
		else if (t == T_COMMAND_R && (is(r, "system") || is(r, "user") || is(r, "assistant")))
			fprintf(f, "<|START_OF_TURN_TOKEN|><|%s_TOKEN|>%.*s<|END_OF_TURN_TOKEN|>",
				is(r, "system") ? "SYSTEM" : is(r, "user") ? "USER" : "CHATBOT", len, tc);
		else if (t == T_LLAMA3)
			fprintf(f, "<|start_header_id|>%s<|end_header_id|>\n\n%.*s<|eot_id|>", r, len, tc);
		else if (t == T_LLAMA4)
			fprintf(f, "<|header_start|>%s<|header_end|>\n\n%.*s<|eot|>", r, len, tc);
		else if (t == T_DEEPSEEK2 || t == T_DEEPSEEK3)
			fprintf(f, is(r, "system") ? "%s\n\n" : !is(r, "user") && !is(r, "assistant") ? "" :
				t == T_DEEPSEEK2 ? (is(r, "user") ? "User: %s\n\n" : "Assistant: %s" EOS_DS) :
				is(r, "user") ? USER_DS "%s" : ASSISTANT_DS "%s" EOS_DS, c);
	}
	static const char *const ass[] = {
		[T_MONARCH] = "<s>assistant\n", [T_OPENCHAT] = "GPT4 Correct Assistant:",
		[T_VICUNA] = "ASSISTANT:", [T_VICUNA_ORCA] = "ASSISTANT:", [T_DEEPSEEK] = "### Response:\n",
		[T_COMMAND_R] = "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
		[T_LLAMA3] = "<|start_header_id|>assistant<|end_header_id|>\n\n",
		[T_LLAMA4] = "<|header_start|>assistant<|header_end|>\n\n",
		[T_DEEPSEEK2] = "Assistant:", [T_DEEPSEEK3] = ASSISTANT_DS,
	};
	if (add_ass)
		fputs(ass[t], f);
}

static void lay_out(FILE *f, enum tmpl t, const parm_chat_msg *m, int n, int add_ass)
{
	switch (t) {
	case T_MISTRAL_V1: case T_MISTRAL_V3: case T_MISTRAL_V3_TEKKEN:
	case T_MISTRAL_V7: case T_MISTRAL_V7_TEKKEN:
		lay_mistral(f, t, m, n);
		break;
	case T_LLAMA2: case T_LLAMA2_SYS: case T_LLAMA2_SYS_BOS: case T_LLAMA2_SYS_STRIP:
		lay_llama2(f, t, m, n);
		break;
	case T_GEMMA:
		lay_gemma(f, m, n, add_ass);
		break;
	case T_ORION:
		lay_orion(f, m, n);
		break;
	case T_MONARCH: case T_OPENCHAT: case T_VICUNA: case T_VICUNA_ORCA: case T_DEEPSEEK:
	case T_COMMAND_R: case T_LLAMA3: case T_LLAMA4: case T_DEEPSEEK2: case T_DEEPSEEK3:
		lay_roles(f, t, m, n, add_ass);
		break;
	default:
		lay_simple(f, t, m, n, add_ass);
	}
}

char *parm_chat_apply(const char *tmpl, const parm_chat_msg *msgs, int n, int add_assistant)
{
	const char *name = parm_chat_detect(tmpl);
	int t = laid_out(name);
	if (!name)
		return parm_failp("chat template not recognised (parm knows llama.cpp's built-in "
				  "ones: %s)", parm_chat_names());
	if (t < 0)
		return parm_failcp(PARM_EUNSUPPORTED, "chat template '%s' is recognised but not implemented (parm lays "
				  "out %s)", name, parm_chat_names());
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (!f)
		return parm_failp("chat template: out of memory");
	lay_out(f, (enum tmpl)t, msgs, n, add_assistant);
	fclose(f);
	return out;
}

char *parm_chat_prompt(const char *tmpl, const char *system, const char *user)
{
	parm_chat_msg m[2] = { { "system", system }, { "user", user } };
	return system ? parm_chat_apply(tmpl, m, 2, 1) : parm_chat_apply(tmpl, m + 1, 1, 1);
}

char *parm_chat_template_of(const parm_gguf *g)
{
	const char *s;
	size_t len;
	if (parm_gguf_find_key(g, "tokenizer.chat_template") < 0)
		return parm_failp("%s: the model has no tokenizer.chat_template", parm_gguf_path(g));
	if (parm_gguf_get_str(g, "tokenizer.chat_template", &s, &len) < 0)
		return NULL;
	char *t = parm_xmalloc(len + 1);
	memcpy(t, s, len);
	t[len] = '\0';
	return t;
}
