#!/usr/bin/env python3
"""Golden fixture for Flywheel's Q8_0 weight quantizer (native/src/kernels/quant_q8_0.cpp), made by llama.cpp's
gguf-py (gguf.quants.quantize, numpy, bit-exact with ggml's quantize_row_q8_0_ref): seeded f32 rows with the
cases that decide bit-exactness (exact .5 ties after scaling, all-zero blocks, f16-subnormal and f16-overflowing
scales, a lone nonzero, negative maxima), written as test/fixtures/q8_0-quantize/{input.f32,expected.q8_0}.
Not a test itself: libs/kernels/src/kernels.q8_0.spec.ts compares against these files.

    python3 scripts/reference/q8_0_quantize_golden.py [path/to/gguf-py parent, default ../shared/tools]
"""
import os
import sys
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TOOLS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, '..', 'shared', 'tools')
sys.path.insert(0, TOOLS)
sys.modules['sentencepiece'] = types.SimpleNamespace(SentencePieceProcessor=None)  # gguf imports it; unused here
import gguf  # noqa: E402
from gguf.quants import quantize  # noqa: E402

COLS = 96  # 3 blocks per row
rng = np.random.default_rng(20240914)
rows = []
rows.append(rng.standard_normal(COLS) * 0.02)                       # typical trained weights
rows.append(rng.standard_normal(COLS) * 3.0)
rows.append(np.concatenate([np.zeros(32), rng.standard_normal(64)]))  # an all-zero block: d = 0, q = 0
ties = np.arange(-63, 65, dtype=np.float64)[:96] + 0.5                 # amax 127 -> d = 1: x*id = k + .5 exactly
ties[0] = 127.0; ties[32] = -127.0; ties[64] = 127.0
rows.append(ties)
rows.append(rng.standard_normal(COLS) * 1e-4)                        # d ~ 2e-6: an f16 subnormal scale
rows.append(rng.standard_normal(COLS) * 1e-9)                        # d underflows f16 to 0, q still nonzero
rows.append(rng.standard_normal(COLS) * 3e6)                         # d ~ 2e4..7e4: near and past f16 max (inf)
lone = np.zeros(COLS); lone[5] = -0.75; lone[40] = 1e-30; lone[90] = 2.0 ** -20
rows.append(lone)
neg = rng.uniform(-1, 0.5, COLS); neg[7] = -1.5; neg[50] = -2.0; neg[80] = -0.001
rows.append(neg)                                                     # the max magnitude is negative
for _ in range(7):
    rows.append(rng.standard_normal(COLS) * rng.uniform(0.001, 10))

x = np.stack(rows).astype(np.float32)
q = quantize(x, gguf.GGMLQuantizationType.Q8_0)
assert q.dtype == np.uint8 and q.shape == (x.shape[0], COLS // 32 * 34), q.shape

out = os.path.join(REPO, 'test', 'fixtures', 'q8_0-quantize')
os.makedirs(out, exist_ok=True)
x.astype('<f4').tofile(os.path.join(out, 'input.f32'))
q.tofile(os.path.join(out, 'expected.q8_0'))
print(f'{x.shape[0]} rows x {COLS} -> {q.size} bytes in {out}')
