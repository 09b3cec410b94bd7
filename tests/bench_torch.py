#!/usr/bin/python3
"""bench_torch.py - the official PARM code's training step in PyTorch, to
time beside bench_train on the same shapes (make bench runs both).

arm: a llama with random frozen weights, PBLoRA on q, k, v (r1 = r2 = 4,
k = 2 objectives, scale 2) as the official peft fork computes it: the
dense delta B [W1 0; 0 sum_i alpha_i W2_i] A built on every call and
added to the weight; response log-probabilities summed per sequence;
the Bradley-Terry loss of each objective weighted by alpha; Adam on the
adapters.  lm: every weight of a small llama trained on next-token loss.
Prints one line per mode: mode, model, batch, seconds a step, tokens/s.

usage: bench_torch.py [--threads N] [--steps N]
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F


def rms_norm(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, theta=10000.0):
    # x [B, H, T, hd], pairs (2i, 2i+1) rotated as llama.cpp's NORM rope
    hd, t = x.shape[-1], x.shape[-2]
    freq = theta ** (-torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    ang = torch.arange(t, dtype=torch.float32)[:, None] * freq[None, :]
    cos, sin = ang.cos(), ang.sin()
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), -1).flatten(-2)


def attention(q, k, v):
    # as Hugging Face's llama of torch 1.13's day: scores, causal mask, softmax
    t, hd = q.shape[-2], q.shape[-1]
    s = q @ k.transpose(-1, -2) / math.sqrt(hd)
    s = s.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(s, -1) @ v


class PBLoRA(torch.nn.Module):
    """The official layer's maths: delta = B blockdiag(W1, W2(alpha)) A."""

    def __init__(self, n_in, n_out, r1, r2, k, scale):
        super().__init__()
        r = r1 + r2
        self.A = torch.nn.Parameter(torch.randn(r, n_in) / math.sqrt(n_in))
        self.B = torch.nn.Parameter(torch.zeros(n_out, r) + 1e-3)
        self.W1 = torch.nn.Parameter(torch.eye(r1))
        self.W2 = torch.nn.Parameter(torch.stack([torch.eye(r2)] * k))
        self.r1, self.scale, self.alpha = r1, scale, None

    def delta(self):
        w2 = torch.einsum("k,kij->ij", self.alpha, self.W2)
        m = torch.block_diag(self.W1, w2)
        return self.scale * (self.B @ m @ self.A)


class Llama(torch.nn.Module):
    def __init__(self, dim, layers, heads, ff, vocab, adapters):
        super().__init__()
        g = lambda *s: torch.nn.Parameter(torch.randn(*s) * 0.02, requires_grad=not adapters)
        ones = lambda n: torch.nn.Parameter(torch.ones(n), requires_grad=not adapters)
        self.heads = heads
        self.emb, self.out, self.norm = g(vocab, dim), g(vocab, dim), ones(dim)
        self.layers = torch.nn.ModuleList()
        for _ in range(layers):
            l = torch.nn.Module()
            l.an, l.fn = ones(dim), ones(dim)
            l.q, l.k, l.v, l.o = g(dim, dim), g(dim, dim), g(dim, dim), g(dim, dim)
            l.gate, l.up, l.down = g(ff, dim), g(ff, dim), g(dim, ff)
            if adapters:
                l.ad = torch.nn.ModuleList(PBLoRA(dim, dim, 4, 4, 2, 2.0) for _ in range(3))
            self.layers.append(l)
        self.adapters = adapters

    def set_alpha(self, alpha):
        for l in self.layers:
            for a in l.ad:
                a.alpha = alpha

    def proj(self, l, i, w, x):
        if self.adapters:
            w = w + l.ad[i].delta()          # the dense delta, every call
        return F.linear(x, w)

    def forward(self, tokens):
        b, t = tokens.shape
        x = self.emb[tokens]
        for l in self.layers:
            h = rms_norm(x, l.an)
            q, k, v = (self.proj(l, i, w, h) for i, w in enumerate((l.q, l.k, l.v)))
            q, k, v = (z.view(b, t, self.heads, -1).transpose(1, 2) for z in (q, k, v))
            a = attention(rope(q), rope(k), v)
            x = x + F.linear(a.transpose(1, 2).reshape(b, t, -1), l.o)
            h = rms_norm(x, l.fn)
            x = x + F.linear(F.silu(F.linear(h, l.gate)) * F.linear(h, l.up), l.down)
        return F.linear(rms_norm(x, self.norm), self.out)


def arm_step(model, opt, tokens, prompt, beta=0.1):
    alpha = torch.distributions.Dirichlet(torch.full((2,), 0.5)).sample()
    model.set_alpha(alpha)
    logits = model(tokens[:, :-1])
    logp = torch.log_softmax(logits, -1).gather(-1, tokens[:, 1:, None]).squeeze(-1)
    s = logp[:, prompt - 1:].sum(-1)                   # response log-probs, summed
    chosen, rejected = s[0::2], s[1::2]
    margins = torch.stack((chosen - rejected, rejected - chosen))   # objectives disagree
    loss = -(alpha[:, None] * F.logsigmoid(beta * margins)).sum(0).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def lm_step(model, opt, tokens, prompt):
    logits = model(tokens[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
    opt.zero_grad()
    loss.backward()
    opt.step()


def bench(mode, name, shape, batch, length, steps):
    torch.manual_seed(1)
    model = Llama(*shape, adapters=mode == "arm")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    tokens = torch.randint(1, shape[-1], (batch, length))
    tokens[1::2, : length // 4] = tokens[0::2, : length // 4]      # pairs share a prompt
    step = arm_step if mode == "arm" else lm_step
    best = math.inf
    for _ in range(steps):
        t = time.perf_counter()
        step(model, opt, tokens, length // 4)
        best = min(best, time.perf_counter() - t)
    print("torch %-4s %-8s %3dx%-4d step %6.2f s %7.0f tok/s" %
          (mode, name, batch, length, best, batch * length / best), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print("PyTorch %s, %d threads: the official step, best of %d" %
          (torch.__version__, torch.get_num_threads(), a.steps))
    with torch.backends.mkldnn.flags(enabled=True):
        bench("arm", "134M", (768, 12, 12, 2048, 32000), 8, 256, a.steps)
        bench("lm", "small256", (256, 4, 4, 768, 32000), 8, 256, a.steps + 1)


if __name__ == "__main__":
    main()
