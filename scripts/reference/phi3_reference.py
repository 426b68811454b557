#!/usr/bin/python3
"""Independent float64 Phi-3 / Phi-4-mini reference (transformers' modeling_phi3 style) and the generator of Flywheel's
Phi-3 fixtures: test/fixtures/tiny-phi3/ (config.json + F32 safetensors with Phi-3's fused tensors),
test/fixtures/tiny-phi3.gguf (as llama.cpp's convert_hf_to_gguf.py writes a Phi-3 model), golden/tiny-phi3.{json,f32}
(logits) and golden/train-tiny-phi3.{json,f32} (loss, gradients, scalar-head scores and AdamW steps).

Phi-3 is the Llama forward with
- fused projections: `self_attn.qkv_proj.weight` holds the q rows, then k, then v; `mlp.gate_up_proj.weight` the gate
  rows, then up (Phi3MLP: `gate, up = gate_up.chunk(2, dim=-1)`); no biases. The forward splits them (`split_fused`);
- partial RoPE (`partial_rotary_factor`, Phi-4-mini 0.75): only the first int(head_dim * f) dims of each head rotate;
- "longrope" (Phi-3-mini-128k, Phi-4-mini): inv_freq[j] / short_factor[j] or / long_factor[j], cos and sin times
  sqrt(1 + ln(max_position / original) / ln(original)). transformers picks ONE set per forward call: long when the
  call's largest position + 1 exceeds original_max_position_embeddings. Flywheel (and this reference) picks it per
  token, long from position original_max_position_embeddings on: identical for token-by-token decoding (each call
  holds one position) and for prompts that fit original_max, and independent of how a step batches tokens.
The forwards with those RoPE variants are smollm3_reference.py's; the tiny model has original_max 4, so the golden
cases of 7 and 13 tokens and the training batch (positions 0..7) use both sets.

Everything else is imported (llama_reference.py, llama_train_reference.py, gguf_writer.py, smollm3_reference.py).
Deterministic: a rerun gives the same bytes. Run: `/usr/bin/python3 scripts/reference/phi3_reference.py`.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llama_reference as lr  # noqa: E402
import llama_train_reference as ltr  # noqa: E402
import smollm3_reference as sr  # noqa: E402
from gguf_writer import GGUF_ALIGNMENT, GGUF_FLOAT32, GGUF_STRING, GGUF_UINT32, gguf_kv, hf_to_gguf_name  # noqa: E402
from llama_reference import FIXTURES  # noqa: E402

GENERATOR = "scripts/reference/phi3_reference.py"
NAME = "tiny-phi3"


def split_fused(cfg: dict, w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Phi-3's qkv_proj / gate_up_proj -> q/k/v_proj and gate/up_proj (row ranges); other tensors unchanged."""
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    qd, kvd, ff = n_head * hd, n_kv * hd, cfg["intermediate_size"]
    out = {}
    for k, v in w.items():
        if k.endswith("self_attn.qkv_proj.weight"):
            p = k[: -len("qkv_proj.weight")]
            assert v.shape[0] == qd + 2 * kvd
            out[p + "q_proj.weight"], out[p + "k_proj.weight"], out[p + "v_proj.weight"] = \
                v[:qd], v[qd:qd + kvd], v[qd + kvd:]
        elif k.endswith("mlp.gate_up_proj.weight"):
            p = k[: -len("gate_up_proj.weight")]
            assert v.shape[0] == 2 * ff
            out[p + "gate_proj.weight"], out[p + "up_proj.weight"] = v[:ff], v[ff:]
        else:
            out[k] = v
    return out


