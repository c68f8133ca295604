"""How much of a decode step is per-op cost rather than reading weights: the 135M graph against a "thin" twin.

    python benchmarks/bench_op_overhead.py [--threads 1,2]

The thin twin has SmolLM-135M's layers, heads, head size, KV cache and signatures, so the same ops run in the same
order, with the same attention over 256 cache slots, but its hidden size, MLP width and vocabulary are tiny: its
decode time is what dispatching the graph costs (XNNPACK partitions, thread pool wake-ups, the cache writes,
attention), nearly without weights to read. Both are int8, converted by `edge-models convert`'s path, measured
each in its own process, one after another.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench_recipes import KV, PREFILL, SHAPE_135M

from edge_models.tools.bench import bench_tflite
from edge_models.tools.measured import run_measured

THIN = {"hidden_size": 64, "intermediate_size": 64, "vocab_size": 512}


def convert_shape(thin: bool, out: str) -> int:
    from edge_models.convert import ExportSettings, convert
    from edge_models.kinds.decoder import random_model
    from edge_models_tinyllama import llama_config_from_hf

    shape = {**SHAPE_135M, **(THIN if thin else {})}
    model = random_model(llama_config_from_hf(shape), seed=0, std=0.02)
    return convert(model, out, ExportSettings(PREFILL, KV), "int8", progress=None, workers=2).size_bytes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--decode-tokens", type=int, default=64)
    args = parser.parse_args()

    lines = ["| model | threads | file MB | decode tok/s | ms per token |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for label, thin in (("135M graph, thin matrices", True), ("135M", False)):
            path = str(Path(tmp) / f"{'thin' if thin else 'full'}.tflite")
            size = run_measured(convert_shape, thin, path)[0]
            for threads in (int(t) for t in args.threads.split(",")):
                row = run_measured(bench_tflite, path, args.decode_tokens, threads)[0]
                ms = 1000 / row.decode_tok_s
                lines.append(f"| {label} | {threads} | {size / 1e6:.1f} | {row.decode_tok_s:.1f} | {ms:.2f} |")
                print(lines[-1], flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
