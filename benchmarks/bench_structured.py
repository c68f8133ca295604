"""Structured output on a real model: validity, greedy identity and decode speed under a constraint.

    python benchmarks/bench_structured.py [--model-file /tmp/demo_art/gemma3-270m/model.task] [--max-tokens 128]

Every constraint of benchmarks/data/structured/cases.json (JSON schemas, any JSON object, regexes, a Lark grammar)
with every prompt there, in the chat template: greedy, greedy with drafts, and sampled (T=0.8 top-k 40 top-p 0.95), each
output checked by edge_models.testing.constraint_violations (json.loads plus the schema's keywords, re.fullmatch,
lark's own parser) — not by the engine that enforced it. Where the unconstrained greedy text already satisfies a
constraint, the constrained greedy text must be the same.

Speed: the JSON-schema cases decoded plainly (no drafts, so every step is one model call) without and with the
schema, alternated `--repeats` times on the same prompts; tokens/s = decode steps / decode time, as `generate`
prints it. The same for sampling, where the mask is computed at every step.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES_DIR = HERE / "data" / "structured"
OUT = HERE / "results" / "structured_gemma3_270m.md"


def constraint_of(case: dict):
    from edge_models.runtime import Constraint

    if "json_schema" in case:
        return Constraint.json_schema(CASES_DIR / case["json_schema"])
    if "regex" in case:
        return Constraint.regex(case["regex"])
    if "grammar" in case:
        return Constraint.lark(CASES_DIR / case["grammar"])
    return Constraint.any_json()


def generate(gen, prompt, max_tokens, sampler=None, constraint=None, speculate=None):
    ids = gen.encode(prompt, chat=True)
    out = list(gen.generate_ids(ids, max_tokens, sampler, speculate=speculate, constraint=constraint))
    return gen.tokenizer.decode(out), gen.last_stats


def validity(gen, cases, max_tokens) -> tuple[list[str], list[str]]:
    from edge_models.runtime import SamplerConfig
    from edge_models.testing import constraint_violations

    # Greedy identity is checked without drafts: int8 batched and one-token kernels may round a near-tie apart.
    samplers = {
        "greedy": SamplerConfig(),
        "greedy, drafts": SamplerConfig(),
        "T=0.8": SamplerConfig(temperature=0.8, top_k=40, top_p=0.95, seed=1),
    }
    free = {p: generate(gen, p, max_tokens, speculate=False)[0] for p in cases["prompts"]}
    rows, failures, identical, comparable = [], [], 0, 0
    for case in cases["constraints"]:
        constraint = constraint_of(case)
        valid = total = cut = 0
        for prompt in cases["prompts"]:
            for name, sampler in samplers.items():
                text, stats = generate(gen, prompt, max_tokens, sampler, constraint, speculate=name != "greedy")
                problems = constraint_violations(case, text, CASES_DIR)
                total += 1
                if not stats.constraint_met:
                    cut += 1  # max tokens first: reported as incomplete (`generate` exits 1), never as valid
                elif problems:
                    failures.append(f"{case['name']} / {name} / {prompt[:40]!r} ({stats.stop_reason}): {problems}")
                else:
                    valid += 1
                if name == "greedy" and not constraint_violations(case, free[prompt], CASES_DIR):
                    comparable += 1
                    identical += text == free[prompt]
                    if text != free[prompt]:
                        failures.append(f"{case['name']}: greedy changed {free[prompt]!r} into {text!r}")
                if name == "greedy" and prompt == cases["prompts"][0]:
                    example = text
        rows.append(f"| {case['name']} | {valid}/{total - cut} | {cut} | `{json.dumps(example)[:80]}` |")
    rows.append(
        f"\nGreedy texts the constraint already allowed: {comparable}, unchanged under it: {identical}."
        if comparable
        else "\nNo unconstrained greedy text satisfied a constraint, so greedy identity was not exercised here."
    )
    return rows, failures


def speed(gen, cases, max_tokens, repeats) -> list[str]:
    from edge_models.runtime import SamplerConfig

    json_cases = [c for c in cases["constraints"] if "json_schema" in c]
    prompts = [p for p in cases["prompts"] if "JSON" in p]
    rows = []
    for label, sampler in (("greedy", None), ("sampled T=0.8", SamplerConfig(temperature=0.8, top_k=40, seed=1))):
        totals = {"none": [0, 0.0], "schema": [0, 0.0]}
        for _ in range(repeats):
            for case in json_cases:
                for prompt in prompts:
                    for key, constraint in (("none", None), ("schema", constraint_of(case))):
                        _, stats = generate(gen, prompt, max_tokens, sampler, constraint, speculate=False)
                        totals[key][0] += max(stats.generated_tokens - 1, 0)
                        totals[key][1] += stats.decode_s
        free, constrained = (totals[k][0] / totals[k][1] for k in ("none", "schema"))
        rows.append(
            f"| {label} | {free:.1f} ({totals['none'][0]} steps) | {constrained:.1f} ({totals['schema'][0]} steps) "
            f"| {constrained / free:.3f}× |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-file", default="/tmp/demo_art/gemma3-270m/model.task")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    from edge_models.runtime import Constraint, Generator, SamplerConfig

    cases = json.loads((CASES_DIR / "cases.json").read_text())
    gen = Generator.open(args.model_file, threads=args.threads)
    started = time.perf_counter()
    gen.guide(Constraint.any_json())  # builds the engine's token table, once per tokenizer
    table_s = time.perf_counter() - started
    list(gen.generate_ids(gen.encode("Hello"), 8, SamplerConfig()))  # warm-up
    validity_rows, failures = validity(gen, cases, args.max_tokens)
    speed_rows = speed(gen, cases, min(args.max_tokens, 96), args.repeats)
    import llguidance

    lines = [
        f"# Structured output: {Path(args.model_file).name}",
        "",
        f"`python benchmarks/bench_structured.py --model-file {args.model_file}` on {platform.processor() or 'cpu'}"
        f" ({platform.machine()}), llguidance {llguidance.__version__}; the engine's token table for "
        f"{gen.model.vocab_size} tokens built once in {table_s:.1f} s.",
        "",
        "| constraint | valid / ended (5 prompts × greedy, drafts, T=0.8) | cut by max tokens | greedy, 1st prompt |",
        "|---|---|---|---|",
        *validity_rows,
        "",
        "Decode tokens/s, plain decoding (no drafts), the JSON-schema cases and JSON prompts, alternated "
        f"{args.repeats}×:",
        "",
        "| sampler | unconstrained | with the schema | ratio |",
        "|---|---|---|---|",
        *speed_rows,
    ]
    if failures:
        lines += ["", "Failures:", *[f"- {f}" for f in failures]]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
