"""Speculative decoding: effective decode speed with prompt-lookup drafts against plain decoding, same file, one run.

    python benchmarks/bench_speculative.py [--tflite artifacts/gemma3-270m/model_int8-gptq.tflite]
        [--tokenizer artifacts/gemma3-270m/tokenizer.model] [--model gemma3-270m] [--max-tokens 128]

The file needs verify signatures (`edge-models convert` adds verify_8; `nox -s demo` converts with them). Prompts:
benchmarks/data/speculative_prompts.jsonl, input-grounded tasks (rewrite, summarise, fix code, extract: the answer
copies from the prompt) and free-form continuations. Greedy decoding both ways; the table says whether every output
was identical. Effective decode tokens/s = generated tokens after the first / time after the first token.

With `--llama-cpp DIR --gguf Q8_0.gguf` (the same weights; `benchmarks/llama_cpp.py` says how to build the tools),
llama.cpp's own prompt-lookup decoding (`llama-lookup`, greedy, up to 7 drafted tokens as ours) runs the same prompts
in the same run, against itself with drafting off; its figure is the "decoded ... t/s" it prints.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "speculative_gemma3_270m.md"


def run(args) -> list[dict]:
    from edge_models.runtime import Generator

    gen = Generator.open(args.tflite, tokenizer=args.tokenizer, model=args.model, threads=args.threads)
    if not gen.model.info.verify:
        raise SystemExit(f"{args.tflite} has no verify signatures: convert with `edge-models convert ... --verify 8`")
    rows = []
    prompts = [json.loads(line) for line in (HERE / "data" / "speculative_prompts.jsonl").read_text().splitlines()]
    for item in prompts:
        ids = gen.encode(item["prompt"])
        list(gen.generate_ids(ids, 8, speculate=False))  # warm-up: first calls pack weights
        result = {"kind": item["kind"], "task": item["task"]}
        outputs = {}
        for mode in ("plain", "speculative"):
            outputs[mode] = list(gen.generate_ids(ids, args.max_tokens, speculate=mode == "speculative"))
            s = gen.last_stats
            result[mode] = s.decode_tokens_per_s
            if mode == "speculative":
                result["accepted"], result["drafted"] = s.accepted_tokens, s.drafted_tokens
            result["tokens"] = s.generated_tokens
        result["identical"] = outputs["plain"] == outputs["speculative"]
        rows.append(result)
    return rows


def llama_lookup(args, prompt: str, drafts: int) -> dict:
    """One llama-lookup run: its decode speed and, with drafts, how many it drafted and accepted."""
    cmd = [
        str(args.llama_cpp / "llama-lookup"),
        "-m", str(args.gguf), "-p", prompt, "-n", str(args.max_tokens), "-t", str(args.threads), "-c", "2048",
        "--temp", "0", "--spec-draft-n-max", str(drafts), "--no-repack",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True)
    text = out.stdout + out.stderr
    speed = re.search(r"decoded\s+(\d+) tokens in\s+([\d.]+) seconds, speed:\s+([\d.]+) t/s", text)
    if out.returncode or not speed:
        raise SystemExit(f"llama-lookup failed (exit {out.returncode}):\n{text[-2000:]}")
    found = {k: re.search(rf"{k}\s+=\s+(\d+)", text) for k in ("n_drafted", "n_accept")}
    return {
        "tokens": int(speed.group(1)),
        "tok_s": float(speed.group(3)),
        **{k: int(m.group(1)) if m else 0 for k, m in found.items()},
    }


def run_llama(args, rows: list[dict]) -> None:
    prompts = [json.loads(line) for line in (HERE / "data" / "speculative_prompts.jsonl").read_text().splitlines()]
    for row, item in zip(rows, prompts):
        plain, lookup = llama_lookup(args, item["prompt"], 0), llama_lookup(args, item["prompt"], 7)
        row["llama"] = {"plain": plain["tok_s"], "lookup": lookup["tok_s"], "tokens": lookup["tokens"],
                        "drafted": lookup["n_drafted"], "accepted": lookup["n_accept"]}  # fmt: skip


def table(rows: list[dict], args) -> str:
    lines = [
        f"# Speculative decoding (prompt lookup), {Path(args.tflite).name}",
        "",
        f"Command: `python benchmarks/bench_speculative.py --tflite {args.tflite} --max-tokens {args.max_tokens}` "
        f"({platform.machine()}, {args.threads} threads, greedy). Outputs identical with and without speculation: "
        f"{sum(r['identical'] for r in rows)}/{len(rows)}.",
        "",
        "| prompt | task | tokens | plain tok/s | speculative tok/s | ratio | drafts accepted |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows, 1):
        accepted = f"{r['accepted']}/{r['drafted']}" if r["drafted"] else "none drafted"
        lines.append(
            f"| {i} | {r['kind']}: {r['task']} | {r['tokens']} | {r['plain']:.1f} | {r['speculative']:.1f} | "
            f"{r['speculative'] / r['plain']:.2f}x | {accepted} |"
        )
    lines.append("")
    for kind in ("grounded", "free"):
        chosen = [r for r in rows if r["kind"] == kind]
        if not chosen:
            continue
        plain = sum(r["tokens"] for r in chosen) / sum(r["tokens"] / r["plain"] for r in chosen)
        spec = sum(r["tokens"] for r in chosen) / sum(r["tokens"] / r["speculative"] for r in chosen)
        lines.append(
            f"- **{kind}**: {plain:.1f} -> {spec:.1f} tokens/s, **{spec / plain:.2f}x** "
            f"(total tokens over total time, {len(chosen)} prompts)"
        )
        if all("llama" in r for r in chosen):
            ll = [r["llama"] for r in chosen]
            lplain = sum(x["tokens"] for x in ll) / sum(x["tokens"] / x["plain"] for x in ll)
            llook = sum(x["tokens"] for x in ll) / sum(x["tokens"] / x["lookup"] for x in ll)
            accepted = sum(x["accepted"] for x in ll)
            drafted = sum(x["drafted"] for x in ll)
            lines.append(
                f"  - llama.cpp `llama-lookup` on {Path(args.gguf).name}: {lplain:.1f} -> {llook:.1f} tokens/s, "
                f"**{llook / lplain:.2f}x**, drafts accepted {accepted}/{drafted}; ours plain vs llama.cpp plain "
                f"{plain / lplain:.2f}x, ours speculative vs llama.cpp lookup {spec / llook:.2f}x"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tflite", default="artifacts/gemma3-270m/model_int8-gptq.tflite")
    parser.add_argument("--tokenizer", default="artifacts/gemma3-270m/tokenizer.model")
    parser.add_argument("--model", default="gemma3-270m", help="registered model for the start and stop tokens")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--llama-cpp", type=Path, help="directory holding llama-lookup, for side-by-side rows")
    parser.add_argument("--gguf", type=Path, help="llama.cpp's file of the same weights (e.g. its Q8_0)")
    args = parser.parse_args()
    rows = run(args)
    if args.llama_cpp and args.gguf:
        run_llama(args, rows)
    text = table(rows, args)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
