"""Does our `.task` generate in the LiteRT-LM engine exactly what our own runtime generates? (greedy, several prompts)

    python benchmarks/litert_lm_conformance.py [--task artifacts/gemma3-270m/model.task] [--max-tokens 64]
        [--prompt TEXT ...] [--out FILE]

LiteRT-LM (`pip install litert-lm-api`, the engine behind MediaPipe LLM Inference) loads the bundle, adds the
bundle's start token, prefills and decodes with top-k 1; our `Generator` opens the same file and decodes with
temperature 0. Both stop at the bundle's stop tokens or after --max-tokens. Prints a markdown report and writes it.
"""

from __future__ import annotations

import argparse
import platform
from importlib import metadata
from pathlib import Path

from edge_models.tools.demo import GENERATE_PROMPT, VERIFY_PROMPTS, litert_lm_greedy, runtime_greedy
from edge_models.tools.measured import run_measured

OUT = Path(__file__).resolve().parent / "results" / "litert_lm_conformance_gemma3_270m.md"


def first_difference(a: str, b: str) -> int | None:
    if a == b:
        return None
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="artifacts/gemma3-270m/model.task")
    parser.add_argument("--prompt", action="append", help="repeatable; default: the demo's six prompts")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    chosen = args.prompt or [GENERATE_PROMPT, *VERIFY_PROMPTS]

    # Separate processes: neither engine's memory or threads affect the other.
    engine, _, engine_s = run_measured(litert_lm_greedy, args.task, chosen, args.max_tokens, args.threads)
    if engine is None:
        raise SystemExit("needs `pip install litert-lm-api`")
    ours, _, ours_s = run_measured(runtime_greedy, args.task, chosen, args.max_tokens, args.threads)
    rows, details, same = [], [], 0
    for prompt, theirs, mine in zip(chosen, engine, ours):
        diff = first_difference(theirs, mine)
        same += diff is None
        verdict = "identical" if diff is None else f"**differs** after {diff} characters"
        rows.append(f"| `{prompt}` | {verdict} |")
        details.append(f"`{prompt}`\n\n```\n{theirs}\n```\n")
        if diff is not None:
            details.append(f"edge-models runtime:\n\n```\n{mine}\n```\n")
    size = Path(args.task).stat().st_size
    report = f"""# LiteRT-LM conformance: `{Path(args.task).name}`

Command: `python benchmarks/litert_lm_conformance.py --task {args.task} --max-tokens {args.max_tokens}`

Bundle: `{args.task}` ({size / 1e6:.1f} MB).
litert-lm-api {metadata.version("litert-lm-api")}, ai-edge-litert {metadata.version("ai-edge-litert")},
{platform.machine()}, {args.threads} threads. Greedy (LiteRT-LM `SamplerConfig(top_k=1)`, ours temperature 0),
no chat template, at most {args.max_tokens} tokens; each engine in its own process, LiteRT-LM {engine_s:.1f} s,
ours {ours_s:.1f} s for all prompts including load.

| prompt | greedy text |
|---|---|
{chr(10).join(rows)}

Result: **{same} / {len(chosen)} identical**.

## Texts (LiteRT-LM's; ours only where it differs)

{chr(10).join(details)}"""
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    return 0 if same == len(chosen) else 1


if __name__ == "__main__":
    raise SystemExit(main())
