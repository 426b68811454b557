"""
Writes test/fixtures/tiny-mqa-llama3.gguf from the committed test/fixtures/tiny-mqa-llama3 checkpoint with numpy
alone (no torch): the same file llama_reference.py writes when it regenerates every fixture, i.e. the weights as
llama.cpp's converter stores a Llama 3.x model, its llama3 rope_scaling as the rope_freqs.weight tensor.
Run: python3 scripts/reference/llama3_gguf.py
"""
import json
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gguf_writer import write_gguf  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2] / "test" / "fixtures"


def read_f32_safetensors(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + begin : 8 + n + end], dtype="<f4").reshape(info["shape"])
    return out


def main() -> None:
    src = FIXTURES / "tiny-mqa-llama3"
    cfg = json.loads((src / "config.json").read_text())
    weights = read_f32_safetensors(src / "model.safetensors")
    recovered = write_gguf(FIXTURES / "tiny-mqa-llama3.gguf", cfg, weights, "tiny-mqa-llama3", q8_0=False)
    assert all(np.array_equal(recovered[k], weights[k]) for k in weights), "gguf f32 roundtrip"
    print("wrote", FIXTURES / "tiny-mqa-llama3.gguf", file=sys.stderr)


if __name__ == "__main__":
    main()
