"""Tiny random reference checkpoints for tests, `verify --tiny` and plugin authors' own tests.

Needs `transformers` (the `edge-models[verify]` extra).
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import torch


def build_reference(hf_config: dict, reference_class: str, seed: int = 0, noise: float = 0.05):
    """A transformers model with random weights. Every parameter is perturbed, norms included,
    so that a wrong tensor mapping cannot go unnoticed."""
    import transformers

    fields = {k: v for k, v in hf_config.items() if k not in ("architectures", "model_type")}
    config = transformers.AutoConfig.for_model(hf_config["model_type"], **fields)
    config.architectures = list(hf_config.get("architectures", [reference_class]))
    torch.manual_seed(seed)
    cls = getattr(transformers, reference_class)
    model = cls._from_config(config, attn_implementation="eager", dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * noise)
    return model.eval()


def save_reference(model, directory: str | Path, **save_kwargs) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, **save_kwargs)
    return directory


def tiny_checkpoint(spec, directory: str | Path, seed: int = 0) -> Path:
    """Save a random reference model of `spec`'s tiny config in the HF layout."""
    return save_reference(build_reference(spec.tiny_hf_config, spec.reference_class, seed), directory)


# A tiny SentencePiece model trained on made-up text, so tests need no download.
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
