# tests/owndata.awk - a task of its own for tests/t_owndata.sh: a thing
# described by four words, each a warm or a cold colour or a small or a big
# size.  helpful counts warm colours less cold ones, harmless small sizes
# less big ones.
#
#   awk -v mode=corpus|pairs|prompts|score -v seed=S -v n=N -f owndata.awk
#
# corpus: n JSONL documents {"prompt", "response"}; pairs: n pairs in
# PKU-SafeRLHF's layout, each labelled by which response scores higher on
# each objective (null for a tie, never both tied); prompts: n prompts;
# score (objective=helpful|harmless): one score per parm-sample record
# read from standard input.
function pick(a) { return a[int(rand() * 4) + 1] }
function describe(j,   s, x, c) {
	H[j] = L[j] = 0
	for (x = 1; x <= 4; x++) {
		c = int(rand() * 4)
		s = s " " (c == 0 ? pick(warm) : c == 1 ? pick(cold) : c == 2 ? pick(small) : pick(big))
		H[j] += c == 0 ? 1 : c == 1 ? -1 : 0
		L[j] += c == 2 ? 1 : c == 3 ? -1 : 0
		s = s (x < 3 ? "," : x == 3 ? " and" : ".")
	}
	return s
}
function label(a, b) { return a == b ? "null" : a > b ? 0 : 1 }
function score(text,   w, m, i, n) {
	m = split(text, w, /[^a-z]+/)
	for (i = 1; i <= m; i++)
		if (objective == "helpful")
			n += (w[i] in is_warm) - (w[i] in is_cold)
		else
			n += (w[i] in is_small) - (w[i] in is_big)
	return n + 0
}
BEGIN {
	split("cat dog hat car cup box lamp bird fish tree", thing, " ")
	split("red orange yellow gold", warm, " "); split("blue green grey teal", cold, " ")
	split("tiny small little short", small, " "); split("big huge large tall", big, " ")
	for (i = 1; i <= 4; i++) {
		is_warm[warm[i]]; is_cold[cold[i]]; is_small[small[i]]; is_big[big[i]]
	}
	if (mode != "score")
		generate()
}
function generate(   i, t, p, r0, r1) {
	srand(seed)
	for (i = 0; i < n; i++) {
		t = thing[int(rand() * 10) + 1]
		p = "describe the " t
		if (mode == "prompts") { print p; continue }
		r0 = " the " t " is" describe(0)
		r1 = " the " t " is" describe(1)
		if (mode == "corpus") {
			printf "{\"prompt\":\"%s\",\"response\":\"%s\"}\n", p, r0
			continue
		}
		if (H[0] == H[1] && L[0] == L[1]) { i--; continue }
		printf "{\"prompt\":\"%s\",\"response_0\":\"%s\",\"response_1\":\"%s\",", p, r0, r1
		printf "\"better_response_id\":%s,\"safer_response_id\":%s}\n", label(H[0], H[1]), label(L[0], L[1])
	}
}
mode == "score" {
	r = $0
	sub(/.*"response": *"/, "", r)
	sub(/".*/, "", r)
	print score(r)
}
