#!/usr/bin/python3
"""Independent float64 SmolLM3 reference (transformers' modeling_smollm3 style) and the generator of Flywheel's SmolLM3
fixtures: test/fixtures/tiny-smollm3/ (config.json + F32 safetensors), test/fixtures/tiny-smollm3.gguf (as llama.cpp's
convert_hf_to_gguf.py writes a SmolLM3 model), golden/tiny-smollm3.{json,f32} (logits) and
golden/train-tiny-smollm3.{json,f32} (loss, gradients, scalar-head scores and AdamW steps).

SmolLM3 is the Llama forward of llama_reference.py with RoPE skipped on some layers: `no_rope_layers[i]` is 1 where
layer i rotates q and k and 0 where it is a NoPE layer (SmolLM3Config's default: every 4th layer, index % 4 == 3).
The two forwards here (prefill, and the batched training one) also carry the RoPE variants of Phi-3, which
phi3_reference.py imports: partial rotary (`partial_rotary_factor`: only the first int(head_dim * f) dims of each head
rotate, rotate_half within them) and "longrope" (per-frequency divisors, short below original_max_position_embeddings
and long from there on, per token, and cos/sin times the attention factor).

Everything else is imported from llama_reference.py (safetensors reader/writer, rope_inv_freq, random_llama,
write_golden), gguf_writer.py (GGUF primitives) and llama_train_reference.py (batch, loss, optimizer, file layout);
the forwards are installed into those modules only while the files are written (`extended_forwards`).
Deterministic: a rerun gives the same bytes. Run: `/usr/bin/python3 scripts/reference/smollm3_reference.py`.
"""
from __future__ import annotations

import contextlib
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
                         gguf_kv, gguf_str, hf_to_gguf_name, llamacpp_permute)
from llama_reference import FIXTURES, repeat_kv, rms_norm, rope_inv_freq, rotate_half  # noqa: E402

GENERATOR = "scripts/reference/smollm3_reference.py"
NAME = "tiny-smollm3"


# ---------------------------------------------------------------------------------------------------------
# RoPE variants, in float64


def rotary_dim(cfg: dict, hd: int) -> int:
    """Phi3RotaryEmbedding: dim = int(head_dim * partial_rotary_factor); everyone else rotates the whole head."""
    return int(hd * cfg.get("partial_rotary_factor", 1.0))


def is_longrope(cfg: dict) -> bool:
    rs = cfg.get("rope_scaling")
    return rs is not None and rs.get("rope_type", rs.get("type")) in ("longrope", "su")


def longrope_attention_factor(cfg: dict) -> float:
    """transformers' _compute_longrope_parameters: sqrt(1 + ln(s) / ln(original)), s = max_position / original."""
    rs, orig = cfg["rope_scaling"], cfg["original_max_position_embeddings"]
    if rs.get("attention_factor") is not None:
        return rs["attention_factor"]
    s = cfg["max_position_embeddings"] / orig
    return 1.0 if s <= 1.0 else math.sqrt(1 + math.log(s) / math.log(orig))


def rope_cos_sin(cfg: dict, hd: int, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """positions (...) -> cos, sin (..., rot) in the rotate_half layout (freqs repeated twice)."""
    rot = rotary_dim(cfg, hd)
    pos = positions.to(torch.float64)
    if not is_longrope(cfg):
        freqs = pos[..., None] * rope_inv_freq(cfg, rot)  # (..., rot/2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()
    rs = cfg["rope_scaling"]
    base = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot))
    short = base / torch.tensor(rs["short_factor"], dtype=torch.float64)
    long = base / torch.tensor(rs["long_factor"], dtype=torch.float64)
    # Per token: the long set from position original_max_position_embeddings on (see the README on this rule).
    use_long = (positions >= cfg["original_max_position_embeddings"])[..., None]
    freqs = torch.where(use_long, pos[..., None] * long, pos[..., None] * short)
    emb = torch.cat((freqs, freqs), dim=-1)
    a = longrope_attention_factor(cfg)
    return emb.cos() * a, emb.sin() * a


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Phi-3's apply_rotary_pos_emb: rotate_half within the first rot = cos.shape[-1] dims, the rest pass through."""
    rot = cos.shape[-1]
    if rot == x.shape[-1]:
        return x * cos + rotate_half(x) * sin
    xr, xp = x[..., :rot], x[..., rot:]
    return torch.cat((xr * cos + rotate_half(xr) * sin, xp), dim=-1)


