"""Convert a full-size model shape (random weights in the HF safetensors layout) and record wall time,
peak RSS and file size — or, when it does not fit, how far it got.

    python benchmarks/convert_full_size.py --model tinyllama-1.1b --recipe int8
    python benchmarks/convert_full_size.py --model phi-2 --recipe int8 --limit-gib 22

Hubs are unreachable, so the checkpoint is the published shape with random weights, written once to
--workdir (4.4 GB for TinyLlama, 11 GB for Phi-2) and memory-mapped by the converter. The conversion
runs in a child process that a watchdog stops at --limit-gib of RSS, so an out-of-memory run ends
with a record instead of the kernel's OOM killer picking a victim.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path


def write_checkpoint(model_name: str, directory: Path) -> None:
    """The published config with random weights, saved by transformers in the HF layout (bf16 -> fp32 on load)."""
    import torch

    from edge_models import registry
    from edge_models.testing import build_reference

    spec = registry().get(model_name)
    if spec.published_hf_config is None:
        raise SystemExit(f"the {spec.name} plugin does not publish its config.json shape")
    model = build_reference(spec.published_hf_config, spec.reference_class, noise=0.0)
    model.to(torch.float32).save_pretrained(directory)


def convert_child(model_name: str, checkpoint: str, output: str, recipe: str, events) -> None:
    from edge_models.convert import ExportSettings, convert
    from edge_models.models import load_for_spec, resolve_spec

    def progress(message: str) -> None:
        events.put(("stage", message, time.time()))
        print(f"[edge-models] {message}", flush=True)

    progress("loading checkpoint")
    model = load_for_spec(resolve_spec(model_name, checkpoint), checkpoint)
    result = convert(model, output, ExportSettings(prefill_lengths=(32, 128), kv_cache_len=1024), recipe, progress)
    events.put(("done", result.size_bytes, time.time()))


def rss_gib(pid: int) -> float:
    total = 0
    for child in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--recipe", default="int8")
    parser.add_argument("--workdir", default="artifacts/bench")
    parser.add_argument("--limit-gib", type=float, default=22.0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    work = Path(args.workdir) / args.model
    checkpoint = work / "checkpoint"
    if not (checkpoint / "config.json").exists():
        print(f"writing a random {args.model} checkpoint to {checkpoint} ...", flush=True)
        proc = mp.get_context("spawn").Process(target=write_checkpoint, args=(args.model, checkpoint))
        proc.start()
        proc.join()
        if proc.exitcode:
            raise SystemExit(f"writing the checkpoint failed (exit {proc.exitcode})")
    weights = sum(f.stat().st_size for f in checkpoint.glob("*.safetensors"))

    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    output = work / f"{args.model}_{args.recipe}.tflite"
    child = ctx.Process(target=convert_child, args=(args.model, str(checkpoint), str(output), args.recipe, events))
    started = time.time()
    child.start()
    peak, stage, size, stopped = 0.0, "starting", None, None
    while child.is_alive():
        peak = max(peak, rss_gib(child.pid))
        while not events.empty():
            kind, value, _ = events.get()
            stage, size = (value, size) if kind == "stage" else (stage, value)
        if peak > args.limit_gib:
            stopped = f"stopped by the watchdog at {peak:.1f} GiB RSS during '{stage}'"
            os.kill(child.pid, 9)
            break
        time.sleep(0.2)
    child.join()
    while not events.empty():
        kind, value, _ = events.get()
        stage, size = (value, size) if kind == "stage" else (stage, value)
    record = {
        "model": args.model,
        "recipe": args.recipe,
        "fp32_weight_gb": round(weights / 1e9, 2),
        "wall_s": round(time.time() - started, 1),
        "peak_rss_gib": round(peak, 2),
        "peak_rss_over_weights": round(peak * 2**30 / weights, 2),
        "output_mb": round(size / 1e6, 1) if size else None,
        "result": "ok" if size else (stopped or f"failed (exit {child.exitcode}) during '{stage}'"),
        "command": f"python benchmarks/convert_full_size.py --model {args.model} --recipe {args.recipe}",
    }
    print(json.dumps(record, indent=2))
    out = Path(args.out or f"benchmarks/results/convert_{args.model}_{args.recipe}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    if output.exists():
        output.unlink()
    return 0 if size else 1


if __name__ == "__main__":
    raise SystemExit(main())
