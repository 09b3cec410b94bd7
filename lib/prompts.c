/* prompts.c - reading prompts as plain lines or JSONL records */
#include <parm/prompts.h>
#include <parm/util.h>

#include <jansson.h>
#include <string.h>

/* Split a JSON record into its prompt and the JSON text of the rest. */
static int parse_record(const char *line, const char *where, parm_prompt *p)
{
	json_error_t err;
	json_t *obj = json_loads(line, JSON_REJECT_DUPLICATES, &err);
	if (!obj)
		return parm_fail("%s: bad JSON: %s", where, err.text);
	json_t *prompt = json_object_get(obj, "prompt");
	if (!json_is_object(obj) || !json_is_string(prompt)) {
		json_decref(obj);
		return parm_fail("%s: no string field 'prompt'", where);
	}
	p->text = parm_xstrdup(json_string_value(prompt));
	json_object_del(obj, "prompt");
	p->meta = json_object_size(obj) ?
		json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(obj);
	return 0;
}

static int is_blank(const char *s)
{
	return s[strspn(s, " \t\r\n")] == '\0';
}

long parm_read_prompts(FILE *f, const char *name, parm_prompt **out)
{
	char *line = NULL, where[256];
	size_t cap = 0;
	ssize_t len;
	long n = 0, alloc = 0, lineno = 0;
	parm_prompt *p = NULL;

	while ((len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		if (memchr(line, '\0', len))
			return free(line), parm_prompts_free(p, n),
			       parm_fail("%s:%ld: NUL byte in input", name, lineno);
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (is_blank(line))
			continue;
		if (n == alloc)
			p = parm_xrealloc(p, (alloc = alloc ? 2 * alloc : 64) * sizeof *p);
		memset(&p[n], 0, sizeof *p);
		p[n].line = lineno;
		snprintf(where, sizeof where, "%s:%ld", name, lineno);
		if (line[strspn(line, " \t")] == '{') {
			if (parse_record(line, where, &p[n]) < 0)
				return free(line), parm_prompts_free(p, n), -1;
		} else {
			p[n].text = parm_xstrdup(line);
		}
		n++;
	}
	free(line);
	if (ferror(f))
		return parm_prompts_free(p, n), parm_fail("%s: read error", name);
	*out = p;
	return n;
}

void parm_prompts_free(parm_prompt *p, long n)
{
	for (long i = 0; i < n; i++) {
		free(p[i].text);
		free(p[i].meta);
	}
	free(p);
}

char *parm_apply_template(const char *tmpl, const char *text)
{
	static const char hole[] = "{prompt}";
	size_t holes = 0, tl = strlen(text), hl = sizeof hole - 1;
	if (!tmpl)
		return parm_xstrdup(text);
	for (const char *s = tmpl; (s = strstr(s, hole)); s += hl)
		holes++;
	char *out = parm_xmalloc(strlen(tmpl) + holes * tl + 1), *o = out;
	for (const char *s = tmpl, *h; ; s = h + hl) {
		h = strstr(s, hole);
		size_t lit = h ? (size_t)(h - s) : strlen(s);
		memcpy(o, s, lit);
		o += lit;
		if (!h)
			break;
		memcpy(o, text, tl);
		o += tl;
	}
	*o = '\0';
	return out;
}

const char *parm_layout_words(const char *layout, char *buf, size_t size)
{
	if (layout && !strcmp(layout, "chat"))
		return "a user's turn of the chat template";
	if (!layout || !strcmp(layout, "{prompt}"))
		return "the prompt as it is";
	snprintf(buf, size, "'%s'", layout);
	return buf;
}

int parm_check_template(const char *tmpl)
{
	if (strcmp(tmpl, "chat") && !strstr(tmpl, "{prompt}"))
		return parm_fail("'%s' has no {prompt} (and is not 'chat')", tmpl);
	return 0;
}
