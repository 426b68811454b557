#!/usr/bin/env python3
"""Independent references for Flywheel's native Q4_0 / Q4_K / Q5_K / Q6_K (and Q8_0) GGUF support, written into
test/fixtures/quant/ next to the llama.cpp-quantized tiny models copied there (see that folder's README).

Writes:
  reference.json        per .gguf: one representative tensor per ggml type (first 2 rows + last row of its
                        gguf-py dequantization, 7 significant digits, and a sha256 of the whole tensor dequantized
                        to float32 little-endian) and float64 logits (6 significant digits) from the numpy forward
                        shared/tools/gguf_forward.py, at the last prompt position and after 4 greedy decode steps.
  quantize-<T>.json     for each of Q4_0 / Q4_K / Q5_K / Q6_K / Q4_1 / Q5_0 / Q5_1 that gguf-py can *quantize*
                        (gguf.quants.quantize): a seeded float32 input and gguf-py's quantized bytes (hex); for
                        Q4_1 / Q5_0 / Q5_1 also the exact float32 dequantization of the first row.

numpy only, plus llama.cpp's gguf-py (MIT) and gguf_forward.py from the team's shared tools folder
(env FLYWHEEL_SHARED_TOOLS, default <repo>/../shared/tools). Deterministic: a rerun gives the same bytes
(up to last-digit BLAS differences in the logits on another machine).

    python3 scripts/reference/quant_reference.py
"""
import hashlib
import json
import os
import sys
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TOOLS = os.environ.get('FLYWHEEL_SHARED_TOOLS', os.path.join(REPO, '..', 'shared', 'tools'))
OUT = os.path.join(REPO, 'test', 'fixtures', 'quant')

sys.path.insert(0, os.path.abspath(TOOLS))
sys.modules['sentencepiece'] = types.SimpleNamespace(SentencePieceProcessor=None)  # gguf imports it; unused here
import gguf  # noqa: E402
import gguf_forward  # noqa: E402  (shared/tools/gguf_forward.py: load(), forward())

FILES = ['tiny-q4_0.gguf', 'tiny-q4_k_m.gguf', 'tiny-q5_k_m.gguf', 'tiny-q6_k.gguf', 'tiny-q8_0.gguf']
DECODE_STEPS = 4
QUANT_TYPES = ['Q4_0', 'Q4_K', 'Q5_K', 'Q6_K', 'Q4_1', 'Q5_0', 'Q5_1']
FIRST_ROW_TYPES = ['Q4_1', 'Q5_0', 'Q5_1']  # their quantize-<T>.json also get dequantizedFirstRow


def sig(values, digits):
    """float64 values rounded to `digits` significant digits, as plain Python floats (shortest repr in JSON)."""
    return [float(f'{float(v):.{digits}g}') for v in np.asarray(values, dtype=np.float64).ravel()]


