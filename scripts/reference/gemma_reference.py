#!/usr/bin/python3
"""Independent float64 Gemma 2 / Gemma 3 (text) reference (transformers' modeling_gemma2 / modeling_gemma3 style) and
the generator of Flywheel's Gemma fixtures: test/fixtures/tiny-gemma2/ and tiny-gemma3/ (config.json + F32
safetensors), tiny-gemma2.gguf and tiny-gemma3.gguf (as llama.cpp's convert_hf_to_gguf.py writes them),
golden/tiny-gemma{2,3}.{json,f32} (logits) and golden/train-tiny-gemma{2,3}.{json,f32} (loss, gradients, scalar-head
scores and AdamW steps), plus tiny-gemma3-linear/, tiny-gemma3-linear.gguf and golden/tiny-gemma3-linear.{json,f32}
(tiny-gemma3's config with Gemma 3's linear rope_scaling, factor 8, on its global layer, seed 3346; logits golden
only).

The Gemma forward, as transformers computes it (here in float64):
- h = embed_tokens[ids] * float32(sqrt(hidden_size)) (transformers casts the normalizer to the hidden dtype);
- every RMSNorm is x * rsqrt(mean(x^2) + eps) * (1 + w): the checkpoint stores w (Gemma's offset), q/k norms included;
- "sandwich" layers: h += post_attention_layernorm(attn(input_layernorm(h)));
  h += post_feedforward_layernorm(down(gelu_tanh(gate(x)) * up(x))), x = pre_feedforward_layernorm(h);
- attention: q/k/v without bias, GQA (repeat_kv), Gemma 3 only: per-head q_norm / k_norm (over head_dim) BEFORE RoPE;
  rotate_half RoPE; scores = q.k * query_pre_attn_scalar ** -0.5; Gemma 2 only: scores = cap * tanh(scores / cap)
  (attn_logit_softcapping) BEFORE the mask; on a "sliding_attention" layer a query at slot i sees keys j with
  i - sliding_window < j <= i (transformers' sliding_window_causal mask), on "full_attention" layers every j <= i;
- layer_types: Gemma 2 sliding where (i + 1) % 2 != 0 (even layers), Gemma 3 where (i + 1) % sliding_window_pattern
  != 0; Gemma 3's sliding layers rotate with rope_local_base_freq (never scaled), its full layers with rope_theta and,
  with rope_scaling {"rope_type": "linear", "factor": f} (Gemma 3 4B/12B/27B), inv_freq / f (positions / f);
- final model.norm, logits = h @ embed_tokens^T (tied, no lm_head tensor); Gemma 2 only: logits = fcap * tanh(logits /
  fcap) (final_logit_softcapping), which the LM loss of the training golden also sees (the scalar score head does not).

With --cls it writes only the reward-model fixtures instead: tiny-gemma2-rm/ (Gemma2ForSequenceClassification) and
tiny-gemma3-rm/ (Gemma3TextForSequenceClassification, transformers' name for the text-only Gemma 3 classifier; its
Gemma3ForSequenceClassification wraps the multimodal Gemma3Model), each config.json + F32 safetensors (no lm_head, a
`score.weight` (1, hidden)) + a one-character-per-token tokenizer.json, and golden/tiny-gemma{2,3}-rm.{json,f32}: the
float64 scores of 4 sequences and the gradients of sum(coef * score) over every parameter. The classifier is
transformers' GenericForSequenceClassification: score = score.weight @ the base model's final-normed hidden state at
the last non-pad token; Gemma 2's final_logit_softcapping belongs to Gemma2ForCausalLM's lm_head logits and is NOT
applied to the score (the fixture keeps final_logit_softcapping 3.0 in its config so a capped score would show).

It is not transformers' code (never imported) nor llama.cpp's; multimodal Gemma 3 (Gemma3ForConditionalGeneration,
vision tower, bidirectional image attention), Gemma 1 and rope_scaling types other than linear are not covered.
Everything else is imported from llama_reference.py (safetensors reader/writer, rope_inv_freq, random_llama,
write_golden), gguf_writer.py (GGUF primitives) and llama_train_reference.py (batch, optimizer, file layout); the
forwards, loss and parameter order here are installed into those modules only while the Gemma files are written
(`gemma_forwards`). Deterministic: a rerun gives the same bytes.
Run: `/usr/bin/python3 scripts/reference/gemma_reference.py [--cls]`.
"""
from __future__ import annotations

import contextlib
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llama_reference as lr  # noqa: E402
import llama_train_reference as ltr  # noqa: E402
from gguf_writer import (GGML_F32, GGUF_ALIGNMENT, GGUF_FLOAT32, GGUF_STRING, GGUF_UINT32,  # noqa: E402
                         gguf_kv, gguf_str)
from llama_reference import FIXTURES, repeat_kv, rope_inv_freq, rotate_half  # noqa: E402

GENERATOR = "scripts/reference/gemma_reference.py"
GEMMA_ARCHS = {"Gemma2ForCausalLM": 2, "Gemma2ForSequenceClassification": 2,
               "Gemma3ForCausalLM": 3, "Gemma3ForSequenceClassification": 3, "Gemma3TextForSequenceClassification": 3}


def gemma_version(cfg: dict) -> int | None:
    return GEMMA_ARCHS.get(cfg["architectures"][0])


def is_gemma(cfg: dict) -> bool:
    return gemma_version(cfg) is not None


# ---------------------------------------------------------------------------------------------------------
# Pieces shared by both forwards


def default_layer_types(cfg: dict) -> list[str]:
    """Gemma2Config / Gemma3TextConfig's default layer_types."""
    pattern = 2 if gemma_version(cfg) == 2 else cfg["sliding_window_pattern"]
    return ["sliding_attention" if (i + 1) % pattern != 0 else "full_attention"
            for i in range(cfg["num_hidden_layers"])]


def layer_types(cfg: dict) -> list[str]:
    types = cfg.get("layer_types") or default_layer_types(cfg)
    assert len(types) >= cfg["num_hidden_layers"] and set(types) <= {"sliding_attention", "full_attention"}, types
    return types


def embed_normalizer(cfg: dict) -> float:
    """Gemma2Model: torch.tensor(hidden_size ** 0.5, dtype=hidden dtype); Gemma3TextScaledWordEmbedding likewise: the
    f32 rounding of sqrt(hidden_size), as a float64 number."""
    return float(np.float32(math.sqrt(cfg["hidden_size"])))