def uses_rope(cfg: dict, layer: int) -> bool:
    flags = cfg.get("no_rope_layers")
    return flags is None or flags[layer] == 1


# ---------------------------------------------------------------------------------------------------------
# The reference forwards (llama_reference.forward / llama_train_reference.final_hidden + the variants above)


def forward(cfg: dict, w: dict[str, np.ndarray], ids: list[int]) -> torch.Tensor:
    """(T) token ids -> (T, vocab) float64 logits, full causal prefill. q/k/v and gate/up as separate tensors."""
    W = {k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in w.items()}
    n_head, d = cfg["num_attention_heads"], cfg["hidden_size"]
    n_kv = cfg.get("num_key_value_heads") or n_head
    hd = cfg.get("head_dim") or d // n_head
    eps = cfg.get("rms_norm_eps", 1e-6)
    T = len(ids)
    cos, sin = rope_cos_sin(cfg, hd, torch.arange(T))  # (T, rot)
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)

    def linear(x, name):
        y = x @ W[name + ".weight"].T
        b = W.get(name + ".bias")
        return y if b is None else y + b

    h = W["model.embed_tokens.weight"][torch.tensor(ids)]  # (T, d)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = rms_norm(h, W[p + "input_layernorm.weight"], eps)
        q = linear(x, p + "self_attn.q_proj").view(T, n_head, hd).transpose(0, 1)  # (H, T, hd)
        k = linear(x, p + "self_attn.k_proj").view(T, n_kv, hd).transpose(0, 1)  # (KV, T, hd)
        v = linear(x, p + "self_attn.v_proj").view(T, n_kv, hd).transpose(0, 1)
        if uses_rope(cfg, i):  # SmolLM3Attention: `if self.use_rope:` around apply_rotary_pos_emb
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
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


def final_hidden(cfg, W, tokens, positions, mask):
    """llama_train_reference.final_hidden (batched, padded, autograd) with the RoPE variants: (B, T) -> (B, T, C)."""
    B, TT = tokens.shape
    n_head, C = cfg["num_attention_heads"], cfg["hidden_size"]
    n_kv = cfg.get("num_key_value_heads") or n_head
    hd = cfg.get("head_dim") or C // n_head
    eps = cfg["rms_norm_eps"]
    cos, sin = rope_cos_sin(cfg, hd, positions)  # (B, T, rot)
    cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, rot)
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
        q = linear(x, p + "self_attn.q_proj").view(B, TT, n_head, hd).transpose(1, 2)
        k = linear(x, p + "self_attn.k_proj").view(B, TT, n_kv, hd).transpose(1, 2)
        v = linear(x, p + "self_attn.v_proj").view(B, TT, n_kv, hd).transpose(1, 2)
        if uses_rope(cfg, i):
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
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


LLAMA_FORWARD, LLAMA_FINAL_HIDDEN = lr.forward, ltr.final_hidden


@contextlib.contextmanager
def extended_forwards():
    """While writing these files, llama_reference.write_golden / greedy_with_margin and llama_train_reference.run call
    the forwards above (which give the Llama results for a Llama config)."""
    lr.forward, ltr.final_hidden = forward, final_hidden
    try:
        yield
    finally:
        lr.forward, ltr.final_hidden = LLAMA_FORWARD, LLAMA_FINAL_HIDDEN


