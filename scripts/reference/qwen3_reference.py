#!/usr/bin/python3
"""Independent float64 Qwen3 reference (transformers' modeling_qwen3 style) and the generator of Flywheel's Qwen3
fixtures: test/fixtures/tiny-qwen3/ (config.json + F32 safetensors), test/fixtures/tiny-qwen3.gguf (as llama.cpp's
convert_hf_to_gguf.py writes a Qwen3 model), golden/tiny-qwen3.{json,f32} (logits) and
golden/train-tiny-qwen3.{json,f32} (loss, gradients, scalar-head scores and AdamW steps).

Qwen3 is the Llama forward of llama_reference.py (RMSNorm, rotate_half RoPE, repeat_kv GQA, SwiGLU, no q/k/v bias)
plus a per-head RMSNorm of queries and keys: after q_proj / k_proj, each (head_dim) head vector is RMS-normalized
with `self_attn.q_norm.weight` / `self_attn.k_norm.weight` (shape (head_dim), eps = rms_norm_eps), THEN rotated.

Everything else is imported from llama_reference.py (safetensors reader/writer, rope_inv_freq, random_llama,
write_golden), gguf_writer.py (GGUF primitives) and llama_train_reference.py (batch, loss, optimizer, file layout);
the two Qwen3 forwards here are installed into those modules only while the Qwen3 files are written (`_qwen3_forwards`).
Deterministic: a rerun gives the same bytes. Run: `/usr/bin/python3 scripts/reference/qwen3_reference.py`.
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
                         gguf_kv, gguf_str, hf_to_gguf_name)
from llama_reference import FIXTURES, repeat_kv, rms_norm, rope_inv_freq, rotate_half  # noqa: E402

GENERATOR = "scripts/reference/qwen3_reference.py"
NAME = "tiny-qwen3"


def is_qwen3(cfg: dict) -> bool:
    return cfg["architectures"][0] in ("Qwen3ForCausalLM", "Qwen3ForSequenceClassification")


# ---------------------------------------------------------------------------------------------------------
# The reference forwards, after transformers' modeling_qwen3, in float64


def forward(cfg: dict, w: dict[str, np.ndarray], ids: list[int], qk_norm: bool = True) -> torch.Tensor:
    """(T) token ids -> (T, vocab) float64 logits, full causal prefill (llama_reference.forward + q/k norm).
    qk_norm=False skips the q/k norms (only for the sanity checks: it must then equal llama_reference.forward)."""
    W = {k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in w.items()}
    n_head, d = cfg["num_attention_heads"], cfg["hidden_size"]
    n_kv = cfg.get("num_key_value_heads") or n_head
    hd = cfg.get("head_dim") or d // n_head
    eps = cfg.get("rms_norm_eps", 1e-6)
    bias = cfg.get("attention_bias", False)
    T = len(ids)
    pos = torch.arange(T, dtype=torch.float64)
    freqs = torch.outer(pos, rope_inv_freq(cfg, hd))  # (T, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()  # (T, hd)
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)

    def linear(x, name):
        y = x @ W[name + ".weight"].T
        b = W.get(name + ".bias")
        return y if b is None else y + b

    h = W["model.embed_tokens.weight"][torch.tensor(ids)]  # (T, d)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = rms_norm(h, W[p + "input_layernorm.weight"], eps)
        q = linear(x, p + "self_attn.q_proj").view(T, n_head, hd)  # (T, H, hd)
        k = linear(x, p + "self_attn.k_proj").view(T, n_kv, hd)  # (T, KV, hd)
        v = linear(x, p + "self_attn.v_proj").view(T, n_kv, hd).transpose(0, 1)
        if not bias:
            assert p + "self_attn.q_proj.bias" not in W
        if qk_norm:  # Qwen3Attention: q_norm(q_proj(x).view(hidden_shape)), k likewise, over head_dim, before RoPE
            q = rms_norm(q, W[p + "self_attn.q_norm.weight"], eps)
            k = rms_norm(k, W[p + "self_attn.k_norm.weight"], eps)
        q, k = q.transpose(0, 1), k.transpose(0, 1)  # (H, T, hd), (KV, T, hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k, v = repeat_kv(k, n_head // n_kv), repeat_kv(v, n_head // n_kv)
        att = (q @ k.transpose(1, 2)) / math.sqrt(hd) + mask  # (H, T, T)
        o = torch.softmax(att, dim=-1) @ v  # (H, T, hd)
        h = h + linear(o.transpose(0, 1).reshape(T, n_head * hd), p + "self_attn.o_proj")
        x = rms_norm(h, W[p + "post_attention_layernorm.weight"], eps)
        gate = linear(x, p + "mlp.gate_proj")
        h = h + linear(torch.nn.functional.silu(gate) * linear(x, p + "mlp.up_proj"), p + "mlp.down_proj")
    h = rms_norm(h, W["model.norm.weight"], eps)
    head = W.get("lm_head.weight")
    if head is None or cfg.get("tie_word_embeddings", False):
        head = W["model.embed_tokens.weight"]
    return h @ head.T


def final_hidden(cfg, W, tokens, positions, mask, qk_norm: bool = True):
    """llama_train_reference.final_hidden (batched, padded, autograd) + the q/k norms: (B, T) -> (B, T, C)."""
    B, TT = tokens.shape
    n_head, C = cfg["num_attention_heads"], cfg["hidden_size"]
    n_kv = cfg.get("num_key_value_heads") or n_head
    hd = cfg.get("head_dim") or C // n_head
    eps = cfg["rms_norm_eps"]
    freqs = positions.to(torch.float64)[..., None] * rope_inv_freq(cfg, hd)  # (B, T, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[:, None], emb.sin()[:, None]  # (B, 1, T, hd)
    causal = torch.ones(TT, TT, dtype=torch.bool).tril()
    allowed = causal[None, None] & mask.bool()[:, None, None, :]  # (B, 1, T, T)
    any_key = allowed.any(-1, keepdim=True)

    def linear(x, name):
        y = x @ W[name + ".weight"].T
        return y + W[name + ".bias"] if name + ".bias" in W else y

    h = W["model.embed_tokens.weight"][tokens]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = ltr.rms_norm(h, W[p + "input_layernorm.weight"], eps)
        q = linear(x, p + "self_attn.q_proj").view(B, TT, n_head, hd)
        k = linear(x, p + "self_attn.k_proj").view(B, TT, n_kv, hd)
        v = linear(x, p + "self_attn.v_proj").view(B, TT, n_kv, hd).transpose(1, 2)
        if qk_norm:
            q = ltr.rms_norm(q, W[p + "self_attn.q_norm.weight"], eps)
            k = ltr.rms_norm(k, W[p + "self_attn.k_norm.weight"], eps)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        q = q * cos + ltr.rotate_half(q) * sin
        k = k * cos + ltr.rotate_half(k) * sin
        k = k.repeat_interleave(n_head // n_kv, dim=1)
        v = v.repeat_interleave(n_head // n_kv, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        att = torch.where(allowed, att, torch.full_like(att, -1e300))
        probs = torch.softmax(att, dim=-1) * any_key  # a query with no visible key outputs zero
        o = (probs @ v).transpose(1, 2).reshape(B, TT, n_head * hd)
        h = h + linear(o, p + "self_attn.o_proj")
        x = ltr.rms_norm(h, W[p + "post_attention_layernorm.weight"], eps)
        h = h + linear(torch.nn.functional.silu(linear(x, p + "mlp.gate_proj")) * linear(x, p + "mlp.up_proj"),
                       p + "mlp.down_proj")
    return ltr.rms_norm(h, W["model.norm.weight"], eps)


def param_order(cfg, names):
    """llama_train_reference.param_order with q_norm, k_norm just before o_proj (after q/k/v and any biases), as
    train_model.cpp adds them."""
    out = []
    for k in _LLAMA_PARAM_ORDER(cfg, names):
        p = k[: -len("self_attn.o_proj.weight")] if k.endswith(".self_attn.o_proj.weight") else None
        if p is not None and p + "self_attn.q_norm.weight" in names:
            out += [p + "self_attn.q_norm.weight", p + "self_attn.k_norm.weight"]
        out.append(k)
    assert sorted(out) == sorted(names), "every parameter once"
    return out


_LLAMA_FORWARD, _LLAMA_FINAL_HIDDEN, _LLAMA_PARAM_ORDER = lr.forward, ltr.final_hidden, ltr.param_order


@contextlib.contextmanager
def _qwen3_forwards():
    """While writing the Qwen3 files, llama_reference.write_golden / greedy_with_margin and llama_train_reference.run
    call the Qwen3 forwards (Llama configs still get the Llama ones)."""
    lr.forward = lambda cfg, w, ids: forward(cfg, w, ids) if is_qwen3(cfg) else _LLAMA_FORWARD(cfg, w, ids)
    ltr.final_hidden = lambda cfg, *a: (final_hidden if is_qwen3(cfg) else _LLAMA_FINAL_HIDDEN)(cfg, *a)
    ltr.param_order = lambda cfg, names: (param_order if is_qwen3(cfg) else _LLAMA_PARAM_ORDER)(cfg, names)
    try:
        yield
    finally:
        lr.forward, ltr.final_hidden, ltr.param_order = _LLAMA_FORWARD, _LLAMA_FINAL_HIDDEN, _LLAMA_PARAM_ORDER


def _set_generator(path: Path, old: str) -> None:
    text = path.read_text()
    needle = f'"generator": "{old}"'
    assert text.count(needle) == 1, path
    path.write_text(text.replace(needle, f'"generator": "{GENERATOR}"'))


# ---------------------------------------------------------------------------------------------------------
# GGUF, as convert_hf_to_gguf.py's Qwen3Model (a Qwen2Model: TextModel metadata, no q/k permutation, NEOX rope)


def write_qwen3_gguf(path: Path, cfg: dict, weights: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    """All-F32 GGUF v3 of an HF Qwen3 checkpoint with gguf_writer.py's primitives and tensor order. Metadata as
    TextModel.set_gguf_parameters writes it for Qwen3: no vocab_size (that comes from the tokenizer, which these
    fixtures lack) and no rope.dimension_count (llama.cpp takes n_rot = key_length). Returns what a reader must
    recover (the unpermuted F32 weights)."""
    n_head, n_kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    assert cfg.get("rope_scaling") is None and not cfg.get("attention_bias", False)
    a = "qwen3"
    kvs = [
        gguf_kv("general.architecture", GGUF_STRING, a),
        gguf_kv("general.name", GGUF_STRING, name),
        gguf_kv("general.alignment", GGUF_UINT32, GGUF_ALIGNMENT),
        gguf_kv("general.file_type", GGUF_UINT32, 0),  # ALL_F32
        gguf_kv(f"{a}.block_count", GGUF_UINT32, cfg["num_hidden_layers"]),
        gguf_kv(f"{a}.context_length", GGUF_UINT32, cfg["max_position_embeddings"]),
        gguf_kv(f"{a}.embedding_length", GGUF_UINT32, cfg["hidden_size"]),
        gguf_kv(f"{a}.feed_forward_length", GGUF_UINT32, cfg["intermediate_size"]),
        gguf_kv(f"{a}.attention.head_count", GGUF_UINT32, n_head),
        gguf_kv(f"{a}.attention.head_count_kv", GGUF_UINT32, n_kv),
        gguf_kv(f"{a}.rope.freq_base", GGUF_FLOAT32, cfg["rope_theta"]),
        gguf_kv(f"{a}.attention.layer_norm_rms_epsilon", GGUF_FLOAT32, cfg["rms_norm_eps"]),
        gguf_kv(f"{a}.attention.key_length", GGUF_UINT32, hd),
        gguf_kv(f"{a}.attention.value_length", GGUF_UINT32, hd),
    ]

    def gguf_name(hf: str) -> str:
        for norm in ("q_norm", "k_norm"):
            if hf.endswith(f".self_attn.{norm}.weight"):
                return f"blk.{hf.split('.')[2]}.attn_{norm}.weight"
        return hf_to_gguf_name(hf)

    order = ["model.embed_tokens.weight"]
    order += sorted((k for k in weights if k.startswith("model.layers.")), key=lambda k: (int(k.split(".")[2]), k))
    order += ["model.norm.weight"] + (["lm_head.weight"] if "lm_head.weight" in weights else [])
    assert sorted(order) == sorted(weights)
    infos, blobs, offset = [], [], 0
    for hf in order:
        w = np.ascontiguousarray(weights[hf], dtype=np.float32)
        blob = w.astype("<f4").tobytes()
        dims = list(reversed(w.shape))  # ne[0] = fastest (in_features)
        infos.append(gguf_str(gguf_name(hf)) + struct.pack("<I", len(dims))
                     + b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<I", GGML_F32) + struct.pack("<Q", offset))
        pad = (-len(blob)) % GGUF_ALIGNMENT
        blobs.append(blob + b"\0" * pad)
        offset += len(blob) + pad
    head = b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(kvs)) + b"".join(kvs) + b"".join(infos)
    head += b"\0" * ((-len(head)) % GGUF_ALIGNMENT)
    path.write_bytes(head + b"".join(blobs))
    return {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}


# ---------------------------------------------------------------------------------------------------------
# Fixtures


def qwen3_config() -> dict:
    cfg = lr.base_config(
        architectures=["Qwen3ForCausalLM"], model_type="qwen3", vocab_size=128, hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
        rms_norm_eps=1e-6, rope_theta=1000000.0, attention_bias=False, tie_word_embeddings=False,
        use_sliding_window=False, sliding_window=None)
    cfg.pop("mlp_bias")  # not a Qwen3Config field
    return cfg


def random_qwen3(cfg: dict, seed: int) -> dict[str, np.ndarray]:
    """llama_reference.random_llama's weights plus q_norm / k_norm = 1 + 0.3 N(0,1) (drawn from seed + 1), far
    enough from 1 that a missing or misplaced norm shows."""
    w = lr.random_llama(cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    for i in range(cfg["num_hidden_layers"]):
        for norm in ("q_norm", "k_norm"):
            w[f"model.layers.{i}.self_attn.{norm}.weight"] = \
                (1 + 0.3 * torch.randn(cfg["head_dim"], generator=g, dtype=torch.float64)).float().numpy()
    return w


def sanity_checks(cfg: dict, w: dict[str, np.ndarray], cases: dict[str, list[int]]) -> None:
    ids = cases["random-13"]
    no_norm_w = {k: v for k, v in w.items() if "_norm.weight" not in k or "layernorm" in k or k == "model.norm.weight"}
    assert len(no_norm_w) == len(w) - 2 * cfg["num_hidden_layers"]
    llama_cfg = {**cfg, "architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    # 1. Without the q/k norms the Qwen3 forward is exactly llama_reference.forward.
    skipped = forward(cfg, w, ids, qk_norm=False)
    assert torch.equal(skipped, _LLAMA_FORWARD(llama_cfg, no_norm_w, ids)), "qk_norm off != llama forward"
    # 2. The norms matter, even with unit weights (they normalize), and their weights matter.
    ones = {**w, **{k: np.ones_like(v) for k, v in w.items() if k.endswith(("q_norm.weight", "k_norm.weight"))}}
    with_ones = forward(cfg, ones, ids)
    full = forward(cfg, w, ids)
    d1, d2 = float((with_ones - skipped).abs().max()), float((full - with_ones).abs().max())
    assert d1 > 0.1 and d2 > 0.1, (d1, d2)
    # 3. The batched training forward (all-real row, positions 0..T-1) gives the same logits, with and without norms;
    #    without them it is exactly llama_train_reference.final_hidden.
    Wt = {k: torch.from_numpy(v.astype(np.float64)) for k, v in w.items()}
    tok = torch.tensor([ids])
    pos = torch.arange(len(ids))[None]
    msk = torch.ones_like(tok)
    d3 = float((final_hidden(cfg, Wt, tok, pos, msk)[0] @ Wt["lm_head.weight"].T - full).abs().max())
    assert d3 < 1e-12, d3
    skip_t = final_hidden(cfg, Wt, tok, pos, msk, qk_norm=False)
    assert torch.equal(skip_t, _LLAMA_FINAL_HIDDEN(llama_cfg, Wt, tok, pos, msk)), "train qk_norm off != llama"
    d4 = float((skip_t[0] @ Wt["lm_head.weight"].T - skipped).abs().max())
    assert d4 < 1e-12, d4
    print(f"sanity: norm vs no norm {d1:.3f}, unit vs random norm weights {d2:.3f}, train vs infer forward {d3:.1e}",
          file=sys.stderr)


def make_qwen3_fixtures() -> None:
    cfg = qwen3_config()
    w = random_qwen3(cfg, seed=4321)
    stored = lr.write_hf_dir(NAME, cfg, {k: ("F32", v) for k, v in w.items()})
    recovered = write_qwen3_gguf(FIXTURES / f"{NAME}.gguf", cfg, stored, NAME)
    assert all(np.array_equal(recovered[k], stored[k]) for k in stored), "gguf f32 roundtrip"
    cases = lr.tiny_cases(128, seed=7)  # the same 3 token sequences as tiny-gqa
    sanity_checks(cfg, stored, cases)
    with _qwen3_forwards():
        lr.write_golden(NAME, [NAME, f"{NAME}.gguf"], cfg, stored, cases, greedy_n=8,
                        note="float64 Qwen3 forward (per-head q/k RMSNorm before RoPE) of the F32 weights; "
                             "tiny-qwen3.gguf holds the same weights (arch qwen3, q/k not permuted)")
    _set_generator(FIXTURES / "golden" / f"{NAME}.json", "scripts/reference/llama_reference.py")

    # Training golden: llama_train_reference.run with the Qwen3 forward (its seeded score.weight scalar head is the
    # Qwen3ForSequenceClassification head). float64 default dtype, as that script's __main__ sets.
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with _qwen3_forwards():
            ltr.run(NAME, 13)
    finally:
        torch.set_default_dtype(default)
    _set_generator(ltr.GOLDEN / f"train-{NAME}.json", "scripts/reference/llama_train_reference.py")


def main() -> None:
    torch.set_num_threads(1)
    make_qwen3_fixtures()
    print("qwen3 fixtures written to", FIXTURES, file=sys.stderr)


if __name__ == "__main__":
    main()
