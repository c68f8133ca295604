"""Conversion side by side: plain litert-torch (+ ai-edge-quantizer) against `edge-models convert`, same checkpoint.

    python benchmarks/bench_convert.py --model llama-135m --model tinyllama-1.1b [--recipe int8] [--jobs 2]
    python benchmarks/bench_convert.py --model phi-2 --only edge-models

Hubs are unreachable, so each checkpoint is the published shape with random weights, saved by `transformers` in the
HF safetensors layout once under --workdir (0.5 GB for the 135M shape, 4.4 GB TinyLlama, 11 GB Phi-2).

- **litert-torch**: the model loaded into memory, `litert_torch.signature(...).convert()` with its defaults (every
  weight lowered into the graph, one float flatbuffer), then ai-edge-quantizer with the same recipe.
- **edge-models**: what `edge-models convert` runs: the graph exported without its weights (signatures shared
  between --jobs processes), each weight then read from the checkpoint, quantized and written, one at a time.

Each runs in a child process that a watchdog samples (RSS of it and its children, every 0.2 s) and stops at
--limit-gib, so an out-of-memory run ends with a record instead of the kernel's OOM killer picking a victim. When
both finish, a third process runs both files on the same tokens and reports the largest logit difference.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import time
from pathlib import Path

from bench_recipes import SHAPE_135M

from edge_models.convert import ExportSettings

PREFILL, KV = (32, 128), 1024
CONVERTERS = ("litert-torch", "edge-models")


# Llama-3.1-8B's dimensions: ~32 GB of fp32 weights, more than this machine's memory, so its random checkpoint is
# written tensor by tensor in bf16 (16 GB on disk) instead of through transformers.
SHAPE_LLAMA31_8B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 128256,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    "max_position_embeddings": 131072,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
STREAMED_SHAPES = {"llama-3.1-8b": SHAPE_LLAMA31_8B}


def _llama_peer(hidden: int, layers: int, heads: int, kv_heads: int, head_dim: int, ff: int, vocab: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": ff,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1_000_000.0,
        "max_position_embeddings": 32768,
        "tie_word_embeddings": True,
    }


# Llama-architecture peers of the hybrids: every layer attention + MLP, with the hybrid's width, depth, heads and
# vocabulary, and the MLP widened until the parameter count matches (752.9M against Qwen3.5-0.8B's 752.4M, 1,170.3M
# against LFM2-1.2B's 1,170.3M), so decode compares the layer types at the same weight bytes.
LLAMA_PEERS = {
    "llama-like-qwen3.5-0.8b": _llama_peer(1024, 24, 8, 2, 256, 5056, 248320),
    "llama-like-lfm2-1.2b": _llama_peer(2048, 16, 32, 8, 64, 8832, 65536),
}
# Registered presets whose fp32 weights do not fit beside a conversion (Gemma 4 E2B: 18.5 GB, 9.4 GB of it the
# per-layer table), written the same way from the plugin's published shape.
STREAMED_PRESETS = ("gemma-4-e2b",)


def shape_of(model: str) -> tuple[str, dict]:
    """(registered model used to load it, published config.json) for a --model name."""
    from edge_models import registry

    if model == "llama-135m":
        return "llama", SHAPE_135M
    if model in STREAMED_SHAPES:
        return "llama", STREAMED_SHAPES[model]
    if model in LLAMA_PEERS:
        return "llama", LLAMA_PEERS[model]
    spec = registry().get(model)
    if spec.published_hf_config is None:
        raise SystemExit(f"the {spec.name} plugin does not publish its config.json shape")
    return spec.name, spec.published_hf_config


def write_checkpoint(model: str, directory: Path) -> None:
    """The published config with random weights, saved by transformers in the HF layout."""
    import torch

    from edge_models import registry
    from edge_models.testing import build_reference

    if model in STREAMED_SHAPES or model in STREAMED_PRESETS:
        write_streamed_checkpoint(model, directory)
        return
    name, config = shape_of(model)
    reference = build_reference(config, registry().get(name).reference_class, noise=0.0)
    reference.to(torch.float32).save_pretrained(directory)


def write_streamed_checkpoint(model: str, directory: Path, shard_bytes: int = 2 << 30) -> None:
    """Random bf16 weights in the HF layout (sharded safetensors + index), one shard in memory at a time; a tensor
    over `shard_bytes` in fp32 is drawn in row chunks straight into its bf16 storage, never whole in fp32."""
    import torch
    from safetensors.torch import save_file

    from edge_models import registry
    from edge_models.layers import Decoder
    from edge_models.loader.load import plan

    name, config = shape_of(model)
    spec = registry().get(name)
    with torch.device("meta"):
        skeleton = Decoder(spec.config_from_hf(config))
    shapes = {p: tuple(t.shape) for p, t in skeleton.state_dict().items()}
    picks = plan(skeleton, spec.tensor_names)
    directory.mkdir(parents=True, exist_ok=True)
    # Shards planned from the shapes first, so each is generated, written and freed before the next.
    groups, size = [[]], 0
    for param in picks:
        if size >= shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(param)
        size += math.prod(shapes[param]) * 2
    generator = torch.Generator().manual_seed(0)
    index = {}
    for i, group in enumerate(groups, 1):
        file = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        shard = {}
        for param in group:
            shape = shapes[param]
            if len(shape) == 2 and math.prod(shape) * 4 > shard_bytes:
                shard[picks[param].name] = _random_bf16_in_chunks(shape, generator, shard_bytes)
            elif len(shape) == 2:
                shard[picks[param].name] = (torch.randn(shape, generator=generator) * 0.02).to(torch.bfloat16)
            else:
                shard[picks[param].name] = torch.ones(shape, dtype=torch.bfloat16)
        save_file(shard, directory / file, metadata={"format": "pt"})
        index.update(dict.fromkeys(shard, file))
        del shard
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": index}))
    (directory / "config.json").write_text(json.dumps(config))


def _random_bf16_in_chunks(shape: tuple[int, int], generator, chunk_bytes: int):
    import torch

    rows, cols = shape
    out = torch.empty(shape, dtype=torch.bfloat16)
    step = max(1, chunk_bytes // (4 * cols))
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        out[start:stop] = torch.randn((stop - start, cols), generator=generator) * 0.02
    return out


def convert_child(converter: str, model: str, checkpoint: str, output: str, recipe: str, jobs: int, events) -> None:
    from edge_models import registry
    from edge_models.convert import ExportSettings, convert
    from edge_models.kinds.decoder import load_for_spec

    def progress(message: str) -> None:
        events.put(("stage", message))
        print(f"[{converter}] {message}", flush=True)

    spec = registry().get(shape_of(model)[0])
    settings = ExportSettings(prefill_lengths=PREFILL, kv_cache_len=KV)
    progress("loading checkpoint")
    if converter == "edge-models":
        net, weights = load_for_spec(spec, checkpoint, deferred=True)
        convert(net, output, settings, recipe, progress, weights=weights, workers=jobs)
    else:
        import contextlib

        from edge_models.convert import export
        from edge_models.convert.converter import _lower
        from edge_models.io.files import write_atomically
        from edge_models.quantize import parse_recipe
        from edge_models.quantize.ai_edge import quantize_flatbuffer

        net = load_for_spec(spec, checkpoint)
        export.decomposed_once = contextlib.nullcontext  # litert-torch exactly as it ships
        flatbuffer = _lower(net, settings, progress, lightweight=False)
        progress(f"quantizing with recipe {recipe}")
        flatbuffer = quantize_flatbuffer(flatbuffer, parse_recipe(recipe))
        progress("writing")
        write_atomically(output, lambda f: f.write(flatbuffer))
    events.put(("done", Path(output).stat().st_size))


def rss_gib(pid: int) -> float:
    total = 0
    for process in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{process}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except FileNotFoundError:
            pass
    return total / 2**30


def _children(pid: int) -> list[int]:
    try:
        kids = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []
    return kids + [g for k in kids for g in _children(k)]


def watch(converter: str, model: str, checkpoint: Path, output: Path, recipe: str, jobs: int, limit_gib: float) -> dict:
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    child = ctx.Process(
        target=convert_child, args=(converter, model, str(checkpoint), str(output), recipe, jobs, events)
    )
    started = time.time()
    child.start()
    peak, stage, size, stopped = 0.0, "starting", None, None

    def drain() -> None:
        nonlocal stage, size
        while not events.empty():
            kind, value = events.get()
            stage, size = (value, size) if kind == "stage" else (stage, value)

    while child.is_alive():
        peak = max(peak, rss_gib(child.pid))
        drain()
        if peak > limit_gib:
            stopped = f"stopped by the watchdog at {peak:.1f} GiB during '{stage}'"
            os.kill(child.pid, 9)
            break
        time.sleep(0.2)
    child.join()
    drain()
    return {
        "wall_s": round(time.time() - started, 1),
        "peak_rss_gib": round(peak, 2),
        "output_mb": round(size / 1e6, 1) if size else None,
        "result": "ok" if size else (stopped or f"failed (exit {child.exitcode}) during '{stage}'"),
    }


def compare_outputs(first: str, second: str) -> dict:
    """Largest |logit difference| between the two files: 31 prompt tokens, then 8 greedy decode steps."""
    import numpy as np

    from edge_models.runtime import LiteRTModel

    runs = []
    for path in (first, second):
        lite = LiteRTModel(path, threads=2)
        tokens = list(range(100, 131))
        lite.prefill(tokens)
        rows, token = [], 7
        for pos in range(len(tokens), len(tokens) + 8):
            rows.append(lite.decode(token, pos))
            token = int(rows[-1].argmax())
        runs.append(np.stack(rows))
        del lite
    return {
        "max_abs_logit_diff": float(np.abs(runs[0] - runs[1]).max()),
        "greedy_equal": bool((runs[0].argmax(-1) == runs[1].argmax(-1)).all()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", action="append", required=True, help="llama-135m, a llama-like-<hybrid> peer or a registered model"
    )
    parser.add_argument("--recipe", default="int8")
    parser.add_argument("--only", choices=CONVERTERS, help="run one converter (e.g. when the other cannot fit)")
    parser.add_argument("--jobs", type=int, default=2, help="edge-models' export processes (`convert --jobs`)")
    parser.add_argument("--workdir", default="artifacts/bench")
    parser.add_argument("--limit-gib", type=float, default=22.0)
    parser.add_argument("--out", default="benchmarks/results/convert_side_by_side.json")
    args = parser.parse_args()

    records = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    for model in args.model:
        work = Path(args.workdir) / model
        checkpoint = work / "checkpoint"
        if not (checkpoint / "config.json").exists():
            print(f"writing a random {model} checkpoint to {checkpoint} ...", flush=True)
            proc = mp.get_context("spawn").Process(target=write_checkpoint, args=(model, checkpoint))
            proc.start()
            proc.join()
            if proc.exitcode:
                raise SystemExit(f"writing the checkpoint failed (exit {proc.exitcode})")
        weights = sum(f.stat().st_size for f in checkpoint.glob("*.safetensors"))
        if model in STREAMED_SHAPES or model in STREAMED_PRESETS:
            weights *= 2  # stored in bf16; the figures compare with the fp32 weights

        key = f"{model} {args.recipe}"
        # With --only, the other converter's earlier result stays.
        record = records.get(key, {}) if args.only else {}
        record.update({"recipe": args.recipe, "fp32_weight_gb": round(weights / 1e9, 2)})
        outputs = {}
        for converter in [args.only] if args.only else CONVERTERS:
            outputs[converter] = work / f"{converter}_{args.recipe}.tflite"
            print(f"== {model}: {converter} ...", flush=True)
            row = watch(converter, model, checkpoint, outputs[converter], args.recipe, args.jobs, args.limit_gib)
            row["peak_rss_over_weights"] = round(row["peak_rss_gib"] * 2**30 / weights, 2)
            record[converter] = row
            print(json.dumps(row), flush=True)
        if len(outputs) == 2 and all(p.exists() for p in outputs.values()):
            from edge_models.tools.measured import run_measured

            record["outputs"] = run_measured(compare_outputs, *(str(p) for p in outputs.values()))[0]
        if all(record.get(c, {}).get("result") == "ok" for c in CONVERTERS):
            base, ours = record["litert-torch"], record["edge-models"]
            record["edge_models_vs_litert_torch"] = {
                "time": round(ours["wall_s"] / base["wall_s"], 2),
                "peak_rss": round(ours["peak_rss_gib"] / base["peak_rss_gib"], 2),
            }
        record["signatures"] = ExportSettings(prefill_lengths=PREFILL, kv_cache_len=KV).signature_names()
        record["command"] = (
            f"python benchmarks/bench_convert.py --model {model} --recipe {args.recipe} --jobs {args.jobs}"
            + (f" --only {args.only}" if args.only else "")
        )
        for p in outputs.values():
            p.unlink(missing_ok=True)
        records[key] = record
        print(json.dumps(record, indent=2), flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(records, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