def set_generator(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    needle = f'"generator": "{old}"'
    assert text.count(needle) == 1, path
    path.write_text(text.replace(needle, f'"generator": "{new}"'))


def write_train_golden(name: str, seed: int, generator: str) -> None:
    """llama_train_reference.run with the extended forward (float64 default dtype, as that script's __main__ sets)."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with extended_forwards():
            ltr.run(name, seed)
    finally:
        torch.set_default_dtype(default)
    set_generator(ltr.GOLDEN / f"train-{name}.json", "scripts/reference/llama_train_reference.py", generator)


# ---------------------------------------------------------------------------------------------------------
# GGUF


def write_arch_gguf(path: Path, kvs: list[bytes], tensors: list[tuple[str, np.ndarray]]) -> None:
    """An all-F32 GGUF v3 file: `kvs` (gguf_kv entries), then the tensors in the order given, aligned to 32."""
    infos, blobs, offset = [], [], 0
    for gname, w in tensors:
        w = np.ascontiguousarray(w, dtype=np.float32)
        blob = w.astype("<f4").tobytes()
        dims = list(reversed(w.shape))  # ne[0] = fastest (in_features)
        infos.append(gguf_str(gname) + struct.pack("<I", len(dims))
                     + b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<I", GGML_F32) + struct.pack("<Q", offset))
        pad = (-len(blob)) % GGUF_ALIGNMENT
        blobs.append(blob + b"\0" * pad)
        offset += len(blob) + pad
    head = b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(kvs)) + b"".join(kvs) + b"".join(infos)
    head += b"\0" * ((-len(head)) % GGUF_ALIGNMENT)
    path.write_bytes(head + b"".join(blobs))


def hf_tensor_order(weights: dict) -> list[str]:
    """convert_hf_to_gguf order: embeddings, then blocks, then output norm and head."""
    order = ["model.embed_tokens.weight"]
    order += sorted((k for k in weights if k.startswith("model.layers.")), key=lambda k: (int(k.split(".")[2]), k))
    order += ["model.norm.weight"] + (["lm_head.weight"] if "lm_head.weight" in weights else [])
    assert sorted(order) == sorted(weights)
    return order


def write_smollm3_gguf(path: Path, cfg: dict, weights: dict[str, np.ndarray], name: str) -> None:
    """As convert_hf_to_gguf.py's SmolLM3Model (a LlamaModel: permuted q/k, llama metadata under "smollm3"; llama.cpp
    hard-codes the NoPE layers as every 4th, so nothing about them is written)."""
    n_head, n_kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    assert cfg["no_rope_layers"] == [int((i + 1) % 4 != 0) for i in range(cfg["num_hidden_layers"])]
    a = "smollm3"
    kvs = [
        gguf_kv("general.architecture", GGUF_STRING, a),
        gguf_kv("general.name", GGUF_STRING, name),
        gguf_kv("general.alignment", GGUF_UINT32, GGUF_ALIGNMENT),
        gguf_kv("general.file_type", GGUF_UINT32, 0),  # ALL_F32
        gguf_kv(f"{a}.vocab_size", GGUF_UINT32, cfg["vocab_size"]),
        gguf_kv(f"{a}.context_length", GGUF_UINT32, cfg["max_position_embeddings"]),
        gguf_kv(f"{a}.embedding_length", GGUF_UINT32, cfg["hidden_size"]),
        gguf_kv(f"{a}.block_count", GGUF_UINT32, cfg["num_hidden_layers"]),
        gguf_kv(f"{a}.feed_forward_length", GGUF_UINT32, cfg["intermediate_size"]),
        gguf_kv(f"{a}.attention.head_count", GGUF_UINT32, n_head),
        gguf_kv(f"{a}.attention.head_count_kv", GGUF_UINT32, n_kv),
        gguf_kv(f"{a}.attention.key_length", GGUF_UINT32, hd),
        gguf_kv(f"{a}.attention.value_length", GGUF_UINT32, hd),
        gguf_kv(f"{a}.rope.dimension_count", GGUF_UINT32, hd),
        gguf_kv(f"{a}.rope.freq_base", GGUF_FLOAT32, cfg["rope_theta"]),
        gguf_kv(f"{a}.attention.layer_norm_rms_epsilon", GGUF_FLOAT32, cfg["rms_norm_eps"]),
    ]
    tensors = []
    for hf in hf_tensor_order(weights):
        w = weights[hf]
        if hf.endswith("q_proj.weight"):
            w = llamacpp_permute(w, n_head, n_head)
        elif hf.endswith("k_proj.weight"):
            w = llamacpp_permute(w, n_head, n_kv)
        tensors.append((hf_to_gguf_name(hf), w))
    write_arch_gguf(path, kvs, tensors)


# ---------------------------------------------------------------------------------------------------------
# Fixtures


def smollm3_config() -> dict:
    # 4 layers so the default interval makes layer 3 a NoPE layer; GQA, head_dim 16 != hidden/heads, untied head.
    L = 4
    cfg = lr.base_config(
        architectures=["SmolLM3ForCausalLM"], model_type="smollm3", vocab_size=128, hidden_size=32,
        intermediate_size=64, num_hidden_layers=L, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=5000000.0, attention_bias=False,
        tie_word_embeddings=False, use_sliding_window=False, sliding_window=None, no_rope_layer_interval=4,
        no_rope_layers=[int((i + 1) % 4 != 0) for i in range(L)])
    return cfg


def sanity_checks(cfg: dict, w: dict[str, np.ndarray], cases: dict[str, list[int]]) -> None:
    ids = cases["random-13"]
    llama_cfg = {**cfg, "architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    all_rope = {**cfg, "no_rope_layers": [1] * cfg["num_hidden_layers"]}
    # 1. With RoPE on every layer the forward is exactly llama_reference.forward.
    rotating = forward(all_rope, w, ids)
    assert torch.equal(rotating, LLAMA_FORWARD(llama_cfg, w, ids)), "all-RoPE != llama forward"
    # 2. The NoPE layer matters.
    full = forward(cfg, w, ids)
    d1 = float((full - rotating).abs().max())
    assert d1 > 0.1, d1
    # 3. The batched training forward (all-real row, positions 0..T-1) gives the same logits; with RoPE on every
    #    layer it is exactly llama_train_reference.final_hidden.
    Wt = {k: torch.from_numpy(v.astype(np.float64)) for k, v in w.items()}
    tok, pos = torch.tensor([ids]), torch.arange(len(ids))[None]
    msk = torch.ones_like(tok)
    d2 = float((final_hidden(cfg, Wt, tok, pos, msk)[0] @ Wt["lm_head.weight"].T - full).abs().max())
    assert d2 < 1e-12, d2
    assert torch.equal(final_hidden(all_rope, Wt, tok, pos, msk), LLAMA_FINAL_HIDDEN(llama_cfg, Wt, tok, pos, msk))
    print(f"sanity: NoPE layer vs RoPE everywhere {d1:.3f}, train vs infer forward {d2:.1e}", file=sys.stderr)


def make_smollm3_fixtures() -> None:
    cfg = smollm3_config()
    w = lr.random_llama(cfg, seed=5678)
    stored = lr.write_hf_dir(NAME, cfg, {k: ("F32", v) for k, v in w.items()})
    write_smollm3_gguf(FIXTURES / f"{NAME}.gguf", cfg, stored, NAME)
    cases = lr.tiny_cases(128, seed=7)  # the same 3 token sequences as tiny-gqa
    sanity_checks(cfg, stored, cases)
    with extended_forwards():
        lr.write_golden(NAME, [NAME, f"{NAME}.gguf"], cfg, stored, cases, greedy_n=8,
                        note="float64 SmolLM3 forward (no RoPE on layer 3, no_rope_layers [1,1,1,0]) of the F32 "
                             "weights; tiny-smollm3.gguf holds the same weights (arch smollm3, q/k permuted)")
    set_generator(FIXTURES / "golden" / f"{NAME}.json", "scripts/reference/llama_reference.py", GENERATOR)
    write_train_golden(NAME, 17, GENERATOR)


def main() -> None:
    torch.set_num_threads(1)
    make_smollm3_fixtures()
    print("smollm3 fixtures written to", FIXTURES, file=sys.stderr)


if __name__ == "__main__":
    main()
