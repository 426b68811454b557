#!/usr/bin/python3
"""Independent Llama-family reference forward (float64 torch, in the style of HF modeling_llama) and the
generator of Flywheel's golden fixtures under test/fixtures/.

It is not Flywheel code and shares nothing with it: it reads config.json + safetensors with its own tiny
reader, writes safetensors and GGUF with its own tiny writers, and never imports transformers, safetensors
or gguf. Run with Debian's torch: `/usr/bin/python3 scripts/reference/llama_reference.py` (see
test/fixtures/README.md). Deterministic: same inputs, same bytes out.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gguf_writer import write_gguf  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "test" / "fixtures"

# The 64 greedy ids after "Once upon a time" given in shared/models/stories260K-hf/README.md.
STORIES_GOLDEN_GREEDY = [int(x) for x in """
432 383 286 261 376 298 315 421 395 317 426 338 401 396 267 337 410 408 419 292 411 322 265 282 295 433 426 385
328 432 358 394 261 370 432 352 266 268 388 426 338 391 266 267 337 335 312 432 398 312 286 267 414 270 333 415
426 13 438 310 439 419 357 336""".split()]

# Token ids from Flywheel's tokenizer on stories260K-hf (with BOS); see the spec in libs/model/src/loading.
STORIES_PROMPTS = {
    "once-upon-a-time": [1, 403, 407, 261, 378],
    "one-day-tim-found-a": [1, 385, 328, 432, 326, 272, 277, 264, 261],
    "lily-and-her-dog-went-to-the": [1, 317, 269, 311, 400, 428, 263, 377, 267, 265],
}

# ---------------------------------------------------------------------------------------------------------
# safetensors (format: u64 LE header length, JSON header, contiguous little-endian data)

ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even, as torch's .to(torch.bfloat16) (no NaNs in our weights)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        buf = data[begin:end]
        if info["dtype"] == "BF16":
            arr = bf16_bits_to_f32(np.frombuffer(buf, dtype="<u2"))
        else:
            arr = np.frombuffer(buf, dtype=np.dtype(ST_DTYPES[info["dtype"]]).newbyteorder("<"))
        out[name] = arr.reshape(info["shape"]).astype(np.float32)
    return out


def write_safetensors(path: Path, tensors: dict[str, tuple[str, np.ndarray]]) -> None:
    """tensors: name -> (dtype "F32" | "F16" | "BF16", f32 array). Sorted by name, header padded to 8 bytes."""
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        dtype, arr = tensors[name]
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if dtype == "F32":
            blob = arr.astype("<f4").tobytes()
        elif dtype == "F16":
            blob = arr.astype("<f2").tobytes()
        elif dtype == "BF16":
            blob = f32_to_bf16_bits(arr).astype("<u2").tobytes()
        else:
            raise ValueError(dtype)
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(blob)]}
        chunks.append(blob)
        offset += len(blob)
    header = {"__metadata__": {"format": "pt"}, **header}
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(hjson)) + hjson + b"".join(chunks))


def stored_values(tensors: dict[str, tuple[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """What a reader gets back from write_safetensors (f16/bf16 rounding applied)."""
    out = {}
    for name, (dtype, arr) in tensors.items():
        if dtype == "F32":
            out[name] = arr.astype(np.float32)
        elif dtype == "F16":
            out[name] = arr.astype(np.float16).astype(np.float32)
        else:
            out[name] = bf16_bits_to_f32(f32_to_bf16_bits(arr)).reshape(arr.shape)
    return out


# ---------------------------------------------------------------------------------------------------------
# The reference forward, after transformers' modeling_llama / modeling_qwen2, in float64


def rope_inv_freq(cfg: dict, head_dim: int) -> torch.Tensor:
    theta = cfg.get("rope_theta", 10000.0)
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    scaling = cfg.get("rope_scaling")
    if scaling is None or scaling.get("rope_type", scaling.get("type")) in (None, "default"):
        return inv_freq
    assert scaling["rope_type"] == "llama3", scaling
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_ctx = scaling["original_max_position_embeddings"]
    low_freq_wavelen, high_freq_wavelen = old_ctx / low, old_ctx / high
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_ctx / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * inv_freq_llama / factor + smooth * inv_freq_llama
    is_medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, inv_freq_llama)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    # (kv_heads, T, hd) -> (kv_heads * n_rep, T, hd); query head h reads kv head h // n_rep
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=0)


def forward(cfg: dict, w: dict[str, np.ndarray], ids: list[int], window: int | None = None) -> torch.Tensor:
    """(T) token ids -> (T, vocab) float64 logits, full causal prefill; with `window`, every layer's query at i sees
    only the keys j > i - window (Mistral's sliding window)."""
    W = {k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in w.items()}
    n_head, d = cfg["num_attention_heads"], cfg["hidden_size"]
    n_kv = cfg.get("num_key_value_heads") or n_head
    hd = cfg.get("head_dim") or d // n_head
    eps = cfg.get("rms_norm_eps", 1e-6)
    qwen2 = cfg["architectures"][0] == "Qwen2ForCausalLM"
    bias = qwen2 or cfg.get("attention_bias", False)
    T = len(ids)
    pos = torch.arange(T, dtype=torch.float64)
    freqs = torch.outer(pos, rope_inv_freq(cfg, hd))  # (T, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()  # (T, hd)
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    if window is not None:
        mask = mask.masked_fill(torch.arange(T)[None, :] <= torch.arange(T)[:, None] - window, float("-inf"))

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
        if not bias:
            assert p + "self_attn.q_proj.bias" not in W
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


def greedy(cfg: dict, w: dict[str, np.ndarray], ids: list[int], n: int) -> list[int]:
    return greedy_with_margin(cfg, w, ids, n)[0]


def greedy_with_margin(cfg: dict, w: dict[str, np.ndarray], ids: list[int], n: int) -> tuple[list[int], float]:
    """Greedy continuation and the smallest top-1 minus top-2 logit gap along it (how safe an f32 replay is)."""
    out, margin = list(ids), math.inf
    for _ in range(n):
        top = torch.topk(forward(cfg, w, out)[-1], 2)
        margin = min(margin, float(top.values[0] - top.values[1]))
        out.append(int(top.indices[0]))
    return out[len(ids) :], margin


# ---------------------------------------------------------------------------------------------------------
# Fixtures


def write_golden(name: str, checkpoints: list[str], cfg: dict, w: dict[str, np.ndarray],
                 cases: dict[str, list[int]], greedy_n: int, note: str, extra: dict | None = None) -> None:
    """golden/<name>.json (index) + golden/<name>.f32 (all logits, (T, vocab) per case, little-endian f32)."""
    golden = FIXTURES / "golden"
    golden.mkdir(parents=True, exist_ok=True)
    index, blobs, offset = [], [], 0
    for case, ids in cases.items():
        logits = forward(cfg, w, ids)
        arr = logits.numpy().astype("<f4")
        blobs.append(arr.tobytes())
        entry = {"name": case, "tokens": ids, "offset": offset, "shape": list(arr.shape),
                 "maxAbsLogit": float(np.abs(arr).max())}
        if greedy_n:
            entry["greedy"], entry["greedyMinMargin"] = greedy_with_margin(cfg, w, ids, greedy_n)
        index.append(entry)
        offset += arr.size
    doc = {
        "generator": "scripts/reference/llama_reference.py",
        "checkpoints": checkpoints,
        "note": note,
        "logitsFile": f"{name}.f32",
        "logitsLayout": "little-endian float32; case i occupies floats [offset, offset + T*vocab), row-major (T, vocab)",
        "cases": index,
        **(extra or {}),
    }
    # One line per case keeps the index readable and diffable.
    text = json.dumps({**doc, "cases": ["@CASES@"]}, indent=1)
    cases_text = ",\n  ".join(json.dumps(c, separators=(", ", ": ")) for c in index)
    (golden / f"{name}.json").write_text(text.replace('"@CASES@"', cases_text) + "\n")
    (golden / f"{name}.f32").write_bytes(b"".join(blobs))


def random_llama(cfg: dict, seed: int) -> dict[str, np.ndarray]:
    """Seeded weights with O(1) activations, so logits differ clearly between positions and tokens."""
    g = torch.Generator().manual_seed(seed)
    n_head, d, ff, V = cfg["num_attention_heads"], cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    n_kv = cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or d // n_head
    bias = cfg.get("attention_bias", False)

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).float().numpy()

    w = {"model.embed_tokens.weight": randn(V, d)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + randn(d, scale=0.2)
        w[p + "self_attn.q_proj.weight"] = randn(n_head * hd, d, scale=1.5 / math.sqrt(d))
        w[p + "self_attn.k_proj.weight"] = randn(n_kv * hd, d, scale=1.5 / math.sqrt(d))
        w[p + "self_attn.v_proj.weight"] = randn(n_kv * hd, d, scale=1 / math.sqrt(d))
        if bias:
            w[p + "self_attn.q_proj.bias"] = randn(n_head * hd, scale=0.5)
            w[p + "self_attn.k_proj.bias"] = randn(n_kv * hd, scale=0.5)
            w[p + "self_attn.v_proj.bias"] = randn(n_kv * hd, scale=0.5)
        w[p + "self_attn.o_proj.weight"] = randn(d, n_head * hd, scale=1 / math.sqrt(n_head * hd))
        w[p + "post_attention_layernorm.weight"] = 1 + randn(d, scale=0.2)
        w[p + "mlp.gate_proj.weight"] = randn(ff, d, scale=1 / math.sqrt(d))
        w[p + "mlp.up_proj.weight"] = randn(ff, d, scale=1 / math.sqrt(d))
        w[p + "mlp.down_proj.weight"] = randn(d, ff, scale=1 / math.sqrt(ff))
    w["model.norm.weight"] = 1 + randn(d, scale=0.2)
    if not cfg.get("tie_word_embeddings", False):
        w["lm_head.weight"] = randn(V, d, scale=1 / math.sqrt(d))
    return w


def write_hf_dir(name: str, cfg: dict, tensors: dict[str, tuple[str, np.ndarray]]) -> dict[str, np.ndarray]:
    out = FIXTURES / name
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    write_safetensors(out / "model.safetensors", tensors)
    stored = stored_values(tensors)
    back = read_safetensors(out / "model.safetensors")
    assert all(np.array_equal(back[k], stored[k]) for k in stored), f"{name}: safetensors roundtrip"
    return stored


def base_config(**over) -> dict:
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "bos_token_id": 1, "eos_token_id": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "rope_scaling": None, "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32",
    }
    cfg.update(over)
    return cfg


