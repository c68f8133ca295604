"""Every quantization recipe on a ~135M-parameter Llama shape (SmolLM-135M's), with PyTorch eager beside it.

    python benchmarks/bench_recipes.py [--decode-tokens 64] [--threads 2] [--out benchmarks/results/recipes_135m.md]

Random weights (hubs are unreachable and speed does not depend on the values). Each conversion and each
benchmark runs in a process of its own, so every peak-RSS figure is that job's alone.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

from edge_models.quantize.recipes import SCHEMES
from edge_models.tools.bench import BenchRow, bench_tflite, format_table
from edge_models.tools.measured import run_measured

SHAPE_135M = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
}
# Every built-in recipe, plus one per-component mix.
RECIPES = [*SCHEMES, "attention=int4-block32,feedforward=int4-block32,default=int8"]
PREFILL = (32, 128)
KV = 1024


def model_135m():
    from edge_models.kinds.decoder import random_model
    from edge_models_tinyllama import llama_config_from_hf

    return random_model(llama_config_from_hf(SHAPE_135M), seed=0, std=0.02)


def convert_one(recipe: str, out: str) -> int:
    from edge_models.convert import ExportSettings, convert

    return convert(model_135m(), out, ExportSettings(PREFILL, KV), recipe, progress=None).size_bytes


def bench_one(path: str, decode_tokens: int, threads: int, engine: str = "compiled") -> BenchRow:
    return bench_tflite(path, decode_tokens=decode_tokens, threads=threads, engine=engine)


def bench_eager(decode_tokens: int, threads: int) -> BenchRow:
    import torch

    from edge_models.tools.bench import bench_torch_model

    torch.set_num_threads(threads)
    return bench_torch_model(model_135m(), "pytorch eager fp32", PREFILL, decode_tokens)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recipes", default=",".join(RECIPES), help="semicolon-separated; default: all")
    parser.add_argument("--out", default="benchmarks/results/recipes_135m.md")
    args = parser.parse_args()
    recipes = args.recipes.split(";") if ";" in args.recipes else RECIPES

    rows: list[BenchRow] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in recipes:
            path = str(Path(tmp) / "model.tflite")
            print(f"converting {recipe} ...", file=sys.stderr, flush=True)
            try:
                size, conv_rss, conv_s = run_measured(convert_one, recipe, path)
            except Exception as e:  # a recipe that cannot apply to this shape is reported, not fatal
                notes.append(f"- `{recipe}`: not converted: {e}")
                continue
            row, _, _ = run_measured(bench_one, path, args.decode_tokens, args.threads)
            row.label = f"{recipe} (convert {conv_s:.0f} s, {conv_rss / 2**30:.1f} GiB)"
            rows.append(row)
            if recipe == "int8":
                # The naive loop (signature runner, cache copied through numpy every step), for comparison.
                naive, _, _ = run_measured(bench_one, path, args.decode_tokens, args.threads, "interpreter")
                naive.label = "int8, naive signature-runner loop"
                rows.append(naive)
            Path(path).unlink()
        eager, _, _ = run_measured(bench_eager, args.decode_tokens, args.threads)
        rows.append(eager)

    table = format_table(rows, baseline=rows[-1])
    header = (
        f"135M Llama shape (SmolLM-135M), KV cache {KV}, {args.threads} threads, {args.decode_tokens} decode "
        f"tokens; {platform.processor() or platform.machine()}, Python {platform.python_version()}.\n"
        f"Command: `python benchmarks/bench_recipes.py --threads {args.threads}`\n"
    )
    text = header + "\n" + table + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
