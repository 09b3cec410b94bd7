#!/usr/bin/python3
# peft-ref.py GGUF_PY MODEL.gguf CHECKPOINT_DIR ALPHA ID... - the official
# PARM code's forward, in PyTorch, as the reference tests/test_peft.c holds
# parm's imported ARM to: the llama MODEL.gguf (f32) brought back to Hugging
# Face's layout (q and k rows un-permuted: the inverse of llama.cpp's
# converter's permute), the PBLoRA checkpoint of CHECKPOINT_DIR (the format
# the official peft's save_pretrained writes) applied as its layer does,
#   dW = s (B[:, :r1] W1 A[:r1] + B[:, r1:] (alpha @ W2).view(r2, r2) A[r1:]),
# s = lora_alpha / r2 (or, for peft's ordinary LoRA, dW = B A lora_alpha / r,
# ALPHA unused), and the model run as Hugging Face's LlamaModel runs
# (rotate-half rope, RMSNorm, grouped-query attention, SwiGLU).  Writes the
# logits of every position, float32, [n][V], on stdout.
import json
import struct
import sys

sys.path.insert(0, sys.argv[1])
import numpy as np
import torch
from gguf import GGUFReader

MODULES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
           "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}


def field(reader, key):
    return reader.fields[key].contents()


def unpermute(w, n_head):
    """Inverse of llama.cpp's converter's permute (rotate-half -> interleaved)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        assert e["dtype"] == "F32", e["dtype"]
        b, end = e["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[b:end], dtype=np.float32).reshape(e["shape"]).copy())
    return out


def main():
    model, ckpt, alpha = sys.argv[2], sys.argv[3], [float(a) for a in sys.argv[4].split(",")]
    ids = torch.tensor([int(i) for i in sys.argv[5:]])
    r = GGUFReader(model)
    arch = field(r, "general.architecture")
    assert arch == "llama", arch
    H = field(r, "llama.attention.head_count")
    G = field(r, "llama.attention.head_count_kv")
    L = field(r, "llama.block_count")
    eps = field(r, "llama.attention.layer_norm_rms_epsilon")
    theta = field(r, "llama.rope.freq_base") if "llama.rope.freq_base" in r.fields else 10000.0
    w = {t.name: torch.from_numpy(np.array(t.data, dtype=np.float32)) for t in r.tensors}
    D = w["token_embd.weight"].shape[1]
    hd = D // H

    cfg = json.load(open(ckpt + "/adapter_config.json"))
    lora = cfg["peft_type"] == "LORA"    # peft's ordinary LoRA: dW = B A lora_alpha / r
    assert lora or cfg["peft_type"] == "PBLORA"
    if lora:
        s = cfg["lora_alpha"] / cfg["r"]
    else:
        r1, r2, s = cfg["r1"], cfg["r2"], cfg["lora_alpha"] / cfg["r2"]
    ad = read_safetensors(ckpt + "/adapter_model.safetensors")
    pref = torch.tensor(alpha, dtype=torch.float32)

    def weight(l, module):
        g = w["blk.%d.%s.weight" % (l, MODULES[module])]
        if module == "q_proj":
            g = unpermute(g, H)
        elif module == "k_proj":
            g = unpermute(g, G)
        section = "mlp" if module in ("gate_proj", "up_proj", "down_proj") else "self_attn"
        key = "base_model.model.model.layers.%d.%s.%s." % (l, section, module)
        if lora:
            if key + "lora_A.weight" not in ad:
                return g
            return g + ad[key + "lora_B.weight"] @ ad[key + "lora_A.weight"] * s
        key += "pblora_"
        if key + "A" not in ad:
            return g
        A, B, W1, W2 = ad[key + "A"], ad[key + "B"], ad[key + "W1"], ad[key + "W2"]
        W2a = (pref @ W2).view(r2, r2)
        dw = B[:, :r1] @ W1 @ A[:r1, :] + B[:, r1:] @ W2a @ A[r1:, :]
        return g + dw * s

    def rms(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g

    def rotate_half(x):
        x1, x2 = x[..., :x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
        return torch.cat((-x2, x1), dim=-1)

    T = len(ids)
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    freqs = torch.outer(torch.arange(T, dtype=torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
    mask = torch.full((T, T), float("-inf")).triu(1)

    h = w["token_embd.weight"][ids]
    for l in range(L):
        x = rms(h, w["blk.%d.attn_norm.weight" % l])
        q = (x @ weight(l, "q_proj").T).view(T, H, hd)
        k = (x @ weight(l, "k_proj").T).view(T, G, hd)
        v = (x @ weight(l, "v_proj").T).view(T, G, hd)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(H // G, dim=1), v.repeat_interleave(H // G, dim=1)
        att = torch.einsum("thd,shd->hts", q, k) / hd ** 0.5 + mask
        o = torch.einsum("hts,shd->thd", att.softmax(-1), v).reshape(T, H * hd)
        h = h + o @ weight(l, "o_proj").T
        x = rms(h, w["blk.%d.ffn_norm.weight" % l])
        ff = torch.nn.functional.silu(x @ weight(l, "gate_proj").T) * (x @ weight(l, "up_proj").T)
        h = h + ff @ weight(l, "down_proj").T
    logits = rms(h, w["output_norm.weight"]) @ w["output.weight"].T
    sys.stdout.buffer.write(logits.detach().numpy().astype(np.float32).tobytes())


main()
