"""`edge-models tokenizer ...`: tokenizer utilities."""

from __future__ import annotations

import click


@click.group("tokenizer")
def tokenizer_group() -> None:
    """Tokenizer utilities (e.g. rebuild a SentencePiece model from a GGUF file)."""
