"""
GGUF v3 writer for the reference fixtures (little-endian), following ggml/docs/gguf.md and llama.cpp's
convert_hf_to_gguf.py: F32 and Q8_0 tensors, q/k permuted as llama.cpp stores them, and the inverse permute so
a fixture can check what a reader must recover. Its own tiny writer, never the gguf package: the fixtures must
not depend on the code they test against. Used by llama_reference.py; not a general GGUF library.
"""
from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------------------------------------
# GGUF v3 writer (little-endian), following ggml/docs/gguf.md and llama.cpp's convert_hf_to_gguf.py

GGUF_UINT32, GGUF_INT32, GGUF_FLOAT32, GGUF_BOOL, GGUF_STRING, GGUF_ARRAY, GGUF_UINT64 = 4, 5, 6, 7, 8, 9, 10
GGML_F32, GGML_Q8_0 = 0, 8
GGUF_ALIGNMENT = 32


def gguf_str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_kv(key: str, vtype: int, value) -> bytes:
    out = gguf_str(key) + struct.pack("<I", vtype)
    if vtype == GGUF_UINT32:
        return out + struct.pack("<I", value)
    if vtype == GGUF_FLOAT32:
        return out + struct.pack("<f", value)
    if vtype == GGUF_STRING:
        return out + gguf_str(value)
    if vtype == GGUF_BOOL:
        return out + struct.pack("<?", value)
    raise ValueError(vtype)