def fuse(cfg: dict, w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inverse of split_fused: what a Phi-3 checkpoint stores."""
    out = dict(w)
    for i in range(cfg["num_hidden_layers"]):
        a, m = f"model.layers.{i}.self_attn.", f"model.layers.{i}.mlp."
        out[a + "qkv_proj.weight"] = np.concatenate([out.pop(a + n + "_proj.weight") for n in "qkv"])
        out[m + "gate_up_proj.weight"] = np.concatenate([out.pop(m + n + "_proj.weight") for n in ("gate", "up")])
    return out


@contextlib.contextmanager
def fused_checkpoint_reader():
    """llama_train_reference.run reads the committed checkpoint: hand it the split tensors the native trainer holds."""
    read = ltr.read_safetensors
    cfg = phi3_config()
    ltr.read_safetensors = lambda path: split_fused(cfg, read(path))
    try:
        yield
    finally:
        ltr.read_safetensors = read


# ---------------------------------------------------------------------------------------------------------
# GGUF, as convert_hf_to_gguf.py's Phi3MiniModel


def write_phi3_gguf(path: Path, cfg: dict, stored: dict[str, np.ndarray], name: str) -> None:
    """Phi3MiniModel.set_gguf_parameters' metadata (no key_length: llama.cpp takes head_dim = n_embd / n_head;
    rope.dimension_count = int(partial_rotary_factor * n_embd) // n_head), generate_extra_tensors' rope_factors_long /
    rope_factors_short (first) and rope.scaling.attn_factor, and HF's fused tensors as attn_qkv and ffn_up."""
    n_embd, n_head = cfg["hidden_size"], cfg["num_attention_heads"]
    rope_dims = int(cfg["partial_rotary_factor"] * n_embd) // n_head
    a = "phi3"
    kvs = [
        gguf_kv("general.architecture", GGUF_STRING, a),
        gguf_kv("general.name", GGUF_STRING, name),
        gguf_kv("general.alignment", GGUF_UINT32, GGUF_ALIGNMENT),
        gguf_kv("general.file_type", GGUF_UINT32, 0),  # ALL_F32
        gguf_kv(f"{a}.context_length", GGUF_UINT32, cfg["max_position_embeddings"]),
        gguf_kv(f"{a}.rope.scaling.original_context_length", GGUF_UINT32, cfg["original_max_position_embeddings"]),
        gguf_kv(f"{a}.embedding_length", GGUF_UINT32, n_embd),
        gguf_kv(f"{a}.feed_forward_length", GGUF_UINT32, cfg["intermediate_size"]),
        gguf_kv(f"{a}.block_count", GGUF_UINT32, cfg["num_hidden_layers"]),
        gguf_kv(f"{a}.attention.head_count", GGUF_UINT32, n_head),
        gguf_kv(f"{a}.attention.head_count_kv", GGUF_UINT32, cfg["num_key_value_heads"]),
        gguf_kv(f"{a}.attention.layer_norm_rms_epsilon", GGUF_FLOAT32, cfg["rms_norm_eps"]),
        gguf_kv(f"{a}.rope.dimension_count", GGUF_UINT32, rope_dims),
        gguf_kv(f"{a}.rope.freq_base", GGUF_FLOAT32, cfg["rope_theta"]),
        gguf_kv(f"{a}.attention.sliding_window", GGUF_UINT32, cfg.get("sliding_window") or 0),
        gguf_kv(f"{a}.rope.scaling.attn_factor", GGUF_FLOAT32, sr.longrope_attention_factor(cfg)),
    ]
    rs = cfg["rope_scaling"]
    assert len(rs["long_factor"]) == len(rs["short_factor"]) == rope_dims // 2
    tensors = [("rope_factors_long.weight", np.array(rs["long_factor"], dtype=np.float32)),
               ("rope_factors_short.weight", np.array(rs["short_factor"], dtype=np.float32))]
    for hf in sr.hf_tensor_order(stored):
        n = hf.split(".")
        if hf.endswith("self_attn.qkv_proj.weight"):
            gname = f"blk.{n[2]}.attn_qkv.weight"
        elif hf.endswith("mlp.gate_up_proj.weight"):
            gname = f"blk.{n[2]}.ffn_up.weight"  # llama.cpp's fused SwiGLU input: gate rows, then up
        else:
            gname = hf_to_gguf_name(hf)
        tensors.append((gname, stored[hf]))
    sr.write_arch_gguf(path, kvs, tensors)


# ---------------------------------------------------------------------------------------------------------
# Fixtures


def phi3_config() -> dict:
    # Phi-4-mini's shape in miniature: GQA, partial_rotary_factor 0.75 (12 of 16 dims rotate, 6 factors per set),
    # longrope with original 4 of 48 positions; untied head (Phi-4-mini ties it; tiny-mqa-llama3 covers tying).
    cfg = lr.base_config(
        architectures=["Phi3ForCausalLM"], model_type="phi3", vocab_size=128, hidden_size=64, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=48,
        original_max_position_embeddings=4, partial_rotary_factor=0.75, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=False, sliding_window=None, bos_token_id=1, eos_token_id=2, pad_token_id=0,
        rope_scaling={"type": "longrope",
                      "short_factor": [1.0, 1.0, 1.25, 1.5, 2.0, 3.0],
                      "long_factor": [1.0, 2.5, 6.0, 12.0, 24.0, 40.0]})
    for k in ("attention_bias", "mlp_bias"):
        cfg.pop(k)  # not Phi3Config fields
    return cfg


def sanity_checks(cfg: dict, w: dict[str, np.ndarray], cases: dict[str, list[int]]) -> None:
    ids = cases["random-13"]
    orig = cfg["original_max_position_embeddings"]
    llama_cfg = {**cfg, "architectures": ["LlamaForCausalLM"], "model_type": "llama", "rope_scaling": None,
                 "partial_rotary_factor": 1.0, "head_dim": 16}
    # 1. Whole-head plain RoPE: exactly llama_reference.forward.
    assert torch.equal(sr.forward(llama_cfg, w, ids), sr.LLAMA_FORWARD(llama_cfg, w, ids)), "plain != llama forward"
    full = sr.forward(cfg, w, ids)
    # 2. Positions below original_max see the short set only: changing the long factors leaves their logits alone and
    #    changes the later ones; the partial rotary and the attention factor both matter.
    other_long = {**cfg, "rope_scaling": {**cfg["rope_scaling"], "long_factor": [1.0] * 6}}
    d_long = (sr.forward(other_long, w, ids) - full).abs().amax(-1)
    assert float(d_long[:orig].max()) == 0 and float(d_long[orig:].min()) > 1e-3, d_long
    whole = {**cfg, "partial_rotary_factor": 1.0,
             "rope_scaling": {**cfg["rope_scaling"], "short_factor": [1.0] * 8, "long_factor": [1.0] * 8}}
    ones = {**cfg, "rope_scaling": {**cfg["rope_scaling"], "short_factor": [1.0] * 6, "long_factor": [1.0] * 6}}
    d_partial = float((sr.forward(whole, w, ids) - sr.forward(ones, w, ids)).abs().max())
    no_scale = {**ones, "rope_scaling": {**ones["rope_scaling"], "attention_factor": 1.0}}
    plain_partial = {**cfg, "rope_scaling": None}
    d_attn = float((sr.forward(no_scale, w, ids) - sr.forward(plain_partial, w, ids)).abs().max())
    assert d_attn < 1e-12, d_attn  # longrope with unit factors and attention factor 1 is plain (partial) RoPE
    d_factor = float((sr.forward(ones, w, ids) - sr.forward(no_scale, w, ids)).abs().max())
    assert d_partial > 0.1 and d_factor > 0.1, (d_partial, d_factor)
    # 3. The batched training forward (all-real row, positions 0..T-1) gives the same logits.
    Wt = {k: torch.from_numpy(v.astype(np.float64)) for k, v in w.items()}
    tok, pos = torch.tensor([ids]), torch.arange(len(ids))[None]
    d_train = float((sr.final_hidden(cfg, Wt, tok, pos, torch.ones_like(tok))[0] @ Wt["lm_head.weight"].T - full).abs().max())
    assert d_train < 1e-12, d_train
    print(f"sanity: long factors {float(d_long[orig:].min()):.3f}.., partial vs whole rotary {d_partial:.3f}, "
          f"attention factor {d_factor:.3f}, train vs infer forward {d_train:.1e}", file=sys.stderr)


def make_phi3_fixtures() -> None:
    cfg = phi3_config()
    w = lr.random_llama({**cfg, "rope_scaling": None}, seed=2468)  # q/k/v and gate/up drawn as separate tensors
    stored = split_fused(cfg, lr.write_hf_dir(NAME, cfg, {k: ("F32", v) for k, v in fuse(cfg, w).items()}))
    assert all(np.array_equal(stored[k], w[k]) for k in w) and len(stored) == len(w), "fuse / split roundtrip"
    write_phi3_gguf(FIXTURES / f"{NAME}.gguf", cfg, fuse(cfg, stored), NAME)
    cases = lr.tiny_cases(128, seed=7)  # the same 3 token sequences as tiny-gqa
    sanity_checks(cfg, stored, cases)
    with sr.extended_forwards():
        lr.write_golden(NAME, [NAME, f"{NAME}.gguf"], cfg, stored, cases, greedy_n=8,
                        note="float64 Phi-3 forward of the F32 weights (fused qkv_proj / gate_up_proj split; "
                             "partial_rotary_factor 0.75; longrope, long factors from position 4 on, per token); "
                             "tiny-phi3.gguf holds the same weights (arch phi3, attn_qkv, fused ffn_up, rope_factors_*)")
    sr.set_generator(FIXTURES / "golden" / f"{NAME}.json", "scripts/reference/llama_reference.py", GENERATOR)
    with fused_checkpoint_reader():
        sr.write_train_golden(NAME, 19, GENERATOR)


def main() -> None:
    torch.set_num_threads(1)
    make_phi3_fixtures()
    print("phi3 fixtures written to", FIXTURES, file=sys.stderr)


if __name__ == "__main__":
    main()
