"""Speculative decoding: effective decode speed with prompt-lookup drafts against plain decoding, same file, one run.

    python benchmarks/bench_speculative.py [--tflite artifacts/gemma3-270m/model_int8-gptq.tflite]
        [--tokenizer artifacts/gemma3-270m/tokenizer.model] [--model gemma3-270m] [--max-tokens 128]

The file needs verify signatures (`edge-models convert` adds verify_8; `nox -s demo` converts with them). Prompts:
benchmarks/data/speculative_prompts.jsonl, input-grounded tasks (rewrite, summarise, fix code, extract: the answer
copies from the prompt) and free-form continuations. Greedy decoding both ways; the table says whether every output
was identical. Effective decode tokens/s = generated tokens after the first / time after the first token. llama.cpp's
prompt-lookup decoding is not in the table: its tools are not built on this machine (ARCHITECTURE §7 says how).
"""

from __future__ import annotations

import argparse
import json
import platform
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
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tflite", default="artifacts/gemma3-270m/model_int8-gptq.tflite")
    parser.add_argument("--tokenizer", default="artifacts/gemma3-270m/tokenizer.model")
    parser.add_argument("--model", default="gemma3-270m", help="registered model for the start and stop tokens")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    text = table(run(args), args)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
