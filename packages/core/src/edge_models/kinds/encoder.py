"""From an encoder name (or `auto`) and a checkpoint to a loaded Encoder, and the reference it is checked against."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_models.config import EncoderConfig
from edge_models.hf.config import read_config
from edge_models.hf.hub_cache import resolve_checkpoint
from edge_models.plugins import ModelRegistry, UnknownModelError, encoder_registry
from edge_models.spec import EncoderSpec


def checkpoint_directory(checkpoint: str | Path) -> Path:
    path = resolve_checkpoint(checkpoint)
    return path if path.is_dir() else path.parent


def find_spec(reg: ModelRegistry, name: str, checkpoint: str | Path | None):
    """The spec in `reg` that `name` (or `auto` with the checkpoint's architectures) stands for, or None when it
    names none of `reg`'s (a model of another kind, or nothing)."""
    if name != "auto":
        return reg.get(name) if name in reg.names() else None
    if checkpoint is None or not (checkpoint_directory(checkpoint) / "config.json").is_file():
        return None
    architectures = read_config(checkpoint_directory(checkpoint)).get("architectures") or []
    try:
        return reg.for_architecture(architectures)
    except UnknownModelError:
        return None


def find_encoder(
    name: str, checkpoint: str | Path | None = None, reg: ModelRegistry | None = None
) -> EncoderSpec | None:
    return find_spec(reg or encoder_registry(), name, checkpoint)


def encoder_config(spec: EncoderSpec, checkpoint: str | Path | None) -> EncoderConfig:
    """config.json and the sentence-transformers pooling beside the checkpoint; the spec's default without one."""
    if checkpoint is None:
        return spec.config
    from edge_models.hf.pooling import read_pooling

    directory = checkpoint_directory(checkpoint)
    config = spec.config_from_hf(read_config(directory)) if (directory / "config.json").is_file() else spec.config
    return config.replace(pooling=read_pooling(directory))


def load_encoder_for_spec(spec: EncoderSpec, checkpoint: str | Path, config: EncoderConfig | None = None):
    from edge_models.loader import open_checkpoint
    from edge_models.loader.encoder import load_encoder

    source = open_checkpoint(checkpoint)
    names = spec.tensor_names
    available = set(source.names())
    # A checkpoint saved from a task model (BertForSequenceClassification, ...) nests the encoder one level down.
    if f"{names.word_embeddings}.weight" not in available:
        for prefix in ("bert.", "model.", "encoder."):
            if f"{prefix}{names.word_embeddings}.weight" in available:
                names = names.with_prefix(prefix)
                break
    return load_encoder(config or encoder_config(spec, checkpoint), source, names)


def random_encoder(config: EncoderConfig, seed: int = 0, std: float = 0.05):
    """An encoder with random weights, for smoke tests and `--tiny` conversions."""
    from edge_models.kinds.decoder import randomized
    from edge_models.layers.encoder import Encoder

    return randomized(lambda: Encoder(config), seed, std)


def reference_embeddings(spec: EncoderSpec, checkpoint: str | Path, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`transformers`' model on the same weights, its last hidden state pooled as the checkpoint says (written
    here from the sentence-transformers definitions, independently of our Pooling module)."""
    import torch
    import transformers

    cls = getattr(transformers, spec.reference_class)
    kwargs = dict(dtype=torch.float32, local_files_only=True, attn_implementation="eager")
    model = cls.from_pretrained(str(checkpoint_directory(checkpoint)), **kwargs).eval()
    pooling = encoder_config(spec, checkpoint).pooling
    with torch.no_grad():
        states = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
    m = mask[..., None].astype(np.float32)
    if pooling.mode == "mean":
        pooled = (states * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    elif pooling.mode == "cls":
        pooled = states[:, 0]
    else:
        pooled = np.where(m > 0, states, -np.inf).max(1)
    if pooling.normalize:
        pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
    return pooled.astype(np.float32)


VERIFY_SENTENCES = (
    "A man is eating food.",
    "The new movie is awesome, and the theatre was full on its first night.",
    "Two dogs chase a ball across a wet field",
    "How do I reset my password?",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "ok",
)


@dataclass(frozen=True)
class EncoderReport:
    model: str
    rows: list[tuple[str, int, float]]  # (label, tokens, max |ours - reference|)
    tolerance: float

    @property
    def passed(self) -> bool:
        return all(diff <= self.tolerance for _, _, diff in self.rows)

    def table(self) -> str:
        lines = [f"{self.model}: pooled embeddings vs transformers (tolerance {self.tolerance:g})"]
        for label, tokens, diff in self.rows:
            mark = "ok" if diff <= self.tolerance else "FAIL"
            lines.append(f"  {mark:4} {tokens:4d} tokens  max |diff| {diff:.2e}  {label}")
        lines.append("PASSED" if self.passed else "FAILED")
        return "\n".join(lines)


def sentence_ids(checkpoint: str | Path, config: EncoderConfig, sentences=VERIFY_SENTENCES) -> list[list[int]]:
    """Token ids of `sentences` with the checkpoint's tokenizer.json, or seeded random ids without one."""
    tokenizer = checkpoint_directory(checkpoint) / "tokenizer.json"
    if tokenizer.is_file():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tokenizer))
        tok.no_padding()
        tok.no_truncation()
        return [tok.encode(s).ids for s in sentences]
    rng = np.random.default_rng(0)
    return [rng.integers(1, config.vocab_size, 4 + 5 * k).tolist() for k in range(len(sentences))]


def verify_encoder(spec: EncoderSpec, checkpoint: str | Path, atol: float = 1e-5) -> EncoderReport:
    """Our encoder against `transformers` on the same weights: each sentence alone, then all of them as one
    padded batch (padding must not move any embedding)."""
    import torch

    model = load_encoder_for_spec(spec, checkpoint)
    ids = sentence_ids(checkpoint, model.config)
    width = max(map(len, ids))
    batch = np.full((len(ids), width), model.config.pad_token_id, np.int64)
    mask = np.zeros_like(batch)
    for k, row in enumerate(ids):
        batch[k, : len(row)] = row
        mask[k, : len(row)] = 1
    reference = reference_embeddings(spec, checkpoint, batch, mask)
    rows = []
    with torch.no_grad():
        padded = model.embed(torch.tensor(batch), torch.tensor(mask)).numpy()
        for k, row in enumerate(ids):
            alone = model.embed(torch.tensor([row]), torch.ones(1, len(row), dtype=torch.long)).numpy()[0]
            label = VERIFY_SENTENCES[k] if (checkpoint_directory(checkpoint) / "tokenizer.json").is_file() else "ids"
            rows.append((label[:48], len(row), float(np.abs(alone - reference[k]).max())))
    rows.append(("all, one padded batch", width, float(np.abs(padded - reference).max())))
    return EncoderReport(spec.name, rows, atol)
