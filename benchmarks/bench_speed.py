"""Decode and prefill speed on the ~135M Llama shape, every contender on the same weights, in one run.

    python benchmarks/bench_speed.py [--threads 2] [--decode-tokens 64] [--out benchmarks/results/speed_135m.md]

Rows: edge-models int8 and int4-block32 (`edge-models generate`'s engine), the naive loop over the same int8
file (ai-edge-litert signature runner, the whole KV cache copied through numpy each step), PyTorch eager fp32,
and llama.cpp Q8_0 / F16 through llama-cpp-python (`pip install llama-cpp-python`, which compiles llama.cpp
for this CPU; rows are left out with the reason when it is missing). The llama.cpp GGUF is written from the
same random weights (llama.cpp's rotary interleave applied to q/k) and read back through our GGUF loader to
check it holds exactly those weights.

Last column: the bandwidth bound, the measured memory read rate divided by the bytes one decode step must
read (weights + the KV cache it attends over). Each job runs in its own process, one after another.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_recipes import KV, PREFILL, SHAPE_135M, bench_eager, convert_one, model_135m

from edge_models.convert import ExportSettings
from edge_models.tools.bench import BenchRow, bench_tflite, format_table
from edge_models.tools.measured import run_measured

THREADS = 2
WITHOUT_WINDOWS = "edge-models int8, prefill_<N> and decode only (as LiteRT-LM runs it)"


# --- memory bandwidth ----------------------------------------------------------------------------


def read_bandwidth(threads: int, gib: float = 1.0, repeats: int = 5) -> float:
    """Bytes per second `threads` threads read a large array at (each sums its own part; best of `repeats`)."""
    from concurrent.futures import ThreadPoolExecutor

    data = np.ones(int(gib * 2**30) // 8, dtype=np.float64)
    parts = np.array_split(data, threads)
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            t = time.perf_counter()
            list(pool.map(np.sum, parts))  # numpy releases the GIL while it sums
            best = min(best, time.perf_counter() - t)
    return data.nbytes / best


def bytes_per_decode_step(weight_bytes: int, kv_slots: int) -> int:
    """Weights are all read once per token; attention reads K and V for `kv_slots` positions in every layer."""
    from edge_models_tinyllama import llama_config_from_hf

    cfg = llama_config_from_hf(SHAPE_135M)
    a = cfg.attention
    return weight_bytes + cfg.num_layers * 2 * a.num_kv_heads * a.head_dim * kv_slots * 4


# --- the same weights as a GGUF for llama.cpp ------------------------------------------------------


def _interleave_rotary(w: np.ndarray, heads: int) -> np.ndarray:
    # llama.cpp stores each head's two rotary halves interleaved; our loader undoes exactly this.
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path: str) -> None:
    """Our random 135M model as an F32 llama GGUF, with a placeholder SentencePiece-style vocabulary."""
    import gguf

    from edge_models.loader.load import plan
    from edge_models.tensor_names import GGUF_NAMES

    model = model_135m()
    cfg, a = model.config, model.config.attention
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_context_length(SHAPE_135M["max_position_embeddings"])
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(SHAPE_135M["intermediate_size"])
    writer.add_block_count(cfg.num_layers)
    writer.add_head_count(a.num_heads)
    writer.add_head_count_kv(a.num_kv_heads)
    writer.add_rope_dimension_count(a.head_dim)
    writer.add_rope_freq_base(SHAPE_135M["rope_theta"])
    writer.add_layer_norm_rms_eps(SHAPE_135M["rms_norm_eps"])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    specials = ["<unk>", "<s>", "</s>"]
    tokens = specials + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"tok{i}" for i in range(cfg.vocab_size - len(tokens))]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    types += [gguf.TokenType.NORMAL] * (cfg.vocab_size - len(types))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * cfg.vocab_size)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    written = set()
    for param, pick in plan(model, GGUF_NAMES).items():
        if pick.name in written:
            continue
        tensor = state[param]
        if ".attn_q." in pick.name:
            tensor = _interleave_rotary(tensor, a.num_heads)
        elif ".attn_k." in pick.name:
            tensor = _interleave_rotary(tensor, a.num_kv_heads)
        writer.add_tensor(pick.name, np.ascontiguousarray(tensor, dtype=np.float32))
        written.add(pick.name)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def gguf_matches_model(path: str) -> float:
    """Largest |difference| between the GGUF's weights (read by our loader) and the model's."""
    from edge_models.loader import load_model
    from edge_models.tensor_names import GGUF_NAMES

    model = model_135m()
    back = load_model(model.config, path, GGUF_NAMES).state_dict()
    return max(float((v - back[k]).abs().max()) for k, v in model.state_dict().items())


def quantize_gguf(source: str, target: str, kind: str) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = {"Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "F16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16}[kind]
    params.nthread = THREADS
    if llama_cpp.llama_model_quantize(source.encode(), target.encode(), params) != 0:
        raise RuntimeError(f"llama.cpp could not quantize {source} to {kind}")


def bench_llama_cpp(path: str, label: str, decode_tokens: int, threads: int, repeats: int = 3) -> BenchRow:
    """Same measurements as `bench_tflite`: prefill at each length from an empty cache, then decode steps."""
    import llama_cpp
    import llama_cpp.llama as llama_module

    defaults = llama_cpp.llama_model_default_params

    def without_extra_buffers():
        # llama-cpp-python 0.3.36 built for this CPU segfaults on its first quantized matmul here when weights are
        # repacked into its extra buffer types (AMX / interleaved); plain ggml buffers work.
        params = defaults()
        params.use_extra_bufts = False
        return params

    llama_module.llama_cpp.llama_model_default_params = without_extra_buffers
    llm = llama_cpp.Llama(
        model_path=path, n_ctx=KV, n_batch=max(PREFILL), n_threads=threads, n_threads_batch=threads, verbose=False
    )
    row = BenchRow(label, Path(path).stat().st_size)
    rng = np.random.default_rng(0)

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    def prefill(ids: list[int]) -> None:
        llm.reset()  # the next eval drops every cached position from n_tokens (0) on
        llm.eval(ids)

    for length in PREFILL:
        ids = rng.integers(3, 49152, length).tolist()
        row.prefill_tok_s[length] = length / best(lambda ids=ids: prefill(ids))

    def decode() -> None:
        prefill([1])
        for _ in range(decode_tokens - 1):
            llm.eval([5])

    row.decode_tok_s = decode_tokens / best(decode)
    first = rng.integers(3, 49152, min(PREFILL)).tolist()
    row.first_token_ms = 1000 * best(lambda: prefill(first))
    from edge_models.tools.bench import _peak_rss

    row.peak_rss_bytes = _peak_rss()
    return row


# --- the rest ------------------------------------------------------------------------------------


def bench_one(path: str, label: str, decode_tokens: int, threads: int, engine: str, windows: bool) -> BenchRow:
    row = bench_tflite(path, decode_tokens=decode_tokens, threads=threads, engine=engine, windows=windows)
    row.label = label
    return row


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="times every contender runs, interleaved; best kept")
    parser.add_argument("--out", default="benchmarks/results/speed_135m.md")
    args = parser.parse_args()

    weight_bytes: dict[str, int] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for recipe in ("int8", "int4-block32"):
            say(f"converting {recipe} ...")
            files[recipe] = str(Path(tmp) / f"{recipe}.tflite")
            weight_bytes[recipe], _, _ = run_measured(convert_one, recipe, files[recipe])

        llama_files = {}
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            notes.append("llama.cpp rows left out: `pip install llama-cpp-python` to add them.")
        else:
            say("writing the same weights as a GGUF for llama.cpp ...")
            f32 = str(Path(tmp) / "model-f32.gguf")
            run_measured(write_gguf, f32)
            drift, _, _ = run_measured(gguf_matches_model, f32)
            notes.append(f"GGUF read back through our loader: max |Δweight| vs the model = {drift:.1e}.")
            for kind in ("Q8_0", "F16"):
                llama_files[kind] = str(Path(tmp) / f"model-{kind}.gguf")
                run_measured(quantize_gguf, f32, llama_files[kind], kind)
                weight_bytes[f"llama.cpp {kind}"] = Path(llama_files[kind]).stat().st_size

        bandwidth, _, _ = run_measured(read_bandwidth, args.threads)
        jobs = [  # file, label, engine, use the windowed signatures (step_<W>, fill_<N>_<W>)
            (files["int8"], "edge-models int8", "compiled", True),
            (files["int4-block32"], "edge-models int4-block32", "compiled", True),
            (files["int8"], WITHOUT_WINDOWS, "compiled", False),
            (files["int8"], "naive loop int8 (signature runner, decode)", "interpreter", False),
        ]
        contenders = [
            (label, bench_one, (path, label, args.decode_tokens, args.threads, engine, windows))
            for path, label, engine, windows in jobs
        ]
        contenders.append(("PyTorch eager", bench_eager, (args.decode_tokens, args.threads)))
        contenders += [
            (f"llama.cpp {kind}", bench_llama_cpp, (path, f"llama.cpp {kind}", args.decode_tokens, args.threads))
            for kind, path in llama_files.items()
        ]
        # Every contender once per round, rounds one after another: this machine's speed drifts by 10-30 % over
        # minutes, so each contender keeps its best round and all of them saw the same stretches of time.
        best: dict[str, BenchRow] = {}
        for round_ in range(1, args.rounds + 1):
            for label, fn, fn_args in contenders:
                say(f"round {round_}/{args.rounds}: benchmarking {label} ...")
                row = run_measured(fn, *fn_args)[0]
                best[label] = best[label].best_with(row) if label in best else row
        rows = list(best.values())

    baseline = next((r for r in rows if r.label == "llama.cpp Q8_0"), rows[-1])
    # Slots each decode step reads: step_<W> reads W, `decode` all KV, llama.cpp the filled ones (half the run on
    # average).
    window = min(w for w in ExportSettings().decode_windows if w > args.decode_tokens)
    bounds = {
        "edge-models int8": bytes_per_decode_step(weight_bytes["int8"], window),
        "edge-models int4-block32": bytes_per_decode_step(weight_bytes["int4-block32"], window),
        WITHOUT_WINDOWS: bytes_per_decode_step(weight_bytes["int8"], KV),
    }
    for kind in llama_files:
        bounds[f"llama.cpp {kind}"] = bytes_per_decode_step(weight_bytes[f"llama.cpp {kind}"], args.decode_tokens // 2)
    lines = [
        "| | decode tok/s | bandwidth bound tok/s | fraction of the bound |",
        "|---|---|---|---|",
    ]
    for r in rows:
        if r.label in bounds:
            bound = bandwidth / bounds[r.label]
            lines.append(f"| {r.label} | {r.decode_tok_s:.1f} | {bound:.1f} | {r.decode_tok_s / bound:.0%} |")
    report = f"""# Decode and prefill speed, ~135M Llama shape (SmolLM-135M's), same random weights everywhere

Command: `python benchmarks/bench_speed.py --threads {args.threads} --decode-tokens {args.decode_tokens} \
--rounds {args.rounds}`

{platform.machine()}, {args.threads} threads. Prefill {"/".join(map(str, PREFILL))} tokens from an empty cache
(best of 3), {args.decode_tokens} decode steps from position 0; every contender ran {args.rounds} times,
interleaved with the others, and keeps its best run; .tflite files have KV cache {KV}. Speed-up column:
decode against {baseline.label}.

{format_table(rows, baseline)}

Measured read bandwidth (numpy sums over 1 GiB, {args.threads} threads): {bandwidth / 1e9:.1f} GB/s.
Bound = bandwidth / (weight bytes + K and V bytes attended per step: {window} slots through `step_{window}`, all {KV}
through `decode`, the filled ones for llama.cpp).

{chr(10).join(lines)}

{chr(10).join(notes)}
"""
    print(report)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
