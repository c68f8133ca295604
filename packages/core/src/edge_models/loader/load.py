"""Fill a Decoder from a checkpoint through a TensorNames map, strictly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from edge_models.config import ModelConfig
from edge_models.layers import Decoder
from edge_models.loader.errors import CheckpointError, Pick, check_picks
from edge_models.loader.sources import TensorSource, open_checkpoint
from edge_models.quantize.row_chunks import RowRanges, is_large
from edge_models.tensor_names import BLOCK_TENSORS, LAYER_SLOTS, MODEL_SLOTS, MODULE_SLOTS, TensorNames

# Buffers some exporters save that carry no weights.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq", ".masked_bias", ".attn.bias")


def plan(model: Decoder, names: TensorNames) -> dict[str, Pick]:
    """Map every parameter of `model` to the checkpoint tensor it is read from."""
    cfg = model.config
    a = cfg.attention
    q_rows, kv_rows = a.num_heads * a.head_dim, a.num_kv_heads * a.head_dim
    inter = cfg.mlp.intermediate_size
    # slot -> (fused tensor template, its rows for this slot, its total rows)
    fused = {}
    if names.qkv_proj is not None:
        total = q_rows + 2 * kv_rows
        fused["attn.q_proj"] = (names.qkv_proj, (0, q_rows), total)
        fused["attn.k_proj"] = (names.qkv_proj, (q_rows, q_rows + kv_rows), total)
        fused["attn.v_proj"] = (names.qkv_proj, (q_rows + kv_rows, total), total)
    if names.gate_up_proj is not None:
        fused["mlp.gate_proj"] = (names.gate_up_proj, (0, inter), 2 * inter)
        fused["mlp.up_proj"] = (names.gate_up_proj, (inter, 2 * inter), 2 * inter)
    picks: dict[str, Pick] = {}
    for param in model.state_dict():
        module, _, kind = param.rpartition(".")
        if module == "embed_tokens":
            picks[param] = Pick(f"{names.embedding}.{kind}")
        elif module == "final_norm":
            picks[param] = Pick(f"{names.final_norm}.{kind}")
        elif module == "lm_head":
            if names.lm_head is None:
                raise CheckpointError(f"the model needs {param} but TensorNames.lm_head is None")
            picks[param] = Pick(f"{names.lm_head}.{kind}")
        elif module in MODEL_SLOTS:
            template = getattr(names, MODEL_SLOTS[module])
            if template is None:
                raise CheckpointError(f"the model needs {param} but TensorNames.{MODEL_SLOTS[module]} is None")
            picks[param] = Pick(f"{template}.{kind}")
        elif module.startswith("layers.") and module.count(".") == 1 and kind in BLOCK_TENSORS:
            template = getattr(names, BLOCK_TENSORS[kind])
            if template is None:
                raise CheckpointError(f"the model needs {param} but TensorNames.{BLOCK_TENSORS[kind]} is None")
            picks[param] = Pick(template.format(module.split(".")[1]))
        elif module.startswith("layers."):
            _, index, slot = module.split(".", 2)
            if slot in fused:
                template, rows, total = fused[slot]
                picks[param] = Pick(f"{template.format(index)}.{kind}", rows, total)
                continue
            owner, _, below = slot.partition(".")
            if owner in MODULE_SLOTS:
                template = getattr(names, MODULE_SLOTS[owner])
                if template is None:
                    raise CheckpointError(f"the model needs {param} but TensorNames.{MODULE_SLOTS[owner]} is None")
                picks[param] = Pick(f"{template.format(index)}{'.' + below if below else ''}.{kind}")
                continue
            template = getattr(names, LAYER_SLOTS[slot])
            if template is None:
                raise CheckpointError(f"the model needs {param} but TensorNames.{LAYER_SLOTS[slot]} is None")
            picks[param] = Pick(f"{template.format(index)}.{kind}")
        else:
            raise CheckpointError(f"no TensorNames entry for parameter {param}")
    return picks


def load_weights(
    model: Decoder, source: TensorSource, names: TensorNames, skip: Callable[[str], bool] = lambda _param: False
) -> Decoder:
    """Copy every tensor into `model` after checking the whole checkpoint against it.

    All problems are collected first and raised as one error, so a user fixing a
    map sees every wrong name at once.
    """
    picks = plan(model, names)
    shapes = {param: tuple(t.shape) for param, t in model.state_dict().items()}
    # Tied checkpoints often store the shared matrix a second time as the LM head.
    tied_head = {f"{names.lm_head}.weight"} if model.config.tie_embeddings and names.lm_head else set()
    check_picks(source, picks, shapes, tied_head, lambda name: name.endswith(_IGNORED_SUFFIXES))

    params = dict(model.named_parameters())
    with torch.no_grad():
        for param, pick in picks.items():
            if param not in params or skip(param):
                continue
            tensor = _fetch(source, pick)
            target = params[param]
            if target.is_meta:
                _assign(model, param, tensor.to(torch.float32))
            else:
                target.copy_(tensor)
    return model


def _fetch(source: TensorSource, pick: Pick) -> torch.Tensor:
    tensor = source.get(pick.name)
    return tensor if pick.rows is None else tensor[pick.rows[0] : pick.rows[1]]


def load_model_deferred(
    config: ModelConfig, checkpoint: str | Path | TensorSource, names: TensorNames
) -> tuple[Decoder, Callable[[str], np.ndarray]]:
    """Like `load_model`, but the 2-D weights (nearly all the bytes) stay unallocated on the meta device;
    the returned reader gives one of them as float32 when asked, so a converter can stream them; one over a chunk
    (`quantize.row_chunks`) comes as `RowRanges`, its rows read from the file as the writer encodes them."""
    source = checkpoint if hasattr(checkpoint, "get") else open_checkpoint(checkpoint)
    with torch.device("meta"):
        model = Decoder(config)
    deferred = {name for name, p in model.named_parameters() if p.dim() == 2}
    picks = plan(model, names)
    load_weights(model, source, names, skip=deferred.__contains__)

    # Sources that can read a tensor without mapping the file keep memory at one tensor while streaming.
    get = getattr(source, "read_copy", source.get)
    read_rows = getattr(source, "read_rows", None)

    def read(param: str) -> np.ndarray | RowRanges:
        pick = picks[param]
        whole = source.shape(pick.name)
        first, stop = pick.rows or (0, whole[0])
        shape = (stop - first, *whole[1:])
        if read_rows is not None and len(shape) == 2 and is_large(*shape):
            # Never whole: the writer reads it a chunk of rows at a time (Gemma 4's per-layer table is 9.4 GB).
            return RowRanges(shape, lambda a, b: read_rows(pick.name, first + a, first + b).to(torch.float32).numpy())
        tensor = get(pick.name)
        tensor = tensor if pick.rows is None else tensor[pick.rows[0] : pick.rows[1]]
        return tensor.to(torch.float32).contiguous().numpy()

    return model.eval(), read


def _assign(model: torch.nn.Module, param: str, tensor: torch.Tensor) -> None:
    module_name, _, attr = param.rpartition(".")
    module = model.get_submodule(module_name)
    setattr(module, attr, torch.nn.Parameter(tensor, requires_grad=False))


def load_model(config: ModelConfig, checkpoint: str | Path | TensorSource, names: TensorNames) -> Decoder:
    """Build the decoder without allocating weights, then fill it from `checkpoint`."""
    source = checkpoint if hasattr(checkpoint, "get") else open_checkpoint(checkpoint)
    with torch.device("meta"):
        model = Decoder(config)
    return load_weights(model, source, names).eval()
