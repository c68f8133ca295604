"""A tiny SentencePiece model trained on made-up text, so tests need no download."""

from __future__ import annotations

import io
import random
from pathlib import Path

SPECIALS = ["<start_of_turn>", "<end_of_turn>"]
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "so", "vi", "pe", "du", "ba", "zo", "xe", "fi", "gu", "ha", "jo"]


def corpus(seed: int = 0, lines: int = 2000) -> list[str]:
    rng = random.Random(seed)
    words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))) for _ in range(300)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) + rng.choice(".!?") for _ in range(lines)]


def train_sentencepiece(path: Path, vocab_size: int = 256) -> Path:
    """BPE, identity normalizer (keeps the model a few KB), ids 0-2 = <unk> <s> </s>, then SPECIALS."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type="bpe",
        user_defined_symbols=SPECIALS,
        character_coverage=1.0,
        normalization_rule_name="identity",
        minloglevel=2,
    )
    path.write_bytes(buf.getvalue())
    return path