def gemma_rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float, offset: bool = True) -> torch.Tensor:
    """Gemma2RMSNorm / Gemma3RMSNorm: x * rsqrt(mean(x^2) + eps) * (1 + w). offset=False (sanity checks only)
    multiplies by w as Llama does."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * ((1 + w) if offset else w)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """gelu_pytorch_tanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def softcap(x: torch.Tensor, cap: float | None) -> torch.Tensor:
    return x if cap is None else cap * torch.tanh(x / cap)


def window_allowed(T: int, window: int | None) -> torch.Tensor:
    """(T, T) bool: query slot i sees key slot j when j <= i and, with a window, j > i - window."""
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    ok = j <= i
    return ok if window is None else ok & (j > i - window)


def linear_factor(cfg: dict) -> float | None:
    """Gemma 3's rope_scaling {"rope_type": "linear", "factor": f} (its global layers only), else None."""
    scaling = cfg.get("rope_scaling")
    if scaling is None:
        return None
    assert gemma_version(cfg) == 3 and scaling.get("rope_type", scaling.get("type")) == "linear", scaling
    return float(scaling["factor"])


def global_inv_freq(cfg: dict, hd: int) -> torch.Tensor:
    """The full-attention layers' inv_freq: rope_theta's, divided by the linear factor where Gemma 3 scales
    (transformers' _compute_linear_scaling_rope_parameters: inv_freq /= factor)."""
    factor = linear_factor(cfg)
    if factor is None:
        return rope_inv_freq(cfg, hd)
    return rope_inv_freq({"rope_theta": cfg["rope_theta"], "rope_scaling": None}, hd) / factor


def layer_plan(cfg: dict, window: int | None = None, local_base: float | None = None,
               scale_local: bool = False) -> list[tuple[int | None, torch.Tensor]]:
    """(attention window or None, RoPE inv_freq) per layer. `window` / `local_base` override sliding_window /
    rope_local_base_freq, `scale_local` also divides the sliding layers' inv_freq by the linear factor (sanity checks
    only)."""
    hd = cfg["head_dim"]
    W = window if window is not None else cfg["sliding_window"]
    global_freq = global_inv_freq(cfg, hd)
    if gemma_version(cfg) == 3:
        base = local_base if local_base is not None else cfg["rope_local_base_freq"]
        local_freq = rope_inv_freq({"rope_theta": base, "rope_scaling": None}, hd)
        if scale_local:
            local_freq = local_freq / linear_factor(cfg)
    else:
        local_freq = global_freq  # Gemma 2: rope_theta on every layer
    return [(W, local_freq) if t == "sliding_attention" else (None, global_freq)
            for t in layer_types(cfg)[: cfg["num_hidden_layers"]]]


DEFAULT_OPTS = {"offset": True, "attn_cap": True, "final_cap": True, "normalizer": True, "qk_norm": True,
                "window": None, "local_base": None, "scale_local": False}


def lm_logits(cfg: dict, W: dict[str, torch.Tensor], h: torch.Tensor, final_cap: bool = True) -> torch.Tensor:
    """Final-normed hidden -> logits: tied head (lm_head only when untied), then Gemma 2's final soft cap."""
    head = W["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", True) else W["lm_head.weight"]
    logits = h @ head.T
    return softcap(logits, cfg.get("final_logit_softcapping")) if final_cap else logits


# ---------------------------------------------------------------------------------------------------------
# The reference forwards, in float64