def llamacpp_permute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """convert_hf_to_gguf.py LlamaModel.permute: HF rotate_half rows -> llama.cpp interleaved-pair rows."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def quantize_q8_0(x: np.ndarray) -> bytes:
    """ggml quantize_row_q8_0_ref: per 32 values, d = amax/127 stored as f16, q = roundf(x/d)."""
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, 32)
    amax = np.abs(x).max(axis=1)
    d = (amax / np.float32(127)).astype(np.float32)
    inv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, 1), 0).astype(np.float32)
    v = (x * inv[:, None]).astype(np.float32)
    q = (np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))).astype(np.int8)  # roundf: half away from zero
    out = bytearray()
    for b in range(x.shape[0]):
        out += d[b].astype("<f2").tobytes() + q[b].tobytes()
    return bytes(out)


def dequantize_q8_0(blob: bytes, n: int) -> np.ndarray:
    blocks = np.frombuffer(blob, dtype=np.dtype([("d", "<f2"), ("q", "i1", 32)]), count=n // 32)
    return (blocks["d"].astype(np.float32)[:, None] * blocks["q"].astype(np.float32)).reshape(-1)


def hf_to_gguf_name(name: str) -> str:
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    if name in fixed:
        return fixed[name]
    parts = name.split(".")  # model.layers.N.<a>.<b>[.<c>]
    n, rest = parts[2], ".".join(parts[3:])
    local = {
        "input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
        "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
        "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
        "self_attn.o_proj.weight": "attn_output.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
    }[rest]
    return f"blk.{n}.{local}"


def llama3_rope_factors(cfg: dict, head_dim: int) -> np.ndarray:
    """rope_freqs.weight as convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors writes it for a llama3
    rope_scaling: one divisor per frequency (1 kept, `factor` divided, smoothed in between), f32."""
    s = cfg["rope_scaling"]
    factor, low, high, old = s["factor"], s["low_freq_factor"], s["high_freq_factor"], s["original_max_position_embeddings"]
    freqs = 1.0 / (cfg["rope_theta"] ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    out = []
    for freq in freqs.astype(np.float64):
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def write_gguf(path: Path, cfg: dict, weights: dict[str, np.ndarray], name: str, q8_0: bool) -> dict[str, np.ndarray]:
    """Writes an HF Llama checkpoint as llama.cpp would (arch "llama", permuted q/k, optional Q8_0 for 2-D
    weights; a llama3 rope_scaling becomes the rope_freqs.weight tensor, written first as the converter does).
    Returns the HF-layout f32 values a correct reader must recover (dequantized where Q8_0)."""
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    kvs = [
        gguf_kv("general.architecture", GGUF_STRING, "llama"),
        gguf_kv("general.name", GGUF_STRING, name),
        gguf_kv("general.alignment", GGUF_UINT32, GGUF_ALIGNMENT),
        gguf_kv("general.file_type", GGUF_UINT32, 7 if q8_0 else 0),  # MOSTLY_Q8_0 / ALL_F32
        gguf_kv("llama.vocab_size", GGUF_UINT32, cfg["vocab_size"]),
        gguf_kv("llama.context_length", GGUF_UINT32, cfg["max_position_embeddings"]),
        gguf_kv("llama.embedding_length", GGUF_UINT32, cfg["hidden_size"]),
        gguf_kv("llama.block_count", GGUF_UINT32, cfg["num_hidden_layers"]),
        gguf_kv("llama.feed_forward_length", GGUF_UINT32, cfg["intermediate_size"]),
        gguf_kv("llama.attention.head_count", GGUF_UINT32, n_head),
        gguf_kv("llama.attention.head_count_kv", GGUF_UINT32, n_kv),
        gguf_kv("llama.attention.key_length", GGUF_UINT32, head_dim),
        gguf_kv("llama.attention.value_length", GGUF_UINT32, head_dim),
        gguf_kv("llama.rope.dimension_count", GGUF_UINT32, head_dim),
        gguf_kv("llama.rope.freq_base", GGUF_FLOAT32, cfg["rope_theta"]),
        gguf_kv("llama.attention.layer_norm_rms_epsilon", GGUF_FLOAT32, cfg["rms_norm_eps"]),
    ]
    # convert_hf_to_gguf order: embeddings, then blocks, then output norm and head.
    order = ["model.embed_tokens.weight"]
    order += sorted((k for k in weights if k.startswith("model.layers.")),
                    key=lambda k: (int(k.split(".")[2]), k))
    order += ["model.norm.weight"] + (["lm_head.weight"] if "lm_head.weight" in weights else [])
    infos, blobs, recovered, offset = [], [], {}, 0
    scaling = cfg.get("rope_scaling")
    if scaling is not None and scaling.get("rope_type") == "llama3":
        blob = llama3_rope_factors(cfg, head_dim).astype("<f4").tobytes()
        infos.append(gguf_str("rope_freqs.weight") + struct.pack("<I", 1) + struct.pack("<Q", head_dim // 2)
                     + struct.pack("<I", GGML_F32) + struct.pack("<Q", offset))
        pad = (-len(blob)) % GGUF_ALIGNMENT
        blobs.append(blob + b"\0" * pad)
        offset += len(blob) + pad
    for hf in order:
        w = weights[hf].astype(np.float32)
        if hf.endswith(("q_proj.weight", "q_proj.bias")):
            stored = llamacpp_permute(w, n_head, n_head)
        elif hf.endswith(("k_proj.weight", "k_proj.bias")):
            stored = llamacpp_permute(w, n_head, n_kv)
        else:
            stored = w
        quantize = q8_0 and w.ndim == 2
        if quantize:
            blob = quantize_q8_0(stored)
            deq = dequantize_q8_0(blob, stored.size).reshape(stored.shape)
            # What a reader recovers: the dequantized values, un-permuted back to HF rows.
            recovered[hf] = deq
        else:
            blob = stored.astype("<f4").tobytes()
            recovered[hf] = stored
        dims = list(reversed(w.shape))  # ne[0] = fastest (in_features)
        infos.append(gguf_str(hf_to_gguf_name(hf)) + struct.pack("<I", len(dims))
                     + b"".join(struct.pack("<Q", d) for d in dims)
                     + struct.pack("<I", GGML_Q8_0 if quantize else GGML_F32) + struct.pack("<Q", offset))
        pad = (-len(blob)) % GGUF_ALIGNMENT
        blobs.append(blob + b"\0" * pad)
        offset += len(blob) + pad
    head = b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(kvs)) + b"".join(kvs) + b"".join(infos)
    head += b"\0" * ((-len(head)) % GGUF_ALIGNMENT)
    path.write_bytes(head + b"".join(blobs))
    # Undo the permutation on the recovered (possibly dequantized) values with the HF-side inverse.
    for hf in list(recovered):
        if hf.endswith(("q_proj.weight", "q_proj.bias")):
            recovered[hf] = unpermute(recovered[hf], n_head)
        elif hf.endswith(("k_proj.weight", "k_proj.bias")):
            recovered[hf] = unpermute(recovered[hf], n_kv)
    return recovered


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llamacpp_permute (= convert_llama_weights_to_hf.py's permute)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