def sha256_file(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def pick_tensors(reader):
    """One tensor per ggml type: the first 2-D tensor of 256 columns in file order, else the first 2-D one,
    else (F32 norms) the first tensor of that type."""
    by_type = {}
    for t in reader.tensors:
        by_type.setdefault(t.tensor_type.name, []).append(t)
    chosen = {}
    for name, ts in by_type.items():
        two_d = [t for t in ts if len(t.shape) == 2]
        pref = [t for t in two_d if int(t.shape[0]) == 256]
        chosen[name] = (pref or two_d or ts)[0]
    counts = {name: len(ts) for name, ts in by_type.items()}
    return chosen, counts


def tensor_entry(t):
    ne = [int(x) for x in t.shape]                      # ggml order: ne[0] = columns (contiguous)
    cols = ne[0]
    rows = int(np.prod(ne[1:])) if len(ne) > 1 else 1
    deq = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(rows, cols)
    return {
        'name': t.name,
        'type': t.tensor_type.name,
        'shape': [rows, cols],
        'ne': ne,
        'firstRows': [sig(deq[i], 7) for i in range(min(2, rows))],
        'lastRow': sig(deq[rows - 1], 7),
        'sha256F32': hashlib.sha256(deq.astype('<f4').tobytes()).hexdigest(),
    }


def top2(lg):
    o = np.argsort(lg)[::-1]
    return int(o[0]), float(lg[o[0]] - lg[o[1]])


def file_entry(fname, src_dir, numpy_ref):
    path = os.path.join(src_dir, fname)
    reader = gguf.GGUFReader(path)
    chosen, counts = pick_tensors(reader)
    W, cfg = gguf_forward.load(path)
    logits = []
    for case in numpy_ref[fname]:
        prompt_ids = [int(i) for i in case['prompt_ids']]
        greedy = [int(i) for i in case['ids']]
        decode_ids = greedy[:DECODE_STEPS]
        lg0 = gguf_forward.forward(W, cfg, list(prompt_ids))[-1]
        lg1 = gguf_forward.forward(W, cfg, prompt_ids + decode_ids)[-1]
        a0, m0 = top2(lg0)
        a1, m1 = top2(lg1)
        assert a0 == greedy[0], (fname, case['prompt'], a0, greedy[0])
        assert a1 == greedy[DECODE_STEPS], (fname, case['prompt'], a1, greedy[DECODE_STEPS])
        logits.append({
            'prompt': case['prompt'],
            'promptIds': prompt_ids,
            'last': sig(lg0, 6),
            'lastArgmax': a0,
            'lastMargin': float(f'{m0:.6g}'),
            'decodeIds': decode_ids,
            'afterDecode': sig(lg1, 6),
            'afterDecodeArgmax': a1,
            'afterDecodeMargin': float(f'{m1:.6g}'),
        })
    return {
        'bytes': os.path.getsize(path),
        'sha256': sha256_file(path),
        'config': {'blockCount': cfg['L'], 'headCount': cfg['NH'], 'headCountKv': cfg['NKV'],
                   'rmsEps': cfg['eps'], 'ropeTheta': cfg['theta'], 'vocab': int(W['token_embd.weight'].shape[0]),
                   'hidden': int(W['token_embd.weight'].shape[1])},
        'typeCounts': counts,
        'tensors': {name: tensor_entry(t) for name, t in sorted(chosen.items())},
        'logits': logits,
    }


def dump(obj, indent=0):
    """JSON with objects indented and arrays of numbers/strings on one line."""
    pad, pad1 = '  ' * indent, '  ' * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return '{}'
        items = [f'{pad1}{json.dumps(k)}: {dump(v, indent + 1)}' for k, v in obj.items()]
        return '{\n' + ',\n'.join(items) + '\n' + pad + '}'
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        if all(isinstance(v, list) and not any(isinstance(w, (dict, list)) for w in v) for v in obj):
            return '[\n' + ',\n'.join(pad1 + json.dumps(v, separators=(',', ':')) for v in obj) + '\n' + pad + ']'
        return '[\n' + ',\n'.join(pad1 + dump(v, indent + 1) for v in obj) + '\n' + pad + ']'
    return json.dumps(obj, separators=(',', ':'))


def quantize_fixtures():
    """Seeded input, 2 rows x 512 ~ N(0,1) with a few x8 outliers; gguf-py's quantization of it, per type."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 512))
    outliers = rng.choice(x.size, size=6, replace=False)
    x.ravel()[outliers] *= 8
    x = x.astype(np.float32)
    supported, written = [], []
    for name in QUANT_TYPES:
        qtype = gguf.GGMLQuantizationType[name]
        try:
            q = gguf.quants.quantize(x, qtype)
        except NotImplementedError:
            continue
        supported.append(name)
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        assert q.dtype == np.uint8 and q.shape == (2, 512 // block * type_size), q.shape
        deq = np.asarray(gguf.quants.dequantize(q, qtype), dtype=np.float32)
        doc = {
            'type': name,
            'generator': 'scripts/reference/quant_reference.py: gguf.quants.quantize (llama.cpp gguf-py, numpy)',
            'seed': 'numpy default_rng(7): standard_normal((2, 512)); 6 entries (rng.choice, no replacement) x8; '
                    'cast to float32',
            'shape': [2, 512],
            'blockSize': block,
            'blockBytes': type_size,
            'outlierIndices': sorted(int(i) for i in outliers),
            'input': [[float(v) for v in row] for row in x],   # float64 repr of each float32: exact
            'inputF32Hex': x.astype('<f4').tobytes().hex(),
            'expectedHex': [row.tobytes().hex() for row in q],
            'dequantizedSha256F32': hashlib.sha256(deq.astype('<f4').tobytes()).hexdigest(),
        }
        if name in FIRST_ROW_TYPES:
            doc['dequantizedFirstRow'] = [float(v) for v in deq[0]]   # float64 repr of each float32: exact
        if name in ROUNDING:
            doc['roundingCheck'] = rounding_check(x, name)
        path = os.path.join(OUT, f'quantize-{name}.json')
        with open(path, 'w') as f:
            f.write(dump(doc) + '\n')
        written.append(path)
    return supported, written


# type -> (qmax, offset of the symmetric types' d = max / -offset, or None for the min/scale types)
ROUNDING = {'Q4_0': (15, 8), 'Q5_0': (31, 16), 'Q4_1': (15, None), 'Q5_1': (31, None)}


def rounding_check(x, name):
    """gguf-py's Q4_0 / Q5_0 round trunc(x*id + 8.5 / 16.5) in float64 (like an FMA); Q4_1 / Q5_1 round
    trunc((x - min)*id + 0.5) in float32. ggml's C reference (quantize_row_q*_ref) does it in float32, where the
    compiler may or may not contract to an FMA. Count the values of this input where the two differ; for Q4_1 / Q5_1
    also the dequantized values where d*q + m in float32 differs from fma(d, q, m)."""
    qmax, half = ROUNDING[name]
    b = x.reshape(-1, 32)
    if half is not None:
        imax = np.abs(b).argmax(-1)[:, None]
        d = (np.take_along_axis(b, imax, -1) / np.float32(-half)).astype(np.float32)
        v, off = b, half + 0.5
    else:
        mn, mx = b.min(-1, keepdims=True), b.max(-1, keepdims=True)
        d = ((mx - mn) / np.float32(qmax)).astype(np.float32)
        v, off = (b - mn).astype(np.float32), 0.5
    with np.errstate(divide='ignore'):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    plain = np.minimum(qmax, np.trunc((v * inv).astype(np.float32) + np.float32(off)).astype(np.int64))
    fused = np.minimum(qmax, np.trunc((v.astype(np.float64) * inv.astype(np.float64) + off).astype(np.float32))
                       .astype(np.int64))
    out = {'valuesDifferingFloat32VsFma': int((plain != fused).sum())}
    if half is None:
        qtype = gguf.GGMLQuantizationType[name]
        q = np.asarray(gguf.quants.quantize(x, qtype)).reshape(-1, gguf.GGML_QUANT_SIZES[qtype][1])
        dq = q[:, 0:2].copy().view(np.float16).astype(np.float32)      # block header: f16 d, f16 m
        mq = q[:, 2:4].copy().view(np.float16).astype(np.float32)
        nib = q[:, -16:]                                                 # 16 bytes: q[j] low, q[j + 16] high nibble
        qi = np.concatenate([nib & 15, nib >> 4], axis=-1).astype(np.int64)
        if qmax == 31:                                                   # Q5_1: fifth bits in a u32 after m
            qh = q[:, 4:8].copy().view('<u4')
            qi |= ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.int64) << 4
        deq_plain = (dq * qi.astype(np.float32)).astype(np.float32) + mq
        assert np.array_equal(deq_plain.ravel(), np.asarray(gguf.quants.dequantize(q.reshape(-1), qtype)).ravel())
        deq_fused = (dq.astype(np.float64) * qi + mq.astype(np.float64)).astype(np.float32)  # exact, then rounded
        out['dequantizedValuesDifferingFloat32VsFma'] = int((deq_plain != deq_fused).sum())
    return out


def main():
    src = OUT  # the committed copies
    with open(os.path.join(src, 'greedy-numpy-f64.json')) as f:
        numpy_ref = json.load(f)
    ref = {
        'generator': 'scripts/reference/quant_reference.py',
        'about': 'tensors: gguf.quants.dequantize (llama.cpp gguf-py) of one tensor per ggml type, rows rounded to 7 '
                 'significant digits, sha256F32 = sha256 of the whole tensor dequantized to float32 little-endian, '
                 'row-major [rows, cols]. logits: float64 numpy forward (shared/tools/gguf_forward.py) of the '
                 'dequantized weights, 6 significant digits, at the last position of promptIds ("last") and of '
                 'promptIds + decodeIds ("afterDecode"; decodeIds = the first 4 greedy ids of greedy-numpy-f64.json).',
        'files': {},
    }
    for fname in FILES:
        ref['files'][fname] = file_entry(fname, src, numpy_ref)
        print(fname, 'ok', file=sys.stderr)
    path = os.path.join(OUT, 'reference.json')
    with open(path, 'w') as f:
        f.write(dump(ref) + '\n')
    print(f'{path}: {os.path.getsize(path)} bytes')
    supported, written = quantize_fixtures()
    print('gguf-py quantizes:', ', '.join(supported) or 'none of ' + ', '.join(QUANT_TYPES))
    for p in written:
        print(f'{p}: {os.path.getsize(p)} bytes')


if __name__ == '__main__':
    main()