def tiny_cases(vocab: int, seed: int) -> dict[str, list[int]]:
    g = torch.Generator().manual_seed(seed)
    return {f"random-{n}": torch.randint(0, vocab, (n,), generator=g).tolist() for n in (1, 7, 13)}


def make_tiny_fixtures() -> None:
    # GQA (4 query heads on 2 KV heads), head_dim 16 != hidden/heads (8), qkv bias, untied head.
    gqa = base_config(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                      attention_bias=True, tie_word_embeddings=False)
    w = random_llama(gqa, seed=1234)
    stored = write_hf_dir("tiny-gqa", gqa, {k: ("F32", v) for k, v in w.items()})
    recovered = write_gguf(FIXTURES / "tiny-gqa.gguf", gqa, stored, "tiny-gqa", q8_0=False)
    assert all(np.array_equal(recovered[k], stored[k]) for k in stored), "gguf f32 roundtrip"
    cases = tiny_cases(128, seed=7)
    write_golden("tiny-gqa", ["tiny-gqa", "tiny-gqa.gguf"], gqa, stored, cases, greedy_n=8,
                 note="float64 forward of the F32 weights; tiny-gqa.gguf holds the same weights (q/k permuted as llama.cpp does)")

    # Same weights, Q8_0 GGUF: golden logits are for the dequantized weights.
    deq = write_gguf(FIXTURES / "tiny-gqa-q8_0.gguf", gqa, stored, "tiny-gqa-q8_0", q8_0=True)
    write_golden("tiny-gqa-q8_0", ["tiny-gqa-q8_0.gguf"], gqa, deq, cases, greedy_n=0,
                 note="float64 forward of the Q8_0-dequantized weights (2-D tensors Q8_0, norms and biases F32)")

    # Same weights in 16-bit safetensors: BF16 matrices, F16 norms, F32 biases (a mixed-dtype file).
    mixed = {k: ("F32" if k.endswith(".bias") else "F16" if v.ndim == 1 else "BF16", v) for k, v in w.items()}
    stored16 = write_hf_dir("tiny-gqa-bf16", {**gqa, "torch_dtype": "bfloat16"}, mixed)
    write_golden("tiny-gqa-bf16", ["tiny-gqa-bf16"], gqa, stored16, cases, greedy_n=0,
                 note="float64 forward of the BF16/F16-rounded weights")

    # Multi-query (1 KV head), default head_dim 8, tied embeddings, no bias, llama3 RoPE scaling: with theta
    # 10000 the wavelengths are 6.3, 63, 628, 6283, so the bands (kept < 32 <= smoothed <= 128 < divided) all occur.
    mqa = base_config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=1024,
                      tie_word_embeddings=True,
                      rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 128})
    plain = rope_inv_freq({**mqa, "rope_scaling": None}, 8)
    scaled = rope_inv_freq(mqa, 8)
    ratio = (plain / scaled).tolist()
    assert ratio[0] == 1 and 1 < ratio[1] < 8 and ratio[2] == ratio[3] == 8, ratio
    wm = random_llama(mqa, seed=99)
    stored_m = write_hf_dir("tiny-mqa-llama3", mqa, {k: ("F32", v) for k, v in wm.items()})
    # As llama.cpp converts a Llama 3.x model: the scaling as rope_freqs.weight (llama3_gguf.py writes the same file
    # from the committed checkpoint with numpy alone).
    recovered_m = write_gguf(FIXTURES / "tiny-mqa-llama3.gguf", mqa, stored_m, "tiny-mqa-llama3", q8_0=False)
    assert all(np.array_equal(recovered_m[k], stored_m[k]) for k in stored_m), "gguf f32 roundtrip"
    write_golden("tiny-mqa-llama3", ["tiny-mqa-llama3", "tiny-mqa-llama3.gguf"], mqa, stored_m, tiny_cases(64, seed=8), greedy_n=8,
                 note="float64 forward; llama3 rope_scaling (rope_freqs.weight in the GGUF), MQA, tied embeddings")


