"""Fill an Encoder from a checkpoint through an EncoderTensorNames map, strictly (`loader.name_map`)."""

from __future__ import annotations

from pathlib import Path

from edge_models.config import EncoderConfig
from edge_models.layers.encoder import Encoder
from edge_models.loader.name_map import NameMap, load_by_map
from edge_models.loader.sources import TensorSource, open_checkpoint
from edge_models.tensor_names import ENCODER_LAYER_SLOTS, ENCODER_SLOTS, EncoderTensorNames

# Tensors BERT checkpoints carry that an embedding model does not use: the next-sentence pooler, the masked-LM and
# classification heads, and the position-id buffer older exporters saved.
_UNUSED = ("pooler.", "cls.", "classifier.", "embeddings.position_ids")


def encoder_name_map(names: EncoderTensorNames) -> NameMap:
    out = {ours: getattr(names, field) for ours, field in ENCODER_SLOTS.items()}
    out.update({f"layers.{{}}.{slot}": getattr(names, field) for slot, field in ENCODER_LAYER_SLOTS.items()})
    return out


def load_encoder(config: EncoderConfig, checkpoint: str | Path | TensorSource, names: EncoderTensorNames) -> Encoder:
    """The encoder with every weight from `checkpoint`; every missing, misshapen or unknown tensor is listed in one
    error before anything is copied."""
    source = checkpoint if hasattr(checkpoint, "get") else open_checkpoint(checkpoint)
    prefix = names.word_embeddings.removesuffix("embeddings.word_embeddings")
    # A task model's heads sit beside its `bert.` prefix, the encoder's own buffers under it.
    unused = tuple(dict.fromkeys(p + u for p in ("", prefix) for u in _UNUSED))
    return load_by_map(Encoder(config), source, encoder_name_map(names), unused)
