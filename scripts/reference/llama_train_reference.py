#!/usr/bin/python3
"""Independent float64 training reference for Flywheel's native training path, and the generator of
test/fixtures/golden/train-<model>.{json,f32}.

torch autograd over a batched Llama forward written here (modeling_llama style: RMSNorm, rotate_half RoPE,
repeat_kv GQA, padded causal softmax attention, SwiGLU, tied or untied head), plus a LlamaForSequenceClassification
style scalar head (`score.weight`, read at each row's last real token). The optimizer is torch.optim.AdamW with
torch.nn.utils.clip_grad_norm_ and a warmup + cosine schedule. It reads the committed checkpoints with the
safetensors reader of llama_reference.py (nothing from Flywheel). Deterministic: a rerun gives the same bytes.
Run: `/usr/bin/python3 scripts/reference/llama_train_reference.py`.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama_reference import FIXTURES, read_safetensors, rope_inv_freq  # noqa: E402

GOLDEN = FIXTURES / "golden"

# The fixed batch: 3 rows of T=8 slots. Row 0 full, row 1 right-padded (6 real), row 2 left-padded (2 pads, 6 real;
# its first two queries see no key). Loss on next-token targets inside each row, with row 0's first 3 targets
# masked out (a "prompt") and row 2's second real target given weight 2.
T = 8
LENGTHS = [(0, 8), (0, 6), (2, 8)]  # [first real slot, end) per row
OPT = {"lr": 3e-3, "beta1": 0.9, "beta2": 0.95, "eps": 1e-6, "weightDecay": 0.1, "maxGradNorm": 0.0,
       "warmupSteps": 3, "totalSteps": 10, "minLrRatio": 0.1}
STEPS = 10
MICRO = [[0, 1], [2]]  # gradient accumulation: rows of each micro-batch, each with gradScale 1/len(MICRO)


def make_batch(vocab: int, seed: int) -> dict:
    g = np.random.default_rng(seed)
    B = len(LENGTHS)
    tokens = np.zeros((B, T), dtype=np.int64)
    mask = np.zeros((B, T), dtype=np.int64)
    for b, (s, e) in enumerate(LENGTHS):
        tokens[b, s:e] = g.integers(0, vocab, e - s)
        mask[b, s:e] = 1
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    targets = np.zeros((B, T), dtype=np.int64)
    weights = np.zeros((B, T), dtype=np.float64)
    for b, (s, e) in enumerate(LENGTHS):
        for t in range(s, e - 1):
            targets[b, t] = tokens[b, t + 1]
            weights[b, t] = 1.0
    weights[0, :3] = 0.0
    weights[2, 3] = 2.0
    return {"tokens": tokens, "mask": mask, "positions": positions, "targets": targets, "weights": weights}


def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def final_hidden(cfg, W, tokens, positions, mask, window=None):
    """(B, T) -> (B, T, C) final-normed hidden states; with `window`, a query at slot i sees only the keys j > i - window
    (by slot, as transformers builds Mistral's sliding window from cache positions)."""
    B, TT = tokens.shape
    n_head, C = cfg["num_attention_heads"], cfg["hidden_size"]
    n_kv = cfg.get("num_key_value_heads") or n_head
    hd = cfg.get("head_dim") or C // n_head
    eps = cfg["rms_norm_eps"]
    freqs = positions.to(torch.float64)[..., None] * rope_inv_freq(cfg, hd)  # (B, T, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[:, None], emb.sin()[:, None]  # (B, 1, T, hd)
    causal = torch.ones(TT, TT, dtype=torch.bool).tril()
    if window is not None:
        causal &= torch.arange(TT)[None, :] > torch.arange(TT)[:, None] - window
    allowed = causal[None, None] & mask.bool()[:, None, None, :]  # (B, 1, T, T)
    any_key = allowed.any(-1, keepdim=True)

    def linear(x, name):
        y = x @ W[name + ".weight"].T
        return y + W[name + ".bias"] if name + ".bias" in W else y

    h = W["model.embed_tokens.weight"][tokens]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = rms_norm(h, W[p + "input_layernorm.weight"], eps)
        q = linear(x, p + "self_attn.q_proj").view(B, TT, n_head, hd).transpose(1, 2)
        k = linear(x, p + "self_attn.k_proj").view(B, TT, n_kv, hd).transpose(1, 2)
        v = linear(x, p + "self_attn.v_proj").view(B, TT, n_kv, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(n_head // n_kv, dim=1)
        v = v.repeat_interleave(n_head // n_kv, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        att = torch.where(allowed, att, torch.full_like(att, -1e300))
        probs = torch.softmax(att, dim=-1) * any_key  # a query with no visible key outputs zero
        o = (probs @ v).transpose(1, 2).reshape(B, TT, n_head * hd)
        h = h + linear(o, p + "self_attn.o_proj")
        x = rms_norm(h, W[p + "post_attention_layernorm.weight"], eps)
        h = h + linear(torch.nn.functional.silu(linear(x, p + "mlp.gate_proj")) * linear(x, p + "mlp.up_proj"),
                       p + "mlp.down_proj")
    return rms_norm(h, W["model.norm.weight"], eps)


def lm_loss(cfg, W, batch, rows):
    t = {k: torch.from_numpy(v[rows]) for k, v in batch.items()}
    hf = final_hidden(cfg, W, t["tokens"], t["positions"], t["mask"])
    head = W["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else W["lm_head.weight"]
    logp = torch.log_softmax(hf @ head.T, dim=-1)
    nll = -logp.gather(-1, t["targets"][..., None])[..., 0]
    return (nll * t["weights"]).sum() / t["weights"].sum()


def score_objective(cfg, W, batch, coef):
    """sum_b coef[b] * score(b), score read at each row's last real token (HF LlamaForSequenceClassification)."""
    t = {k: torch.from_numpy(v) for k, v in batch.items()}
    hf = final_hidden(cfg, W, t["tokens"], t["positions"], t["mask"])
    last = torch.tensor([e - 1 for (_, e) in LENGTHS])
    scores = hf[torch.arange(len(LENGTHS)), last] @ W["score.weight"].T  # (B, 1)
    return (scores[:, 0] * torch.from_numpy(coef)).sum(), scores[:, 0]


def lr_at(step):
    o = OPT
    if step < o["warmupSteps"]:
        return o["lr"] * (step + 1) / o["warmupSteps"]
    progress = min(1.0, (step - o["warmupSteps"]) / (o["totalSteps"] - o["warmupSteps"]))
    lo = o["lr"] * o["minLrRatio"]
    return lo + (o["lr"] - lo) * 0.5 * (1 + math.cos(math.pi * progress))


def param_order(cfg, names):
    """Flywheel's native parameter order (train_model.cpp)."""
    out = ["model.embed_tokens.weight"]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [p + "input_layernorm.weight", p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight",
                p + "self_attn.v_proj.weight"]
        if p + "self_attn.q_proj.bias" in names:
            out += [p + "self_attn.q_proj.bias", p + "self_attn.k_proj.bias", p + "self_attn.v_proj.bias"]
        out += [p + "self_attn.o_proj.weight", p + "post_attention_layernorm.weight", p + "mlp.gate_proj.weight",
                p + "mlp.up_proj.weight", p + "mlp.down_proj.weight"]
    out += ["model.norm.weight"]
    if "lm_head.weight" in names and not cfg.get("tie_word_embeddings"):
        out += ["lm_head.weight"]
    return out + ["score.weight"]


def run(model: str, seed: int) -> None:
    cfg = json.loads((FIXTURES / model / "config.json").read_text())
    raw = read_safetensors(FIXTURES / model / "model.safetensors")
    if cfg.get("tie_word_embeddings"):
        raw.pop("lm_head.weight", None)
    g = np.random.default_rng(seed + 1)
    raw["score.weight"] = (g.standard_normal((1, cfg["hidden_size"])) / math.sqrt(cfg["hidden_size"])).astype(np.float32)
    order = param_order(cfg, raw)
    W = {k: torch.tensor(raw[k].astype(np.float64), requires_grad=True) for k in order}
    batch = make_batch(cfg["vocab_size"], seed)
    all_rows = list(range(len(LENGTHS)))

    loss = lm_loss(cfg, W, batch, all_rows)
    loss.backward()
    lm_grads = {k: W[k].grad.clone() if W[k].grad is not None else torch.zeros_like(W[k]) for k in order}
    for k in order:
        W[k].grad = None
    coef = np.array([1.0, -0.5, 2.0])
    obj, scores = score_objective(cfg, W, batch, coef)
    obj.backward()
    score_grads = {k: W[k].grad.clone() if W[k].grad is not None else torch.zeros_like(W[k]) for k in order}
    for k in order:
        W[k].grad = torch.zeros_like(W[k])  # zeros, not None: AdamW then updates (decays) every parameter

    # 10 AdamW steps on the LM objective. score.weight is not used by it: its gradient is zero, so weight decay is
    # its only change (Flywheel, like AdamW on zero-filled grads, decays every matrix).
    grad_norm0 = math.sqrt(sum(float((v ** 2).sum()) for v in lm_grads.values()))
    OPT["maxGradNorm"] = round(0.5 * grad_norm0, 6)  # clipping is active from the first step
    params = [W[k] for k in order]
    decay = [W[k] for k in order if raw[k].ndim == 2]
    no_decay = [W[k] for k in order if not (raw[k].ndim == 2)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": OPT["weightDecay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=OPT["lr"], betas=(OPT["beta1"], OPT["beta2"]), eps=OPT["eps"], foreach=False)
    losses, norms, lrs = [], [], []
    for step in range(STEPS):
        opt.zero_grad(set_to_none=False)
        total = 0.0
        for rows in MICRO:
            micro = lm_loss(cfg, W, batch, rows) / len(MICRO)
            micro.backward()
            total += float(micro)
        losses.append(total)
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, OPT["maxGradNorm"])))
        lr = lr_at(step)
        lrs.append(lr)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()

    layout, blobs, offset = [], [], 0
    for k in order:
        n = raw[k].size
        layout.append({"name": k, "shape": list(raw[k].shape), "size": n})
    for block in (lambda k: raw[k], lambda k: lm_grads[k].numpy(), lambda k: score_grads[k].numpy(),
                  lambda k: W[k].detach().numpy()):
        for k in order:
            blobs.append(np.asarray(block(k), dtype=np.float64).astype("<f4").reshape(-1))
    data = np.concatenate(blobs)
    P = sum(raw[k].size for k in order)
    name = f"train-{model}"
    (GOLDEN / f"{name}.f32").write_bytes(data.tobytes())
    doc = {
        "generator": "scripts/reference/llama_train_reference.py",
        "checkpoint": model,
        "note": "float64 torch autograd; score.weight is a seeded random (1, hidden) scalar head added to the checkpoint",
        "dataFile": f"{name}.f32",
        "dataLayout": "little-endian float32, 4 blocks of numParams floats each in `tensors` order: initial params, "
                      "LM-loss grads, score-objective grads, params after `steps` optimizer steps",
        "numParams": int(P),
        "tensors": layout,
        "batch": {"B": len(LENGTHS), "T": T, **{k: v.reshape(-1).tolist() for k, v in batch.items()}},
        "lmLoss": float(loss),
        "scoreCoef": coef.tolist(),
        "scores": scores.detach().numpy().tolist(),
        "optimizer": OPT,
        "steps": STEPS,
        "microBatches": MICRO,
        "stepLosses": losses,
        "stepGradNorms": norms,
        "stepLrs": lrs,
    }
    (GOLDEN / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{name}: loss {float(loss):.6f} params {P} grad norm {grad_norm0:.4f} losses {losses[0]:.4f}->{losses[-1]:.4f}")


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    run("tiny-gqa", 7)
    run("tiny-mqa-llama3", 11)
