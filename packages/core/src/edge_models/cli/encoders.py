"""Encoders and encoder-decoders on the command line: `embed`, and what `verify` and `generate` do when MODEL or
FILE is one (`convert` goes through `convert.pipeline` for every kind)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click

from edge_models.cli.base import UserError, cli, friendly, logged
from edge_models.io import console


def verify_seq2seq_command(spec, checkpoint: Path | None, tiny: bool, new_tokens: int, atol: float | None) -> None:
    from edge_models.kinds.seq2seq import verify_seq2seq

    if tiny == (checkpoint is not None):
        raise UserError("give exactly one of --checkpoint PATH and --tiny")
    with tempfile.TemporaryDirectory() as tmp:
        if tiny:
            from edge_models.testing import tiny_checkpoint

            checkpoint = tiny_checkpoint(spec, Path(tmp) / spec.name)
        report = verify_seq2seq(spec, checkpoint, new_tokens, atol=1e-4 if atol is None else atol)
    console.out(report.table())
    if not report.passed:
        raise SystemExit(1)


def generate_seq2seq_command(file: Path, tokenizer: Path | None, prompt: str, max_tokens: int, stop_tokens, sampler):
    """encode-then-decode with the file's tokenizer; T5's conventions: decoding starts at <pad>, ends at </s>."""
    import time

    from edge_models.runtime import TokenizerError, load_tokenizer
    from edge_models.runtime.seq2seq import Seq2SeqModel, generate_ids

    if tokenizer is None:
        found = [file.parent / n for n in ("tokenizer.json", "spiece.model") if (file.parent / n).is_file()]
        if not found:
            raise TokenizerError(f"{file}: give --tokenizer (no tokenizer.json or spiece.model beside it)")
        tokenizer = found[0]
    tok = load_tokenizer(tokenizer)
    stops = {tok.piece_to_id(t) for t in ("</s>", *stop_tokens)} - {None}
    if not stops:
        raise TokenizerError(f"{tokenizer} has no </s>; give --stop-token")
    start = tok.piece_to_id("<pad>")
    model = Seq2SeqModel(file)
    ids = tok.encode(prompt) + sorted(stops)[:1]
    started = time.perf_counter()
    produced: list[int] = []
    emitted = ""
    for token in generate_ids(model, ids, max_tokens, 0 if start is None else start, stops, sampler):
        produced.append(token)
        text = tok.decode(produced)
        if not text.endswith("\ufffd") and text.startswith(emitted):
            console.out(text[len(emitted) :], end="")
            emitted = text
    console.out()
    seconds = time.perf_counter() - started
    console.err(f"[{len(ids)} input tokens, {len(produced)} generated in {seconds:.2f} s]")


def verify_encoder_command(spec, checkpoint: Path | None, tiny: bool, atol: float | None) -> None:
    from edge_models.kinds.encoder import verify_encoder

    if tiny == (checkpoint is not None):
        raise UserError("give exactly one of --checkpoint PATH and --tiny")
    with tempfile.TemporaryDirectory() as tmp:
        if tiny:
            from edge_models.testing import tiny_checkpoint

            checkpoint = tiny_checkpoint(spec, Path(tmp) / spec.name)
        report = verify_encoder(spec, checkpoint, atol=1e-5 if atol is None else atol)
    console.out(report.table())
    if not report.passed:
        raise SystemExit(1)


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--text", "texts", multiple=True, required=True, help="text to embed (repeatable)")
@click.option("--tokenizer", type=click.Path(exists=True, path_type=Path), help="tokenizer.json [beside FILE]")
@click.option("--json", "as_json", is_flag=True, help="print {text, embedding} records as JSON")
@click.option("--threads", default=None, type=int)
@logged
@friendly
def embed(file, texts, tokenizer, as_json, threads) -> None:
    """Embed each --text with a converted encoder; with several texts, print their cosine-similarity matrix."""
    from edge_models.runtime.embedder import Embedder, cosine_matrix

    embedder = Embedder(file, tokenizer, threads)
    vectors = embedder.embed(list(texts))
    if as_json:
        records = [{"text": t, "embedding": [round(float(x), 7) for x in v]} for t, v in zip(texts, vectors)]
        console.out(json.dumps(records))
        return
    if len(texts) == 1:
        v = vectors[0]
        shown = ", ".join(f"{x:.4f}" for x in v[:8])
        console.out(f"{len(v)} dimensions, norm {float((v * v).sum()) ** 0.5:.4f}: [{shown}, ...] (--json for all)")
        return
    sims = cosine_matrix(vectors)
    labels = [t if len(t) <= 40 else t[:37] + "..." for t in texts]
    console.out("cosine similarity")
    for k, label in enumerate(labels):
        console.out(f"  [{k + 1}] {label}")
    console.out("       " + " ".join(f"[{k + 1}]".rjust(6) for k in range(len(texts))))
    for k, row in enumerate(sims):
        console.out(f"  [{k + 1}] " + " ".join(f"{x:6.3f}" for x in row))
