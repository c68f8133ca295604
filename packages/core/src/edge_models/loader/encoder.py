"""Fill an Encoder from a checkpoint through an EncoderTensorNames map, strictly."""

from __future__ import annotations

from pathlib import Path

import torch

from edge_models.config import EncoderConfig
from edge_models.layers.encoder import Encoder
from edge_models.loader.errors import CheckpointError
from edge_models.loader.sources import TensorSource, open_checkpoint
from edge_models.tensor_names import ENCODER_LAYER_SLOTS, ENCODER_SLOTS, EncoderTensorNames

# Tensors BERT checkpoints carry that an embedding model does not use: the next-sentence pooler, the masked-LM
# head, and the position-id buffer older exporters saved.
_UNUSED = ("pooler.", "cls.", "classifier.", "embeddings.position_ids")
# Old BERT checkpoints name LayerNorm parameters as TensorFlow did.
_OLD_NORM_NAMES = {"weight": "gamma", "bias": "beta"}


def checkpoint_name(param: str, names: EncoderTensorNames) -> str:
    """The checkpoint tensor our parameter `param` is read from."""
    module, _, kind = param.rpartition(".")
    if module in ENCODER_SLOTS:
        return f"{getattr(names, ENCODER_SLOTS[module])}.{kind}"
    if module.startswith("layers."):
        _, index, slot = module.split(".", 2)
        if slot in ENCODER_LAYER_SLOTS:
            return f"{getattr(names, ENCODER_LAYER_SLOTS[slot]).format(index)}.{kind}"
    raise CheckpointError(f"no EncoderTensorNames entry for parameter {param}")


def load_encoder(config: EncoderConfig, checkpoint: str | Path | TensorSource, names: EncoderTensorNames) -> Encoder:
    """The encoder with every weight from `checkpoint`; every missing, misshapen or unknown tensor is listed in one
    error before anything is copied."""
    source = checkpoint if hasattr(checkpoint, "get") else open_checkpoint(checkpoint)
    model = Encoder(config)
    available = set(source.names())
    problems, picks = [], {}
    for param, tensor in model.state_dict().items():
        name = checkpoint_name(param, names)
        if name not in available:
            module, _, kind = name.rpartition(".")
            old = f"{module}.{_OLD_NORM_NAMES.get(kind, kind)}"
            if old in available:
                name = old
        want = list(tensor.shape)
        if name not in available:
            problems.append(f"missing tensor {name!r} (for {param}, expected shape {want})")
        elif list(source.shape(name)) != want:
            problems.append(f"shape mismatch for {name!r}: expected {want}, found {list(source.shape(name))}")
        picks[param] = name
    used = set(picks.values())
    prefix = names.word_embeddings.removesuffix("embeddings.word_embeddings")
    for name in sorted(available - used):
        if not name.removeprefix(prefix).startswith(_UNUSED):
            problems.append(f"unexpected tensor {name!r} with shape {list(source.shape(name))}")
    if problems:
        listing = "\n  ".join(problems)
        raise CheckpointError(
            f"{source.path}: checkpoint does not match the encoder ({len(problems)} problem(s)):\n  {listing}"
        )
    with torch.no_grad():
        params = dict(model.state_dict(keep_vars=True))
        for param, name in picks.items():
            params[param].copy_(source.get(name).to(torch.float32))
    return model.eval()
