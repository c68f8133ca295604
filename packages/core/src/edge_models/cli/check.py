"""Verbs that check a model against its reference: verify, debug."""

from __future__ import annotations

from pathlib import Path

import click

from edge_models.cli.base import CHECKPOINT, UserError, cli, friendly, logged
from edge_models.io import console


@cli.command()
@click.argument("model")
@click.option("--checkpoint", type=CHECKPOINT, help="HF directory, .gguf file or cached ORG/NAME[@REV]")
@click.option("--tiny", is_flag=True, help="verify on a tiny random checkpoint of MODEL (no download)")
@click.option("--prompt", "prompts", multiple=True, help="prompt text (repeatable); needs a tokenizer")
@click.option("--tokens", "new_tokens", default=32, show_default=True, help="greedy tokens compared per prompt")
@click.option("--atol", default=None, type=float, help="max abs logit difference allowed [1e-4 x logit scale]")
@logged
@friendly
def verify(model, checkpoint, tiny, prompts, new_tokens, atol) -> None:
    """Compare our MODEL with transformers' reference on the same checkpoint."""
    import tempfile

    from edge_models.kinds.decoder_verify import verify_checkpoint
    from edge_models.kinds.encoder import find_encoder
    from edge_models.kinds.seq2seq import find_seq2seq

    seq2seq = find_seq2seq(model, checkpoint)
    if seq2seq is not None:
        from edge_models.cli.encoders import verify_seq2seq_command

        return verify_seq2seq_command(seq2seq, checkpoint, tiny, new_tokens, atol)
    encoder = find_encoder(model, checkpoint)
    if encoder is not None:
        from edge_models.cli.encoders import verify_encoder_command

        return verify_encoder_command(encoder, checkpoint, tiny, atol)
    if tiny == (checkpoint is not None):
        raise UserError("give exactly one of --checkpoint PATH and --tiny")
    with tempfile.TemporaryDirectory() as tmp:
        if tiny:
            from edge_models.plugins import registry
            from edge_models.testing import tiny_checkpoint

            checkpoint = tiny_checkpoint(registry().get(model), Path(tmp) / model)
        report = verify_checkpoint(model, checkpoint, prompts=list(prompts), new_tokens=new_tokens, atol=atol)
    console.out(report.table())
    if not report.passed:
        raise SystemExit(1)


DEBUG_PROMPT = "The river carried the boat past three villages before the sun went down."


@cli.command()
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option("--checkpoint", type=CHECKPOINT, required=True, help="the fp32 reference")
@click.option("--model", "model_name", default="auto", show_default=True, help="registered model name, or auto")
@click.option("--prompt", default=DEBUG_PROMPT, show_default=True, help="text run through both")
@click.option("--tokenizer", type=click.Path(exists=True, path_type=Path), help="[beside the checkpoint]")
@logged
@friendly
def debug(file, checkpoint, model_name, prompt, tokenizer) -> None:
    """Per decoder block: how far FILE's hidden state is from the PyTorch model on CHECKPOINT."""
    from edge_models.tools.debug import format_report

    console.out(format_report(debug_rows(file, checkpoint, model_name, prompt, tokenizer)))


def debug_rows(file: Path, checkpoint: Path, model_name: str, prompt: str, tokenizer: Path | None) -> list:
    """`debug`'s comparison (`tools.debug.compare_blocks`) on `prompt` tokenized as the checkpoint's tokenizer does."""
    from edge_models.convert.pipeline import checkpoint_tokenizer
    from edge_models.kinds.decoder import load_for_spec, resolve_spec
    from edge_models.tools.debug import compare_blocks

    spec = resolve_spec(model_name, checkpoint)
    tok, start_token = checkpoint_tokenizer(checkpoint, tokenizer, "debug prompts", spec)
    start = tok.piece_to_id(start_token) if start_token else None
    tokens = ([] if start is None else [start]) + tok.encode(prompt)
    model = load_for_spec(spec, checkpoint).eval()
    console.out(f"{file.name} vs {spec.name} fp32 on {len(tokens)} tokens")
    return compare_blocks(file, model, tokens)