def forward(cfg: dict, w: dict[str, np.ndarray], ids: list[int], **opts) -> torch.Tensor:
    """(T) token ids -> (T, vocab) float64 logits, prefill. `opts` (DEFAULT_OPTS) switch single features off or
    override the window / local RoPE base, for the sanity checks only."""
    o = {**DEFAULT_OPTS, **opts}
    W = {k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in w.items()}
    n_head, n_kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    scaling = cfg["query_pre_attn_scalar"] ** -0.5
    attn_cap = cfg.get("attn_logit_softcapping") if o["attn_cap"] else None
    T = len(ids)
    pos = torch.arange(T, dtype=torch.float64)

    def norm(x, name):
        return gemma_rms_norm(x, W[name], eps, o["offset"])

    def linear(x, name):
        assert name + ".bias" not in W
        return x @ W[name + ".weight"].T

    h = W["model.embed_tokens.weight"][torch.tensor(ids)]  # (T, d)
    if o["normalizer"]:
        h = h * embed_normalizer(cfg)
    for i, (window, inv_freq) in enumerate(layer_plan(cfg, o["window"], o["local_base"], o["scale_local"])):
        p = f"model.layers.{i}."
        freqs = torch.outer(pos, inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()  # (T, hd)
        x = norm(h, p + "input_layernorm.weight")
        q = linear(x, p + "self_attn.q_proj").view(T, n_head, hd)
        k = linear(x, p + "self_attn.k_proj").view(T, n_kv, hd)
        v = linear(x, p + "self_attn.v_proj").view(T, n_kv, hd).transpose(0, 1)
        if p + "self_attn.q_norm.weight" in W and o["qk_norm"]:  # Gemma 3: per head, before RoPE
            q = norm(q, p + "self_attn.q_norm.weight")
            k = norm(k, p + "self_attn.k_norm.weight")
        q, k = q.transpose(0, 1), k.transpose(0, 1)  # (H, T, hd), (KV, T, hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k, v = repeat_kv(k, n_head // n_kv), repeat_kv(v, n_head // n_kv)
        att = softcap((q @ k.transpose(1, 2)) * scaling, attn_cap)  # (H, T, T), capped before the mask
        att = att.masked_fill(~window_allowed(T, window), float("-inf"))
        a = torch.softmax(att, dim=-1) @ v  # (H, T, hd)
        h = h + norm(linear(a.transpose(0, 1).reshape(T, n_head * hd), p + "self_attn.o_proj"),
                     p + "post_attention_layernorm.weight")
        x = norm(h, p + "pre_feedforward_layernorm.weight")
        m = linear(gelu_tanh(linear(x, p + "mlp.gate_proj")) * linear(x, p + "mlp.up_proj"), p + "mlp.down_proj")
        h = h + norm(m, p + "post_feedforward_layernorm.weight")
    h = norm(h, "model.norm.weight")
    return lm_logits(cfg, W, h, o["final_cap"])


def final_hidden(cfg, W, tokens, positions, mask, **opts):
    """Batched, padded, autograd forward (llama_train_reference.final_hidden's layout) of the Gemma model:
    (B, T) -> (B, T, C) final-normed hidden states. Window by slot index (as transformers builds the mask from
    cache positions), combined with the causal and padding masks; a query with no visible key outputs zero."""
    o = {**DEFAULT_OPTS, **opts}
    B, TT = tokens.shape
    n_head, n_kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    scaling = cfg["query_pre_attn_scalar"] ** -0.5
    attn_cap = cfg.get("attn_logit_softcapping") if o["attn_cap"] else None
    pad_ok = mask.bool()[:, None, None, :]  # (B, 1, 1, T)

    def norm(x, name):
        return gemma_rms_norm(x, W[name], eps, o["offset"])

    def linear(x, name):
        return x @ W[name + ".weight"].T

    h = W["model.embed_tokens.weight"][tokens]
    if o["normalizer"]:
        h = h * embed_normalizer(cfg)
    for i, (window, inv_freq) in enumerate(layer_plan(cfg, o["window"], o["local_base"], o["scale_local"])):
        p = f"model.layers.{i}."
        freqs = positions.to(torch.float64)[..., None] * inv_freq  # (B, T, hd/2)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[:, None], emb.sin()[:, None]  # (B, 1, T, hd)
        allowed = window_allowed(TT, window)[None, None] & pad_ok  # (B, 1, T, T)
        any_key = allowed.any(-1, keepdim=True)
        x = norm(h, p + "input_layernorm.weight")
        q = linear(x, p + "self_attn.q_proj").view(B, TT, n_head, hd)
        k = linear(x, p + "self_attn.k_proj").view(B, TT, n_kv, hd)
        v = linear(x, p + "self_attn.v_proj").view(B, TT, n_kv, hd).transpose(1, 2)
        if p + "self_attn.q_norm.weight" in W and o["qk_norm"]:
            q = norm(q, p + "self_attn.q_norm.weight")
            k = norm(k, p + "self_attn.k_norm.weight")
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        q = q * cos + ltr.rotate_half(q) * sin
        k = k * cos + ltr.rotate_half(k) * sin
        k = k.repeat_interleave(n_head // n_kv, dim=1)
        v = v.repeat_interleave(n_head // n_kv, dim=1)
        att = softcap((q @ k.transpose(-1, -2)) * scaling, attn_cap)
        att = torch.where(allowed, att, torch.full_like(att, -1e300))
        probs = torch.softmax(att, dim=-1) * any_key
        a = (probs @ v).transpose(1, 2).reshape(B, TT, n_head * hd)
        h = h + norm(linear(a, p + "self_attn.o_proj"), p + "post_attention_layernorm.weight")
        x = norm(h, p + "pre_feedforward_layernorm.weight")
        m = linear(gelu_tanh(linear(x, p + "mlp.gate_proj")) * linear(x, p + "mlp.up_proj"), p + "mlp.down_proj")
        h = h + norm(m, p + "post_feedforward_layernorm.weight")
    return norm(h, "model.norm.weight")


def lm_loss(cfg, W, batch, rows):
    """llama_train_reference.lm_loss with the Gemma head (tied, Gemma 2's final soft cap on the LM logits)."""
    t = {k: torch.from_numpy(v[rows]) for k, v in batch.items()}
    hf = final_hidden(cfg, W, t["tokens"], t["positions"], t["mask"])
    logp = torch.log_softmax(lm_logits(cfg, W, hf), dim=-1)
    nll = -logp.gather(-1, t["targets"][..., None])[..., 0]
    return (nll * t["weights"]).sum() / t["weights"].sum()


def param_order(cfg, names):
    """Flywheel's native parameter order (train_model.cpp) for Gemma: per layer input_layernorm, q/k/v (then biases
    and q_norm/k_norm where present), o_proj, post_attention_layernorm, pre_feedforward_layernorm, gate/up/down,
    post_feedforward_layernorm; then model.norm, lm_head only when untied, score."""
    out = ["model.embed_tokens.weight"]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [p + "input_layernorm.weight", p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight",
                p + "self_attn.v_proj.weight"]
        if p + "self_attn.q_proj.bias" in names:
            out += [p + "self_attn.q_proj.bias", p + "self_attn.k_proj.bias", p + "self_attn.v_proj.bias"]
        if p + "self_attn.q_norm.weight" in names:
            out += [p + "self_attn.q_norm.weight", p + "self_attn.k_norm.weight"]
        out += [p + "self_attn.o_proj.weight", p + "post_attention_layernorm.weight"]
        if p + "pre_feedforward_layernorm.weight" in names:
            out += [p + "pre_feedforward_layernorm.weight"]
        out += [p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight", p + "mlp.down_proj.weight"]
        if p + "post_feedforward_layernorm.weight" in names:
            out += [p + "post_feedforward_layernorm.weight"]
    out += ["model.norm.weight"]
    if "lm_head.weight" in names and not cfg.get("tie_word_embeddings"):
        out += ["lm_head.weight"]
    out += ["score.weight"]
    assert sorted(out) == sorted(names), "every parameter once"
    return out


_LLAMA = {"forward": lr.forward, "final_hidden": ltr.final_hidden, "param_order": ltr.param_order,
          "lm_loss": ltr.lm_loss}


@contextlib.contextmanager
def gemma_forwards():
    """While writing the Gemma files, llama_reference.write_golden / greedy_with_margin and llama_train_reference.run
    call the Gemma forward, final hidden, LM loss and parameter order (other configs still get the Llama ones)."""
    lr.forward = lambda cfg, w, ids: (forward if is_gemma(cfg) else _LLAMA["forward"])(cfg, w, ids)
    ltr.final_hidden = lambda cfg, *a: (final_hidden if is_gemma(cfg) else _LLAMA["final_hidden"])(cfg, *a)
    ltr.param_order = lambda cfg, names: (param_order if is_gemma(cfg) else _LLAMA["param_order"])(cfg, names)
    ltr.lm_loss = lambda cfg, *a: (lm_loss if is_gemma(cfg) else _LLAMA["lm_loss"])(cfg, *a)
    try:
        yield
    finally:
        lr.forward, ltr.final_hidden = _LLAMA["forward"], _LLAMA["final_hidden"]
        ltr.param_order, ltr.lm_loss = _LLAMA["param_order"], _LLAMA["lm_loss"]


def set_generator(path: Path, old: str) -> None:
    text = path.read_text()
    needle = f'"generator": "{old}"'
    assert text.count(needle) == 1, path
    path.write_text(text.replace(needle, f'"generator": "{GENERATOR}"'))


def write_train_golden(name: str, seed: int) -> None:
    """llama_train_reference.run with the Gemma pieces installed (float64 default dtype, as its __main__ sets)."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with gemma_forwards():
            ltr.run(name, seed)
    finally:
        torch.set_default_dtype(default)
    set_generator(ltr.GOLDEN / f"train-{name}.json", "scripts/reference/llama_train_reference.py")


# ---------------------------------------------------------------------------------------------------------
# GGUF, as convert_hf_to_gguf.py's Gemma2Model / Gemma3Model (no q/k permutation, NEOX rope, norms stored as 1 + w)

GGUF_LOCAL = {
    "input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "post_attention_norm.weight",
    "pre_feedforward_layernorm.weight": "ffn_norm.weight", "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight", "self_attn.k_norm.weight": "attn_k_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gemma_gguf_name(hf: str) -> str:
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    if hf in fixed:
        return fixed[hf]
    parts = hf.split(".")  # model.layers.N.<rest>
    return f"blk.{parts[2]}.{GGUF_LOCAL['.'.join(parts[3:])]}"


def write_gemma_gguf(path: Path, cfg: dict, weights: dict[str, np.ndarray], name: str) -> dict:
    """All-F32 GGUF v3 of an HF Gemma 2 / Gemma 3 checkpoint with gguf_writer.py's primitives. Metadata as
    Gemma2Model / Gemma3Model.set_gguf_parameters write it (no vocab_size, no rope.dimension_count; Gemma 2 writes no
    rope.freq_base, llama.cpp's default 10000). Every tensor whose name ends in "norm.weight" is stored as f32(1 + w)
    (the converter's `data_torch + 1`); no output.weight (tied). Returns what a reader must recover: {"kv": metadata,
    "tensors": {gguf name: f32 array as stored}}."""
    v = gemma_version(cfg)
    a = f"gemma{v}"
    n_head, n_kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    assert cfg["tie_word_embeddings"] and "lm_head.weight" not in weights
    assert cfg["query_pre_attn_scalar"] == hd, "llama.cpp scales queries by 1/sqrt(key_length)"
    assert layer_types(cfg) == default_layer_types(cfg), "llama.cpp hard-codes Gemma's sliding pattern"
    kv = [
        ("general.architecture", GGUF_STRING, a),
        ("general.name", GGUF_STRING, name),
        ("general.alignment", GGUF_UINT32, GGUF_ALIGNMENT),
        ("general.file_type", GGUF_UINT32, 0),  # ALL_F32
        (f"{a}.context_length", GGUF_UINT32, cfg["max_position_embeddings"]),
        (f"{a}.embedding_length", GGUF_UINT32, cfg["hidden_size"]),
        (f"{a}.block_count", GGUF_UINT32, cfg["num_hidden_layers"]),
        (f"{a}.feed_forward_length", GGUF_UINT32, cfg["intermediate_size"]),
        (f"{a}.attention.head_count", GGUF_UINT32, n_head),
        (f"{a}.attention.head_count_kv", GGUF_UINT32, n_kv),
        (f"{a}.attention.layer_norm_rms_epsilon", GGUF_FLOAT32, cfg["rms_norm_eps"]),
        (f"{a}.attention.key_length", GGUF_UINT32, hd),
        (f"{a}.attention.value_length", GGUF_UINT32, hd),
        (f"{a}.attention.sliding_window", GGUF_UINT32, cfg["sliding_window"]),
    ]
    if v == 2:
        kv += [(f"{a}.attn_logit_softcapping", GGUF_FLOAT32, cfg["attn_logit_softcapping"]),
               (f"{a}.final_logit_softcapping", GGUF_FLOAT32, cfg["final_logit_softcapping"])]
    else:
        assert cfg.get("attn_logit_softcapping") is None and cfg.get("final_logit_softcapping") is None
        assert cfg["rope_local_base_freq"] == 10000.0 and cfg["sliding_window_pattern"] == 6
        kv += [(f"{a}.rope.freq_base", GGUF_FLOAT32, cfg["rope_theta"])]
        factor = linear_factor(cfg)
        if factor is not None:  # Gemma3Model: add_rope_scaling_type(LINEAR), add_rope_scaling_factor (global layers)
            kv += [(f"{a}.rope.scaling.type", GGUF_STRING, "linear"),
                   (f"{a}.rope.scaling.factor", GGUF_FLOAT32, factor)]
    order = ["model.embed_tokens.weight"]
    order += sorted((k for k in weights if k.startswith("model.layers.")), key=lambda k: (int(k.split(".")[2]), k))
    order += ["model.norm.weight"]
    assert sorted(order) == sorted(weights)
    tensors = {}
    for hf in order:
        w = np.asarray(weights[hf], dtype=np.float32)
        tensors[gemma_gguf_name(hf)] = (w + np.float32(1)).astype(np.float32) if hf.endswith("norm.weight") else w
    infos, blobs, offset = [], [], 0
    for gname, w in tensors.items():
        blob = np.ascontiguousarray(w).astype("<f4").tobytes()
        dims = list(reversed(w.shape))  # ne[0] = fastest (in_features)
        infos.append(gguf_str(gname) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
                     + struct.pack("<I", GGML_F32) + struct.pack("<Q", offset))
        pad = (-len(blob)) % GGUF_ALIGNMENT
        blobs.append(blob + b"\0" * pad)
        offset += len(blob) + pad
    kvs = [gguf_kv(k, t, val) for k, t, val in kv]
    head = b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(kvs)) + b"".join(kvs) + b"".join(infos)
    head += b"\0" * ((-len(head)) % GGUF_ALIGNMENT)
    path.write_bytes(head + b"".join(blobs))
    return {"kv": {k: (float(np.float32(val)) if t == GGUF_FLOAT32 else val) for k, t, val in kv}, "tensors": tensors}


def read_gguf(path: Path) -> dict:
    """A minimal GGUF v3 reader (uint32 / float32 / string values, F32 tensors) for the round-trip assertion."""
    raw = path.read_bytes()
    magic, version, n_t, n_kv = struct.unpack_from("<4sIQQ", raw, 0)
    assert magic == b"GGUF" and version == 3
    off = 24

    def string():
        nonlocal off
        (n,) = struct.unpack_from("<Q", raw, off)
        s = raw[off + 8: off + 8 + n].decode()
        off += 8 + n
        return s

    kv = {}
    for _ in range(n_kv):
        key = string()
        (t,) = struct.unpack_from("<I", raw, off)
        off += 4
        if t == GGUF_STRING:
            kv[key] = string()
        else:
            kv[key] = struct.unpack_from({GGUF_UINT32: "<I", GGUF_FLOAT32: "<f"}[t], raw, off)[0]
            off += 4
    infos = []
    for _ in range(n_t):
        name = string()
        (nd,) = struct.unpack_from("<I", raw, off)
        dims = struct.unpack_from(f"<{nd}Q", raw, off + 4)
        ttype, toff = struct.unpack_from("<IQ", raw, off + 4 + 8 * nd)
        assert ttype == GGML_F32
        off += 4 + 8 * nd + 12
        infos.append((name, tuple(reversed(dims)), toff))
    base = off + (-off) % kv.get("general.alignment", GGUF_ALIGNMENT)
    tensors = {name: np.frombuffer(raw, dtype="<f4", count=int(np.prod(shape)), offset=base + toff).reshape(shape)
               for name, shape, toff in infos}
    return {"kv": kv, "tensors": tensors}


def check_gguf_roundtrip(path: Path, written: dict, stored: dict[str, np.ndarray]) -> None:
    back = read_gguf(path)
    assert back["kv"] == written["kv"], (back["kv"], written["kv"])
    assert list(back["tensors"]) == list(written["tensors"])
    for hf, w in stored.items():
        g = back["tensors"][gemma_gguf_name(hf)]
        assert np.array_equal(g, written["tensors"][gemma_gguf_name(hf)])
        # Norms: stored 1 + w is exact in f32 (see random_gemma), so subtracting 1 gives w back bit for bit.
        expect = (w.astype(np.float64) + 1) if hf.endswith("norm.weight") else w.astype(np.float64)
        assert np.array_equal(g.astype(np.float64), expect), hf
        assert np.array_equal(g - np.float32(1) if hf.endswith("norm.weight") else g, w), hf


# ---------------------------------------------------------------------------------------------------------
# Fixtures


def _config(**fields) -> dict:
    return dict(sorted(fields.items()))  # transformers writes config.json keys sorted


def gemma2_config() -> dict:
    L = 4
    return _config(
        architectures=["Gemma2ForCausalLM"], model_type="gemma2", attention_bias=False, attention_dropout=0.0,
        attn_logit_softcapping=2.0, final_logit_softcapping=3.0, bos_token_id=2, eos_token_id=1, pad_token_id=0,
        cache_implementation="hybrid", head_dim=16, hidden_act="gelu_pytorch_tanh",
        hidden_activation="gelu_pytorch_tanh", hidden_size=32, initializer_range=0.02, intermediate_size=64,
        layer_types=["sliding_attention" if (i + 1) % 2 != 0 else "full_attention" for i in range(L)],
        max_position_embeddings=64, num_attention_heads=4, num_hidden_layers=L, num_key_value_heads=2,
        query_pre_attn_scalar=16, rms_norm_eps=1e-6, rope_theta=10000.0, sliding_window=4,
        tie_word_embeddings=True, torch_dtype="float32", use_cache=True, vocab_size=128)


def gemma3_config() -> dict:
    L = 6
    return _config(
        architectures=["Gemma3ForCausalLM"], model_type="gemma3_text", attention_bias=False, attention_dropout=0.0,
        attn_logit_softcapping=None, final_logit_softcapping=None, bos_token_id=2, eos_token_id=1, pad_token_id=0,
        cache_implementation="hybrid", head_dim=16, hidden_activation="gelu_pytorch_tanh", hidden_size=32,
        initializer_range=0.02, intermediate_size=64,
        layer_types=["sliding_attention" if (i + 1) % 6 != 0 else "full_attention" for i in range(L)],
        max_position_embeddings=64, num_attention_heads=4, num_hidden_layers=L, num_key_value_heads=1,
        query_pre_attn_scalar=16, rms_norm_eps=1e-6, rope_local_base_freq=10000.0, rope_scaling=None,
        rope_theta=1000000.0, sliding_window=4, sliding_window_pattern=6, tie_word_embeddings=True,
        torch_dtype="float32", use_cache=True, vocab_size=128)


def gemma3_linear_config() -> dict:
    """tiny-gemma3 with Gemma 3 4B/12B/27B's linear RoPE scaling (factor 8) on its global layer. llama.cpp hard-codes
    gemma3's pattern of 6, so the layout stays [5 x sliding, full]."""
    return _config(**{**gemma3_config(), "rope_scaling": {"factor": 8.0, "rope_type": "linear"}})


def random_gemma(cfg: dict, seed: int) -> dict[str, np.ndarray]:
    """llama_reference.random_llama's projections (seed; tied, so no lm_head) and its embeddings divided by
    sqrt(hidden_size) (as in real Gemma checkpoints the normalizer brings them back to O(1), and the tied logits stay
    O(1) too), and every norm weight
    (the four per layer, Gemma 3's q_norm / k_norm, model.norm) drawn afresh from seed + 1 as w ~ 0.3 N(0,1), so
    (1 + w) is far from both 1 and w, rounded so that 1 + w is exact in f32 (the GGUF's stored 1 + w then gives w
    back bit for bit, and an engine's f32(1 + w) equals the float64 golden's)."""
    w = lr.random_llama(cfg, seed)
    e = "model.embed_tokens.weight"
    w[e] = (w[e].astype(np.float64) / math.sqrt(cfg["hidden_size"])).astype(np.float32)
    g = torch.Generator().manual_seed(seed + 1)

    def norm_weight(n):
        raw = (0.3 * torch.randn(n, generator=g, dtype=torch.float64)).float().numpy()
        x = ((np.float32(1) + raw).astype(np.float32) - np.float32(1)).astype(np.float32)
        one_plus = x.astype(np.float64) + 1
        assert np.array_equal(one_plus.astype(np.float32).astype(np.float64), one_plus)
        return x

    d, hd = cfg["hidden_size"], cfg["head_dim"]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for n in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                  "post_feedforward_layernorm"):
            w[p + n + ".weight"] = norm_weight(d)
        if gemma_version(cfg) == 3:
            w[p + "self_attn.q_norm.weight"] = norm_weight(hd)
            w[p + "self_attn.k_norm.weight"] = norm_weight(hd)
    w["model.norm.weight"] = norm_weight(d)
    return w


def maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def check_train_matches_prefill(cfg, w, fwd, fh, head_logits, ids, vocab, seed) -> float:
    """The batched training forward gives the prefill logits on an all-real row and, on llama_train_reference's
    padded batch (right- and left-padded rows), on every real slot. Returns the largest difference."""
    Wt = {k: torch.from_numpy(v.astype(np.float64)) for k, v in w.items()}
    tok = torch.tensor([ids])
    d = maxdiff(head_logits(Wt, fh(cfg, Wt, tok, torch.arange(len(ids))[None], torch.ones_like(tok))[0]),
                fwd(cfg, w, ids))
    batch = ltr.make_batch(vocab, seed)
    t = {k: torch.from_numpy(v) for k, v in batch.items()}
    hb = fh(cfg, Wt, t["tokens"], t["positions"], t["mask"])
    for b, (s, e) in enumerate(ltr.LENGTHS):
        ref = fwd(cfg, w, t["tokens"][b, s:e].tolist())
        d = max(d, maxdiff(head_logits(Wt, hb[b, s:e]), ref))
    assert d < 1e-12, d
    return d


def check_window_receptive_field(cfg, w, fwd, ids, window) -> None:
    """On a 1-layer model whose layer is sliding, the last logits of a sequence depend on exactly its last `window`
    tokens: RoPE is relative, so logits[i] of the whole sequence equal the last logits of ids[i-window+1 : i+1]
    alone (to rounding); with window + 1 tokens the (i - window)th key would have to be visible, and is not."""
    one = {**cfg, "num_hidden_layers": 1}
    full = fwd(one, w, ids)
    for i in range(window - 1, len(ids)):
        assert maxdiff(full[i], fwd(one, w, ids[i - window + 1: i + 1])[-1]) < 1e-12, i
    wider = {**one, "sliding_window": window + 1}
    assert maxdiff(fwd(wider, w, ids)[window:], full[window:]) > 1e-3


def sanity_checks(cfg: dict, w: dict[str, np.ndarray], cases: dict[str, list[int]], train_seed: int) -> str:
    ids = cases["random-13"]
    T = len(ids)
    full = forward(cfg, w, ids)
    out = []

    def changes(label, other, at_least=0.05):
        d = maxdiff(full, other)
        assert d > at_least, (label, d)
        out.append(f"{label} {d:.3f}")

    # The window: at least the sequence length changes nothing (bit for bit), 4 changes the 13-token logits.
    wide = forward(cfg, w, ids, window=T)
    assert torch.equal(wide, forward(cfg, w, ids, window=64))
    all_full = {**cfg, "layer_types": ["full_attention"] * cfg["num_hidden_layers"]}
    if gemma_version(cfg) == 2:  # Gemma 3's full layers also switch RoPE base, so only Gemma 2 compares here
        assert torch.equal(wide, forward(all_full, w, ids))
    changes("window 4 vs >= T", wide)
    check_window_receptive_field(cfg, w, forward, ids, cfg["sliding_window"])
    # Each Gemma feature matters, so a missing one shows.
    changes("(1+w) vs w", forward(cfg, w, ids, offset=False))
    changes("normalizer", forward(cfg, w, ids, normalizer=False))
    if gemma_version(cfg) == 2:
        changes("attn softcap", forward(cfg, w, ids, attn_cap=False))
        changes("final softcap", forward(cfg, w, ids, final_cap=False))
    else:
        changes("q/k norm", forward(cfg, w, ids, qk_norm=False))
        changes("local RoPE base", forward(cfg, w, ids, local_base=cfg["rope_theta"]))
    x = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    assert maxdiff(gelu_tanh(x), torch.nn.functional.gelu(x, approximate="tanh")) < 1e-14
    # The training forward and head give the prefill logits (all-real row and the padded training batch).
    d = check_train_matches_prefill(cfg, w, forward, final_hidden, lambda Wt, h: lm_logits(cfg, Wt, h), ids,
                                    cfg["vocab_size"], train_seed)
    out.append(f"train vs infer {d:.1e}")
    return ", ".join(out)


def linear_scaling_checks(cfg: dict, w: dict[str, np.ndarray], ids: list[int]) -> str:
    """The linear factor matters (vs factor 1, i.e. tiny-gemma3's config, and vs also scaling the sliding layers):
    the 13-token logits change and so does its next-token argmax (three different ids, so a greedy-only check such as
    llama.cpp's tells the three readings apart); the sliding layers do not see it: the first 5 (sliding) layers alone
    give the same logits bit for bit."""
    full = forward(cfg, w, ids)
    unscaled = {**cfg, "rope_scaling": None}
    assert unscaled == gemma3_config()
    out, argmax = [], [int(full[-1].argmax())]
    for label, other in (("factor 8 vs 1", forward(unscaled, w, ids)),
                         ("sliding layers scaled too", forward(cfg, w, ids, scale_local=True))):
        d = maxdiff(full, other)
        assert d > 0.05, (label, d)
        out.append(f"{label} {d:.3f}")
        argmax.append(int(other[-1].argmax()))
    assert len(set(argmax)) == 3, argmax
    out.append(f"next id {argmax[0]} (factor 1: {argmax[1]}, all scaled: {argmax[2]})")
    n_sliding = layer_types(cfg).index("full_attention")
    assert n_sliding == 5
    assert torch.equal(forward({**cfg, "num_hidden_layers": n_sliding}, w, ids),
                       forward({**unscaled, "num_hidden_layers": n_sliding}, w, ids))
    return ", ".join(out)


def make_gemma3_linear_fixtures(name: str, seed: int, train_seed: int, note: str) -> None:
    """tiny-gemma3-linear: HF dir, GGUF (with gemma3.rope.scaling.type / .factor) and the logits golden; no training
    golden. `train_seed` only picks the padded batch of the train-vs-prefill check."""
    cfg = gemma3_linear_config()
    w = random_gemma(cfg, seed)
    stored = lr.write_hf_dir(name, cfg, {k: ("F32", v) for k, v in w.items()})
    gguf = FIXTURES / f"{name}.gguf"
    written = write_gemma_gguf(gguf, cfg, stored, name)
    assert written["kv"]["gemma3.rope.scaling.type"] == "linear" and written["kv"]["gemma3.rope.scaling.factor"] == 8.0
    check_gguf_roundtrip(gguf, written, stored)
    cases = lr.tiny_cases(128, seed=7)  # the same 3 token sequences as tiny-gqa
    checks = sanity_checks(cfg, stored, cases, train_seed)
    print(f"{name} sanity: {checks}, {linear_scaling_checks(cfg, stored, cases['random-13'])}", file=sys.stderr)
    with gemma_forwards():
        lr.write_golden(name, [name, f"{name}.gguf"], cfg, stored, cases, greedy_n=8, note=note)
    set_generator(FIXTURES / "golden" / f"{name}.json", "scripts/reference/llama_reference.py")


def make_gemma_fixtures(name: str, cfg: dict, seed: int, train_seed: int, note: str) -> None:
    w = random_gemma(cfg, seed)
    stored = lr.write_hf_dir(name, cfg, {k: ("F32", v) for k, v in w.items()})
    gguf = FIXTURES / f"{name}.gguf"
    check_gguf_roundtrip(gguf, write_gemma_gguf(gguf, cfg, stored, name), stored)
    cases = lr.tiny_cases(128, seed=7)  # the same 3 token sequences as tiny-gqa
    print(f"{name} sanity: {sanity_checks(cfg, stored, cases, train_seed)}", file=sys.stderr)
    with gemma_forwards():
        lr.write_golden(name, [name, f"{name}.gguf"], cfg, stored, cases, greedy_n=8, note=note)
    set_generator(FIXTURES / "golden" / f"{name}.json", "scripts/reference/llama_reference.py")
    write_train_golden(name, train_seed)


# ---------------------------------------------------------------------------------------------------------
# Reward models (--cls): Gemma2ForSequenceClassification, Gemma3TextForSequenceClassification

RM_LENGTHS = (1, 5, 9, 13)  # 9 and 13 leave the sliding window of 4
RM_COEF = [1.0, -0.5, 2.0, -1.5]


def rm_config(causal: dict, arch: str, types: list[str], **over) -> dict:
    """A reward model's config.json as transformers writes one for num_labels 1: the causal config with its classifier
    architecture, fewer layers (types), and id2label / label2id."""
    return _config(**{**causal, "architectures": [arch], "num_hidden_layers": len(types), "layer_types": types,
                      "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}, **over})


def gemma2_rm_config() -> dict:
    return rm_config(gemma2_config(), "Gemma2ForSequenceClassification", ["sliding_attention", "full_attention"])


def gemma3_rm_config() -> dict:
    """Gemma 3 text with a pattern of 2 (layer 0 slides with RoPE base 1e4, layer 1 is global with 1e6), so two layers
    hold both kinds."""
    return rm_config(gemma3_config(), "Gemma3TextForSequenceClassification", ["sliding_attention", "full_attention"],
                     sliding_window_pattern=2)


def random_gemma_rm(cfg: dict, seed: int) -> dict[str, np.ndarray]:
    """random_gemma's backbone and a seeded score head ~ N(0, 4 / hidden) (seed + 2), so scores are a few units: a
    soft cap at 3 would change them clearly."""
    w = random_gemma(cfg, seed)
    g = torch.Generator().manual_seed(seed + 2)
    d = cfg["hidden_size"]
    w["score.weight"] = (torch.randn(1, d, generator=g, dtype=torch.float64) * 2 / math.sqrt(d)).float().numpy()
    return w


def char_tokenizer_json(vocab: int) -> dict:
    """A tokenizer.json with one token per character (id i is U+4E00 + i), no merges, no special tokens and no
    post-processor: text made of those characters encodes to exactly its ids, so a spec can score token ids through
    the reward service's text path."""
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
            "pre_tokenizer": None, "post_processor": None, "decoder": None,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                      "vocab": {chr(0x4E00 + i): i for i in range(vocab)}, "merges": []}}


def rm_batch(seqs: list[list[int]]) -> dict[str, torch.Tensor]:
    """Right-padded (B, T) batch as Flywheel's packScoreBatch: pad slots token 0, mask 0; positions 0.. per row."""
    B, T = len(seqs), max(map(len, seqs))
    tokens = torch.zeros(B, T, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.long)
    for b, s in enumerate(seqs):
        tokens[b, : len(s)] = torch.tensor(s)
        mask[b, : len(s)] = 1
    positions = torch.clamp(torch.cumsum(mask, dim=1) - 1, min=0)
    return {"tokens": tokens, "mask": mask, "positions": positions}


def rm_scores(cfg: dict, W: dict[str, torch.Tensor], seqs: list[list[int]], **opts) -> torch.Tensor:
    """(B,) float64 scores: score.weight @ the final-normed hidden state at each sequence's last token (transformers'
    last non-pad token; no sequence here holds the pad id 0). No soft cap: the classifier reads the base model."""
    t = rm_batch(seqs)
    h = final_hidden(cfg, W, t["tokens"], t["positions"], t["mask"], **opts)  # (B, T, C)
    last = torch.tensor([len(s) - 1 for s in seqs])
    return (h[torch.arange(len(seqs)), last] @ W["score.weight"].T)[:, 0]


def rm_sanity_checks(cfg: dict, W: dict[str, torch.Tensor], w: dict[str, np.ndarray], seqs: list[list[int]],
                     scores: torch.Tensor) -> str:
    out = []
    # The padded batch scores each sequence as it scores alone.
    alone = torch.stack([rm_scores(cfg, W, [s])[0] for s in seqs])
    d = maxdiff(alone, scores)
    assert d < 1e-12, d
    out.append(f"batch vs alone {d:.1e}")
    # The backbone is the causal model's: its batched final hidden gives the prefill logits (tied head).
    d = check_train_matches_prefill(cfg, w, forward, final_hidden, lambda Wt, h: lm_logits(cfg, Wt, h),
                                    seqs[-1], cfg["vocab_size"], 31)
    out.append(f"train vs prefill {d:.1e}")
    # The window matters to the 13-token score.
    d = maxdiff(rm_scores(cfg, W, seqs, window=max(map(len, seqs))), scores)
    assert d > 1e-2, d
    out.append(f"window 4 vs >= T {d:.3f}")
    if gemma_version(cfg) == 2:  # the choice of no final soft cap on the score is visible in this fixture
        d = maxdiff(softcap(scores, cfg["final_logit_softcapping"]), scores)
        assert d > 1e-2, d
        out.append(f"capped score would differ by {d:.3f}")
    else:
        d = maxdiff(rm_scores(cfg, W, seqs, qk_norm=False), scores)
        assert d > 1e-2, d
        out.append(f"q/k norm {d:.3f}")
    return ", ".join(out)


def make_gemma_rm_fixtures(name: str, cfg: dict, seed: int, note: str) -> None:
    w = random_gemma_rm(cfg, seed)
    stored = lr.write_hf_dir(name, cfg, {k: ("F32", v) for k, v in w.items()})
    (FIXTURES / name / "tokenizer.json").write_text(
        json.dumps(char_tokenizer_json(cfg["vocab_size"]), indent=1, ensure_ascii=False) + "\n")
    g = torch.Generator().manual_seed(seed + 3)
    seqs = [torch.randint(1, cfg["vocab_size"], (n,), generator=g).tolist() for n in RM_LENGTHS]  # never pad id 0
    names = list(stored)
    order = param_order(cfg, names)
    W = {k: torch.tensor(stored[k].astype(np.float64), requires_grad=True) for k in order}
    scores = rm_scores(cfg, W, seqs)
    (scores * torch.tensor(RM_COEF, dtype=torch.float64)).sum().backward()
    with torch.no_grad():
        checks = rm_sanity_checks(cfg, W, stored, seqs, scores.detach())
    print(f"{name} sanity: {checks}; scores {[round(float(x), 4) for x in scores]}", file=sys.stderr)
    grads = np.concatenate([W[k].grad.numpy().astype("<f4").reshape(-1) for k in order])
    golden = FIXTURES / "golden"
    (golden / f"{name}.f32").write_bytes(grads.tobytes())
    doc = {
        "generator": GENERATOR,
        "checkpoint": name,
        "note": note,
        "cases": [{"name": f"random-{len(s)}", "tokens": s, "score": float(x)} for s, x in zip(seqs, scores)],
        "scoreCoef": RM_COEF,
        "dataFile": f"{name}.f32",
        "dataLayout": "little-endian float32 gradients of sum(scoreCoef[i] * score(case i)) over the cases as one "
                      "right-padded batch, tensor after tensor in `tensors` order (norm weights: d/dw = d/d(1 + w))",
        "numParams": int(grads.size),
        "tensors": [{"name": k, "shape": list(stored[k].shape), "size": int(stored[k].size)} for k in order],
    }
    (golden / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")


def make_all_rm_fixtures() -> None:
    make_gemma_rm_fixtures(
        "tiny-gemma2-rm", gemma2_rm_config(), seed=2241,
        note="float64 Gemma2ForSequenceClassification: tiny-gemma2's forward (2 layers: sliding window 4, then full; "
             "scores soft-capped at 2.0) to the final (1+w) norm, score.weight @ the hidden state at the last token; "
             "final_logit_softcapping 3.0 caps LM logits only and is not applied to the score")
    make_gemma_rm_fixtures(
        "tiny-gemma3-rm", gemma3_rm_config(), seed=3351,
        note="float64 Gemma3TextForSequenceClassification: tiny-gemma3's forward (2 layers: sliding window 4 with RoPE "
             "base 1e4, then full with base 1e6; q/k norms) to the final (1+w) norm, score.weight @ the hidden state "
             "at the last token")
    print("gemma reward-model fixtures written to", FIXTURES, file=sys.stderr)


def main() -> None:
    torch.set_num_threads(1)
    if "--cls" in sys.argv[1:]:
        make_all_rm_fixtures()
        return
    make_gemma_fixtures(
        "tiny-gemma2", gemma2_config(), seed=2225, train_seed=23,
        note="float64 Gemma 2 forward of the F32 weights: embed * f32(sqrt(32)), (1+w) RMSNorms, sandwich norms, "
             "GeGLU (tanh), scores * 16**-0.5 soft-capped at 2.0 before the mask, sliding window 4 on layers 0 and 2, "
             "tied head, logits soft-capped at 3.0; tiny-gemma2.gguf holds the same weights (norms as 1+w)")
    make_gemma_fixtures(
        "tiny-gemma3", gemma3_config(), seed=3335, train_seed=29,
        note="float64 Gemma 3 forward of the F32 weights: embed * f32(sqrt(32)), (1+w) RMSNorms incl. per-head q/k "
             "norms before RoPE, sandwich norms, GeGLU (tanh), scores * 16**-0.5, sliding window 4 with RoPE base 1e4 "
             "on layers 0-4, full attention with base 1e6 on layer 5, tied head; tiny-gemma3.gguf holds the same "
             "weights (norms as 1+w)")
    make_gemma3_linear_fixtures(
        "tiny-gemma3-linear", seed=3346, train_seed=29,
        note="float64 Gemma 3 forward as tiny-gemma3 (other weights: seed 3346), with rope_scaling linear factor 8 on the full "
             "attention layer 5 only (RoPE base 1e6, inv_freq / 8, i.e. positions / 8); the sliding layers 0-4 keep "
             "base 1e4 unscaled; tiny-gemma3-linear.gguf holds the same weights plus gemma3.rope.scaling.type "
             "\"linear\" and gemma3.rope.scaling.factor 8.0")
    print("gemma fixtures written to", FIXTURES, file=sys.stderr)


if __name__ == "__main__":
    main()
