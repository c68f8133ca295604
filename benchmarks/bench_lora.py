"""LoRA at run time on a real model: decode speed with and without an adapter bound, and what N adapters cost on
disk against N merged files.

    python benchmarks/bench_lora.py [--checkpoint artifacts/gemma3-270m/gemma-3-270m-q4_k_m.gguf]
        [--model gemma3-270m] [--tokenizer artifacts/gemma3-270m/tokenizer.model] [--rank 16] [--threads 2]
        [--targets q_proj,k_proj,v_proj,o_proj]

Converts the model twice with the default recipe (int8-gptq): once with LoRA inputs of `--rank` on `--targets`
(default: every projection), once plain (what a merged file costs). The adapter is a peft-layout directory written
here with random matrices of the checkpoint's names and shapes (speed and size do not depend on the values;
`tests/test_lora.py` checks the numbers against peft). Each file is timed with `edge_models.tools.bench.bench_tflite`,
alternating, best of two rounds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch


def write_adapter(directory: Path, spec, config, rank: int, targets: tuple[str, ...]) -> Path:
    from safetensors.torch import save_file

    from edge_models.tensor_names import LAYER_SLOTS

    names = spec.tensor_names
    a = config.attention
    dims = {
        "attn.q_proj": (a.num_heads * a.head_dim, config.hidden_size),
        "attn.k_proj": (a.num_kv_heads * a.head_dim, config.hidden_size),
        "attn.v_proj": (a.num_kv_heads * a.head_dim, config.hidden_size),
        "attn.o_proj": (config.hidden_size, a.num_heads * a.head_dim),
        "mlp.gate_proj": (config.mlp.intermediate_size, config.hidden_size),
        "mlp.up_proj": (config.mlp.intermediate_size, config.hidden_size),
        "mlp.down_proj": (config.hidden_size, config.mlp.intermediate_size),
    }
    g = torch.Generator().manual_seed(0)
    tensors, modules = {}, set()
    for layer in range(config.num_layers):
        for slot, (rows, cols) in dims.items():
            if slot.split(".")[1] not in targets:
                continue
            module = getattr(names, LAYER_SLOTS[slot]).format(layer)
            modules.add(module.rsplit(".", 1)[-1])
            tensors[f"base_model.model.{module}.lora_A.weight"] = torch.randn(rank, cols, generator=g) * 0.01
            tensors[f"base_model.model.{module}.lora_B.weight"] = torch.randn(rows, rank, generator=g) * 0.01
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    config_json = {"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": sorted(modules)}
    (directory / "adapter_config.json").write_text(json.dumps(config_json))
    return directory


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("artifacts/gemma3-270m/gemma-3-270m-q4_k_m.gguf"))
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--tokenizer", type=Path, default=Path("artifacts/gemma3-270m/tokenizer.model"))
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--adapters", type=int, default=4, help="N in the size comparison")
    parser.add_argument(
        "--targets", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", help="projections with inputs"
    )
    args = parser.parse_args()

    from edge_models.kinds.decoder import resolve_config, resolve_spec
    from edge_models.loader.peft_adapter import pack, read_adapter, write_packed
    from edge_models.runtime import LiteRTModel
    from edge_models.tools.bench import bench_tflite
    from edge_models.tools.measured import run_measured

    spec = resolve_spec(args.model, args.checkpoint)
    config = resolve_config(spec, args.checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = {}
        for label, extra in (("lora", ["--lora-rank", str(args.rank), "--lora-targets", args.targets]), ("plain", [])):
            files[label] = root / f"{label}.tflite"
            _convert(args, files[label], extra)
        targets = tuple(args.targets.split(","))
        adapter = read_adapter(write_adapter(root / "adapter", spec, config, args.rank, targets), spec.tensor_names, 99)
        packed = write_packed(
            pack(adapter, LiteRTModel(files["lora"], engine="interpreter").lora_spec), root / "a.bin", "random"
        )
        runs = {"plain file": (files["plain"], None), "LoRA file, no adapter": (files["lora"], None),
                f"LoRA file, rank-{args.rank} adapter bound": (files["lora"], packed)}  # fmt: skip
        speed = {k: 0.0 for k in runs}
        for _ in range(2):
            for label, (path, lora) in runs.items():
                row, _, _ = run_measured(bench_tflite, str(path), 64, args.threads, 3, "compiled", True, lora)
                speed[label] = max(speed[label], row.decode_tok_s)
        sizes = {k: p.stat().st_size for k, p in files.items()}
        adapter_bytes = packed.stat().st_size
    base = speed["plain file"]
    print(f"{spec.name}, int8-gptq, LoRA rank {args.rank} on {args.targets} of {config.num_layers} layers, "
          f"{args.threads} threads\n")  # fmt: skip
    print("| file | decode tok/s | vs plain |\n|---|---|---|")
    for label, s in speed.items():
        print(f"| {label} | {s:.1f} | {s / base:.2f}x |")
    n = args.adapters
    together, merged = (sizes["lora"] + n * adapter_bytes) / 1e6, n * sizes["plain"] / 1e6
    print(
        f"\nSizes: plain {sizes['plain'] / 1e6:.1f} MB, with LoRA inputs {sizes['lora'] / 1e6:.1f} MB, one packed "
        f"adapter {adapter_bytes / 1e6:.1f} MB. {n} fine-tunes: base + {n} adapters {together:.1f} MB vs {n} merged "
        f"files {merged:.1f} MB."
    )
    return 0


def _convert(args, output: Path, extra: list[str]) -> None:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "edge_models.cli", "convert", args.model, "--checkpoint", str(args.checkpoint),
           "--tokenizer", str(args.tokenizer), "-o", str(output), *extra]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)


if __name__ == "__main__":
    raise SystemExit(main())
