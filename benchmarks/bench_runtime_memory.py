"""Our runtime on 1-8B files: load time and peak memory without XNNPACK's packed-weight cache, with it cold
(packing and writing it) and warm (mapping it), and decode speed in each case.

    python benchmarks/bench_runtime_memory.py --model qwen2.5-1.5b --recipe int8 --recipe int4-block32
    python benchmarks/bench_runtime_memory.py --model llama-3.1-8b --recipe int4-block32
    python benchmarks/bench_runtime_memory.py --bundle artifacts/gemma3-270m/model.litertlm   # ours vs LiteRT-LM

Each checkpoint is the published shape with random weights (written once under --workdir by bench_convert.py's
writer), converted the way a user converts (`edge-models convert NAME --checkpoint DIR --quantize R --prefill
32,128 --kv-cache 1024 --shortlist 0`: prefill_32, prefill_128, decode, step_256, fill_*_256, verify_8*). Every
measurement runs in a fresh child process whose RSS a watchdog samples every 0.1 s and stops at --limit-gib, so an
out-of-memory load ends with a record instead of the kernel's OOM killer; the cold and warm runs share a cache
folder of their own, emptied first.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench_convert import rss_gib, shape_of, write_checkpoint

MODES = ("no cache", "cache cold", "cache warm")


def measure_child(path: str, mode: str, cache_folder: str, threads: int, steps: int, events) -> None:
    from edge_models.runtime import weight_cache

    if mode == "no cache":
        os.environ[weight_cache.ENV_OFF] = "1"
    else:
        os.environ[weight_cache.ENV_DIR] = cache_folder
    import numpy as np

    from edge_models.runtime import LiteRTModel

    events.put(("stage", "loading"))
    model = LiteRTModel(path, threads=threads)
    events.put(("load", model.load_seconds))
    events.put(("kv", model.kv_cache_bytes))
    events.put(("stage", "prefill"))
    model.prefill(np.random.default_rng(0).integers(0, model.vocab_size, 32).tolist())
    events.put(("stage", "decode"))
    started = time.perf_counter()
    for pos in range(32, 32 + steps):
        model.decode(1, pos)
    events.put(("decode", steps / (time.perf_counter() - started)))


PROMPT = "The most important thing to know about the ocean is"


def bundle_child(path: str, engine: str, mode: str, cache_folder: str, threads: int, steps: int, events) -> None:
    """One greedy reply of `steps` tokens from a bundle, in our runtime or LiteRT-LM's engine, each with its own
    packed-weight cache in `cache_folder` (LiteRT-LM's `cache_dir`)."""
    events.put(("stage", "loading"))
    started = time.perf_counter()
    if engine == "edge-models":
        from edge_models.runtime import weight_cache

        os.environ[weight_cache.ENV_DIR] = cache_folder
        from edge_models.runtime import Generator

        gen = Generator.open(path, threads=threads)
        events.put(("load", time.perf_counter() - started))
        events.put(("stage", "generating"))
        list(gen.generate_ids(gen.encode(PROMPT), steps, speculate=False))
        events.put(("decode", gen.last_stats.decode_tokens_per_s))
        return
    import litert_lm

    litert_lm.set_min_log_severity(litert_lm.LogSeverity.ERROR)
    engine_ = litert_lm.Engine(path, backend=litert_lm.Backend.CPU(thread_count=threads), cache_dir=cache_folder)
    session = engine_.create_session(
        apply_prompt_template=False, sampler_config=litert_lm.SamplerConfig(top_k=1), max_output_tokens=steps
    )
    events.put(("load", time.perf_counter() - started))
    events.put(("stage", "generating"))
    session.run_prefill([PROMPT])
    decoding = time.perf_counter()
    session.run_decode()
    # The reply's tokens over the decode call (LiteRT-LM reports no per-phase figures to Python).
    events.put(("decode", steps / (time.perf_counter() - decoding)))
    session.close()
    engine_.close()


def watched_bundle(path: Path, engine: str, mode: str, cache: Path, threads: int, steps: int, limit: float) -> dict:
    return watched(path, mode, cache, threads, steps, limit, target=bundle_child, engine=engine)


def watched(
    path: Path,
    mode: str,
    cache_folder: Path,
    threads: int,
    steps: int,
    limit_gib: float,
    target=measure_child,
    engine: str | None = None,
) -> dict:
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    args = (str(path), mode, str(cache_folder), threads, steps, events)
    child = ctx.Process(target=target, args=args if engine is None else (str(path), engine, *args[1:]), daemon=True)
    child.start()
    peak, stage, found, stopped = 0.0, "starting", {}, None
    while child.is_alive():
        peak = max(peak, rss_gib(child.pid))
        while not events.empty():
            kind, value = events.get()
            if kind == "stage":
                stage = value
            else:
                found[kind] = value
        if peak > limit_gib:
            stopped = f"stopped at {peak:.1f} GiB while {stage}"
            os.kill(child.pid, 9)
            break
        time.sleep(0.1)
    child.join()
    while not events.empty():
        kind, value = events.get()
        found.setdefault(kind, value)
    result = "ok" if "decode" in found else stopped or f"failed (exit {child.exitcode}) while {stage}"
    return {"mode": mode, "peak_rss_gib": round(peak, 2), "result": result, **found}


def convert_file(model: str, checkpoint: Path, recipe: str, out: Path) -> None:
    name = shape_of(model)[0]
    command = ["edge-models", "convert", name, "--checkpoint", str(checkpoint), "--quantize", recipe]
    command += ["--prefill", "32,128", "--kv-cache", "1024", "--shortlist", "0", "-o", str(out)]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def table(rows: list[dict]) -> str:
    lines = [
        "| shape | recipe | file MB | KV MB | load | load s | peak RSS GiB | RSS / (file + KV) | decode tok/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        held = r["file_bytes"] + r.get("kv", 0)
        ratio = f"{r['peak_rss_gib'] * 2**30 / held:.2f}x" if r.get("kv") else "-"
        load = f"{r['load']:.2f}" if "load" in r else "-"
        decode = f"{r['decode']:.1f}" if "decode" in r else r["result"]
        lines.append(
            f"| {r['shape']} | {r['recipe']} | {r['file_bytes'] / 1e6:,.0f} | {r.get('kv', 0) / 1e6:,.0f} | "
            f"{r['mode']} | {load} | {r['peak_rss_gib']:.2f} | {ratio} | {decode} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], help="a registered model or llama-3.1-8b")
    parser.add_argument("--bundle", help="a .litertlm: our runtime and LiteRT-LM's engine side by side, cold and warm")
    parser.add_argument("--recipe", action="append", default=None)
    parser.add_argument("--mode", action="append", choices=MODES, help="[all three]")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=32, help="decode steps timed")
    parser.add_argument("--workdir", default="artifacts/bench")
    parser.add_argument("--limit-gib", type=float, default=22.0)
    parser.add_argument("--out", default="benchmarks/results/runtime_memory.json")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    rows = []
    if args.bundle:
        bundle = Path(args.bundle)
        for engine in ("edge-models", "LiteRT-LM"):
            cache = workdir / f"cache-{engine}"
            shutil.rmtree(cache, ignore_errors=True)
            cache.mkdir(parents=True)
            for mode in ("cache cold", "cache warm"):
                row = watched_bundle(bundle, engine, mode, cache, args.threads, args.steps, args.limit_gib)
                row.update(shape=bundle.name, recipe=engine, file_bytes=bundle.stat().st_size)
                print(json.dumps(row), flush=True)
                rows.append(row)
            shutil.rmtree(cache, ignore_errors=True)
    for model in args.model:
        checkpoint = workdir / model
        if not (checkpoint / "config.json").exists():
            print(f"writing the {model} checkpoint (random weights) to {checkpoint}", flush=True)
            write_checkpoint(model, checkpoint)
        for recipe in args.recipe or ["int8"]:
            path = workdir / f"{model}-{recipe}.tflite"
            if not path.exists():
                convert_file(model, checkpoint, recipe, path)
            cache = workdir / f"cache-{model}-{recipe}"
            shutil.rmtree(cache, ignore_errors=True)
            for mode in args.mode or MODES:
                row = watched(path, mode, cache, args.threads, args.steps, args.limit_gib)
                row.update(shape=model, recipe=recipe, file_bytes=path.stat().st_size)
                print(json.dumps(row), flush=True)
                rows.append(row)
            shutil.rmtree(cache, ignore_errors=True)
    print(table(rows))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
