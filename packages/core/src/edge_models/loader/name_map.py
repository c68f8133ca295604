"""Fill any module from a checkpoint through a map of module paths: `{our module: checkpoint module}`, where `{}`
stands for a layer index on both sides (e.g. `"decoder_layers.{}.cross_attn.q_proj":
"decoder.block.{}.layer.1.EncDecAttention.q"`). The loader appends `.weight` / `.bias` as our module needs them."""

from __future__ import annotations

import re

import torch
from torch import nn

from edge_models.loader.errors import CheckpointError, Pick, check_picks
from edge_models.loader.sources import TensorSource

NameMap = dict[str, str]
# Old BERT checkpoints name LayerNorm parameters as TensorFlow did.
_OLD_NORM_NAMES = {"weight": "gamma", "bias": "beta"}


def checkpoint_name(param: str, names: NameMap) -> str:
    module, _, kind = param.rpartition(".")
    if module in names:
        return f"{names[module]}.{kind}"
    match = re.search(r"\.(\d+)\.", f".{module}.")
    if match:
        template = f".{module}.".replace(match.group(0), ".{}.", 1).strip(".")
        if template in names:
            return f"{names[template].format(match.group(1))}.{kind}"
    raise CheckpointError(f"no entry in the tensor-name map for parameter {param}")


def load_by_map(model: nn.Module, source: TensorSource, names: NameMap, unused: tuple[str, ...] = ()) -> nn.Module:
    """Copy every parameter of `model` from `source`; every missing, misshapen or unexpected tensor (other than
    those starting with an `unused` prefix) is listed in one error before anything is copied."""
    available = set(source.names())
    picks, shapes = {}, {}
    for param, tensor in model.state_dict().items():
        name = checkpoint_name(param, names)
        module, _, kind = name.rpartition(".")
        if name not in available and f"{module}.{_OLD_NORM_NAMES.get(kind)}" in available:
            name = f"{module}.{_OLD_NORM_NAMES[kind]}"
        picks[param], shapes[param] = Pick(name), tuple(tensor.shape)
    check_picks(source, picks, shapes, ignored=lambda name: name.startswith(unused))
    with torch.no_grad():
        params = model.state_dict(keep_vars=True)
        for param, pick in picks.items():
            params[param].copy_(source.get(pick.name).to(torch.float32))
    return model.eval()
