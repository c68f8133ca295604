"""Does our `.task` generate in the LiteRT-LM engine exactly what our own runtime generates? (greedy, one prompt)

    python benchmarks/litert_lm_conformance.py [--task artifacts/gemma3-270m/model.task] [--max-tokens 64]

LiteRT-LM (`pip install litert-lm-api`, the engine behind MediaPipe LLM Inference) loads the bundle, adds the
bundle's start token, prefills and decodes with top-k 1; our `Generator` opens the same file and decodes with
temperature 0. Both stop at the bundle's stop tokens or after --max-tokens. Prints a markdown report and writes it.
"""

from __future__ import annotations

import argparse
import platform
from importlib import metadata
from pathlib import Path

from edge_models.bench import run_measured

PROMPT = "The most important thing to know about the ocean is"
OUT = Path(__file__).resolve().parent / "results" / "litert_lm_conformance_gemma3_270m.md"


def engine_text(task: str, prompt: str, max_tokens: int, threads: int) -> dict:
    import litert_lm

    engine = litert_lm.Engine(task, backend=litert_lm.Backend.CPU(thread_count=threads), enable_benchmark=True)
    try:
        session = engine.create_session(
            apply_prompt_template=False,
            sampler_config=litert_lm.SamplerConfig(top_k=1),
            max_output_tokens=max_tokens,
        )
        session.run_prefill([prompt])
        text = session.run_decode().texts[0]
        info = session.get_benchmark_info()
        session.close()
    finally:
        engine.close()
    return {
        "text": text,
        "prefill_tokens": info.last_prefill_token_count,
        "decode_tokens": info.last_decode_token_count,
    }


def runtime_text(task: str, prompt: str, max_tokens: int, threads: int) -> dict:
    from edge_models.runtime import Generator, SamplerConfig

    gen = Generator.open(task, threads=threads)
    ids = gen.encode(prompt)
    generated = list(gen.generate_ids(ids, max_tokens, SamplerConfig(temperature=0.0)))
    return {
        "text": gen.tokenizer.decode(generated),
        "prompt_tokens": len(ids),
        "ids": generated,
        "stop_reason": gen.last_stats.stop_reason,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="artifacts/gemma3-270m/model.task")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    # Separate processes: neither engine's memory or threads affect the other.
    engine, _, engine_s = run_measured(engine_text, args.task, args.prompt, args.max_tokens, args.threads)
    ours, _, ours_s = run_measured(runtime_text, args.task, args.prompt, args.max_tokens, args.threads)
    same = engine["text"] == ours["text"]
    if not same:
        common = next(
            (i for i, (a, b) in enumerate(zip(engine["text"], ours["text"])) if a != b),
            min(len(engine["text"]), len(ours["text"])),
        )
        verdict = f"**DIFFERENT** (texts agree on their first {common} characters)"
    else:
        verdict = "**IDENTICAL**"
    size = Path(args.task).stat().st_size
    report = f"""# LiteRT-LM conformance: Gemma 3 270M `.task`

Command: `python benchmarks/litert_lm_conformance.py --task {args.task} --max-tokens {args.max_tokens}`

Bundle: `{args.task}` ({size / 1e6:.1f} MB).
litert-lm-api {metadata.version("litert-lm-api")}, ai-edge-litert {metadata.version("ai-edge-litert")},
{platform.machine()}, {args.threads} threads.

Prompt: `{args.prompt}` (no chat template); greedy (LiteRT-LM `SamplerConfig(top_k=1)`, ours temperature 0);
at most {args.max_tokens} tokens.

| | tokens in | tokens out | seconds (incl. load) |
|---|---|---|---|
| LiteRT-LM `Engine` | {engine["prefill_tokens"]} | {engine["decode_tokens"]} | {engine_s:.1f} |
| edge-models `Generator` | {ours["prompt_tokens"]} | {len(ours["ids"])} ({ours["stop_reason"]}) | {ours_s:.1f} |

Result: {verdict}.

LiteRT-LM:

```
{engine["text"]}
```

edge-models runtime:

```
{ours["text"]}
```
"""
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