def make_stories_fixtures(shared: Path) -> None:
    d = shared / "stories260K-hf"
    cfg = json.loads((d / "config.json").read_text())
    w = read_safetensors(d / "model.safetensors")
    assert len(w) == 47, len(w)
    ids = STORIES_PROMPTS["once-upon-a-time"]
    got = greedy(cfg, w, ids, 64)
    assert got == STORIES_GOLDEN_GREEDY, f"stories260K greedy mismatch:\n{got}\n{STORIES_GOLDEN_GREEDY}"
    write_golden("stories260K-hf", ["<shared>/models/stories260K-hf", "<shared>/models/stories260K/stories260K.gguf"],
                 cfg, w, STORIES_PROMPTS, greedy_n=16,
                 note="float64 forward of shared/models/stories260K-hf; once-upon-a-time's 64 greedy ids match its README",
                 extra={"goldenGreedy64": {"tokens": ids, "ids": STORIES_GOLDEN_GREEDY}})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared-models", type=Path,
                    default=Path(os.environ.get("FLYWHEEL_SHARED_MODELS", REPO_ROOT.parent / "shared" / "models")))
    ap.add_argument("--only", choices=["stories", "tiny"], default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.only in (None, "tiny"):
        make_tiny_fixtures()
    if args.only in (None, "stories"):
        make_stories_fixtures(args.shared_models)
    print("fixtures written to", FIXTURES, file=sys.stderr)


if __name__ == "__main__":
    main()
