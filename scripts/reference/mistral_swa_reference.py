#!/usr/bin/python3
"""Independent float64 Mistral-with-sliding-window reference (transformers' modeling_mistral style) and the generator of
Flywheel's tiny-mistral-swa fixtures: test/fixtures/tiny-mistral-swa/ (config.json + F32 safetensors),
golden/tiny-mistral-swa.{json,f32} (logits) and golden/train-tiny-mistral-swa.{json,f32} (loss, gradients, scalar-head
scores and AdamW steps). No GGUF: llama.cpp converts Mistral as arch "llama" and ignores sliding_window.

Mistral (v0.1) is the Llama forward of llama_reference.py (RMSNorm, rotate_half RoPE, repeat_kv GQA, SwiGLU, no bias)
with one change: every layer attends through the sliding window (`sliding_window` in config.json; transformers'
sliding_window_causal mask): a query at slot i sees the keys j with i - sliding_window < j <= i. The tiny model's
window is 4, so the golden sequences of 7 and 13 tokens (and their greedy continuations) and the training batch
(8 slots) leave it. With sliding_window null (or >= the sequence length) both forwards here are the Llama ones bit
for bit, which the script asserts.

It is not transformers' code (never imported). Everything else is imported from llama_reference.py (safetensors
reader/writer, random_llama, write_golden), llama_train_reference.py (batch, loss, optimizer, file layout) and
gemma_reference.py (the window mask and the checks shared with the Gemma fixtures); the two forwards here are
installed into those modules only while the files are written. Deterministic: a rerun gives the same bytes.
Run: `/usr/bin/python3 scripts/reference/mistral_swa_reference.py`.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gemma_reference as gr  # noqa: E402
import llama_reference as lr  # noqa: E402
import llama_train_reference as ltr  # noqa: E402
from llama_reference import FIXTURES  # noqa: E402

GENERATOR = "scripts/reference/mistral_swa_reference.py"
NAME = "tiny-mistral-swa"


def is_mistral(cfg: dict) -> bool:
    return cfg["architectures"][0] in ("MistralForCausalLM", "MistralForSequenceClassification")


# ---------------------------------------------------------------------------------------------------------
# The reference forwards: llama_reference.forward / llama_train_reference.final_hidden with the window mask


def forward(cfg: dict, w: dict[str, np.ndarray], ids: list[int]) -> torch.Tensor:
    """(T) token ids -> (T, vocab) float64 logits, prefill, sliding_window on every layer (None: causal only)."""
    return _LLAMA_FORWARD(cfg, w, ids, window=cfg.get("sliding_window"))


def final_hidden(cfg, W, tokens, positions, mask):
    """llama_train_reference.final_hidden (batched, padded, autograd) with the window (by slot index, as transformers
    builds it from cache positions) combined with the causal and padding masks: (B, T) -> (B, T, C)."""
    return _LLAMA_FINAL_HIDDEN(cfg, W, tokens, positions, mask, window=cfg.get("sliding_window"))


_LLAMA_FORWARD, _LLAMA_FINAL_HIDDEN = lr.forward, ltr.final_hidden


@contextlib.contextmanager
def mistral_forwards():
    """While writing these files, llama_reference.write_golden / greedy_with_margin and llama_train_reference.run call
    the forwards above for a Mistral config (Llama's parameter order and LM loss apply unchanged)."""
    lr.forward = lambda cfg, w, ids: (forward if is_mistral(cfg) else _LLAMA_FORWARD)(cfg, w, ids)
    ltr.final_hidden = lambda cfg, *a: (final_hidden if is_mistral(cfg) else _LLAMA_FINAL_HIDDEN)(cfg, *a)
    try:
        yield
    finally:
        lr.forward, ltr.final_hidden = _LLAMA_FORWARD, _LLAMA_FINAL_HIDDEN


def set_generator(path: Path, old: str) -> None:
    text = path.read_text()
    needle = f'"generator": "{old}"'
    assert text.count(needle) == 1, path
    path.write_text(text.replace(needle, f'"generator": "{GENERATOR}"'))


# ---------------------------------------------------------------------------------------------------------
# Fixtures


def mistral_config() -> dict:
    """MistralConfig's fields (no attention_bias / mlp_bias: Mistral has neither), keys sorted as transformers
    writes them."""
    return dict(sorted(dict(
        architectures=["MistralForCausalLM"], model_type="mistral", attention_dropout=0.0, bos_token_id=1,
        eos_token_id=2, head_dim=16, hidden_act="silu", hidden_size=32, initializer_range=0.02, intermediate_size=64,
        max_position_embeddings=64, num_attention_heads=4, num_hidden_layers=2, num_key_value_heads=2,
        rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=4, tie_word_embeddings=False, torch_dtype="float32",
        use_cache=True, vocab_size=128).items()))


def sanity_checks(cfg: dict, w: dict[str, np.ndarray], cases: dict[str, list[int]], train_seed: int) -> str:
    ids = cases["random-13"]
    T = len(ids)
    llama_cfg = {**cfg, "architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    Wt = {k: torch.from_numpy(v.astype(np.float64)) for k, v in w.items()}
    tok, pos, msk = torch.tensor([ids]), torch.arange(T)[None], torch.ones(1, T, dtype=torch.int64)
    batch = {k: torch.from_numpy(v) for k, v in ltr.make_batch(cfg["vocab_size"], train_seed).items()}
    # 1. No window, or one at least the sequence length: exactly the Llama forwards (prefill and training batch).
    llama = _LLAMA_FORWARD(llama_cfg, w, ids)
    for window in (None, T, 64):
        assert torch.equal(forward({**cfg, "sliding_window": window}, w, ids), llama), window
    for window in (None, ltr.T):
        assert torch.equal(final_hidden({**cfg, "sliding_window": window}, Wt, batch["tokens"], batch["positions"],
                                        batch["mask"]),
                           _LLAMA_FINAL_HIDDEN(llama_cfg, Wt, batch["tokens"], batch["positions"], batch["mask"]))
    # 2. The window of 4 changes the 13-token logits (from position 4 on only), and the training batch's hidden states.
    full = forward(cfg, w, ids)
    d1 = gr.maxdiff(full, llama)
    assert d1 > 0.05 and torch.equal(full[: cfg["sliding_window"]], llama[: cfg["sliding_window"]]), d1
    d2 = gr.maxdiff(final_hidden(cfg, Wt, batch["tokens"], batch["positions"], batch["mask"]),
                    _LLAMA_FINAL_HIDDEN(llama_cfg, Wt, batch["tokens"], batch["positions"], batch["mask"]))
    assert d2 > 0.05, d2
    # 3. One sliding layer sees exactly the last `window` tokens.
    gr.check_window_receptive_field(cfg, w, forward, ids, cfg["sliding_window"])
    # 4. The batched training forward gives the prefill logits (all-real row and every real slot of the padded batch).
    d3 = gr.check_train_matches_prefill(cfg, w, forward, final_hidden, lambda W_, h: h @ W_["lm_head.weight"].T, ids,
                                        cfg["vocab_size"], train_seed)
    return f"window 4 vs none {d1:.3f} (train batch hidden {d2:.3f}), train vs infer {d3:.1e}"


def make_mistral_fixtures() -> None:
    cfg = mistral_config()
    w = lr.random_llama(cfg, seed=8649)
    stored = lr.write_hf_dir(NAME, cfg, {k: ("F32", v) for k, v in w.items()})
    cases = lr.tiny_cases(128, seed=7)  # the same 3 token sequences as tiny-gqa
    train_seed = 31
    print(f"{NAME} sanity: {sanity_checks(cfg, stored, cases, train_seed)}", file=sys.stderr)
    with mistral_forwards():
        lr.write_golden(NAME, [NAME], cfg, stored, cases, greedy_n=8,
                        note="float64 Mistral forward of the F32 weights: the Llama forward with a sliding window of "
                             "4 on every layer (a query at i sees keys i-3..i)")
    set_generator(FIXTURES / "golden" / f"{NAME}.json", "scripts/reference/llama_reference.py")
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with mistral_forwards():
            ltr.run(NAME, train_seed)
    finally:
        torch.set_default_dtype(default)
    set_generator(ltr.GOLDEN / f"train-{NAME}.json", "scripts/reference/llama_train_reference.py")


def main() -> None:
    torch.set_num_threads(1)
    make_mistral_fixtures()
    print("mistral fixtures written to", FIXTURES, file=sys.stderr)


if __name__ == "__main__":
    main()
