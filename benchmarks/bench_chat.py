"""Time to first token per chat turn: the KV cache kept across turns vs the whole conversation re-prefilled.

    python benchmarks/bench_chat.py [--bundle artifacts/gemma3-270m/model.litertlm] [--max-tokens 48]

`nox -s demo` writes the default bundle. Both runs are our runtime on the same file, one after the other, with the
same five user turns and greedy decoding, so the replies (and therefore the conversations) are identical; the
table says so. Output: a table on stdout and benchmarks/results/chat_gemma3_270m.md.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

TURNS = [
    "Tell me one fact about the moon.",
    "And one about the sun?",
    "Which of the two is larger?",
    "How far apart are they from the earth?",
    "Summarise our conversation in one sentence.",
]
OUT = Path(__file__).resolve().parent / "results" / "chat_gemma3_270m.md"


def run(bundle: Path, reuse: bool, max_tokens: int, threads: int) -> list[dict]:
    from edge_models.runtime import ChatSession, Generator

    session = ChatSession(Generator.open(bundle, threads=threads), max_tokens=max_tokens, reuse_cache=reuse)
    rows = []
    for text in TURNS:
        reply = "".join(session.send(text))
        s = session.generator.last_stats
        rows.append(
            {
                "prompt": s.prompt_tokens,
                "prefilled": s.prefilled_tokens,
                "ttft_ms": s.time_to_first_token_s * 1000,
                "reply": reply,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=Path("artifacts/gemma3-270m/model.litertlm"))
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if not args.bundle.exists():
        raise SystemExit(f"{args.bundle}: not found (nox -s demo writes it)")
    kept = run(args.bundle, True, args.max_tokens, args.threads)
    fresh = run(args.bundle, False, args.max_tokens, args.threads)
    same = all(a["reply"] == b["reply"] for a, b in zip(kept, fresh))
    lines = [
        f"# Chat: time to first token per turn, {args.bundle.name}",
        "",
        f"Command: `python benchmarks/bench_chat.py --bundle {args.bundle} --max-tokens {args.max_tokens}` "
        f"({platform.processor() or platform.machine()}, {args.threads} threads). Replies identical in both runs: "
        f"{'yes' if same else 'NO'}.",
        "",
        "| turn | prompt tokens | prefilled, cache kept | first token, cache kept | prefilled, re-prefilled | "
        "first token, re-prefilled | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, (a, b) in enumerate(zip(kept, fresh), 1):
        lines.append(
            f"| {i} | {a['prompt']} | {a['prefilled']} | {a['ttft_ms']:.0f} ms | {b['prefilled']} | "
            f"{b['ttft_ms']:.0f} ms | {b['ttft_ms'] / max(a['ttft_ms'], 1e-9):.1f}x |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
