"""Speed and memory of a converted model (and of PyTorch eager on the same shape), as table rows."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class BenchRow:
    label: str
    size_bytes: int | None
    prefill_tok_s: dict[int, float] = field(default_factory=dict)
    decode_tok_s: float = 0.0
    first_token_ms: float = 0.0
    peak_rss_bytes: int = 0


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _best_of(repeats: int, fn) -> float:
    fn()  # warm-up: first calls allocate and pack weights
    return min(_timed(fn) for _ in range(repeats))


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_tflite(path: str | Path, decode_tokens: int = 64, threads: int | None = None, repeats: int = 3) -> BenchRow:
    from edge_models.runtime import LiteRTModel

    path = Path(path)
    if path.suffix == ".task":
        from edge_models.task_format import read_task

        model = LiteRTModel(read_task(path).tflite, threads)
    else:
        model = LiteRTModel(path, threads)
    row = BenchRow(f"edge-models {path.name}", path.stat().st_size)
    rng = np.random.default_rng(0)
    for length in sorted(model.info.prefill_lengths.values()):
        ids = rng.integers(0, model.vocab_size, length).tolist()
        row.prefill_tok_s[length] = length / _best_of(repeats, lambda ids=ids: model.prefill(ids, 0))
    steps = min(decode_tokens, model.kv_len - 1)

    def decode_run():
        for pos in range(steps):
            model.decode(1, pos)

    row.decode_tok_s = steps / _best_of(1, decode_run)
    smallest = min(model.info.prefill_lengths.values())
    ids = rng.integers(0, model.vocab_size, smallest).tolist()

    def first_token():
        model.prefill(ids[:-1], 0)
        model.decode(ids[-1], smallest - 1)

    row.first_token_ms = 1000 * _best_of(repeats, first_token)
    row.peak_rss_bytes = _peak_rss()
    return row


def bench_torch(
    model_name: str,
    checkpoint: str | Path | None,
    like: BenchRow,
    decode_tokens: int = 64,
    threads: int | None = None,
    repeats: int = 3,
    tiny: bool = False,
) -> BenchRow:
    """PyTorch eager fp32 on the same shape and lengths (random weights when no checkpoint)."""
    import torch

    from edge_models.models import load_for_spec, random_model
    from edge_models.plugins import registry

    if threads:
        torch.set_num_threads(threads)
    spec = registry().get(model_name)
    model = load_for_spec(spec, checkpoint) if checkpoint else random_model(spec.tiny_config if tiny else spec.config)
    kv = max(like.prefill_tok_s or {0: 0}) + decode_tokens + 1
    row = BenchRow(f"pytorch eager fp32 {model_name}", None)
    vocab = model.config.vocab_size
    with torch.no_grad():
        for length in like.prefill_tok_s:
            ids = torch.randint(0, vocab, (1, length))
            cache = model.empty_cache(kv)
            row.prefill_tok_s[length] = length / _best_of(
                repeats, lambda ids=ids, c=cache: model(ids, torch.arange(ids.shape[1]), c)
            )

        def decode_run():
            cache = model.empty_cache(kv)
            for pos in range(decode_tokens):
                _, cache = model(torch.tensor([[1]]), torch.tensor([pos]), cache)

        row.decode_tok_s = decode_tokens / _best_of(1, decode_run)
        smallest = min(like.prefill_tok_s) if like.prefill_tok_s else 8
        ids = torch.randint(0, vocab, (1, smallest))
        row.first_token_ms = 1000 * _best_of(repeats, lambda: model(ids, torch.arange(smallest), model.empty_cache(kv)))
    row.peak_rss_bytes = _peak_rss()
    return row


def format_table(rows: list[BenchRow]) -> str:
    lengths = sorted({n for r in rows for n in r.prefill_tok_s})
    head = ["", "size MB", *[f"prefill {n} tok/s" for n in lengths], "decode tok/s", "first token ms", "peak RSS GiB"]
    lines = [head]
    for r in rows:
        lines.append(
            [
                r.label,
                f"{r.size_bytes / 1e6:.1f}" if r.size_bytes else "-",
                *[f"{r.prefill_tok_s[n]:.1f}" if n in r.prefill_tok_s else "-" for n in lengths],
                f"{r.decode_tok_s:.1f}",
                f"{r.first_token_ms:.0f}",
                f"{r.peak_rss_bytes / 2**30:.2f}",
            ]
        )
    if len(rows) > 1 and rows[1].decode_tok_s:
        lines.append(
            [
                "ratio first/second",
                "",
                *[
                    f"{rows[0].prefill_tok_s[n] / rows[1].prefill_tok_s[n]:.2f}x"
                    if n in rows[0].prefill_tok_s and n in rows[1].prefill_tok_s
                    else "-"
                    for n in lengths
                ],
                f"{rows[0].decode_tok_s / rows[1].decode_tok_s:.2f}x",
                "",
                "",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)
