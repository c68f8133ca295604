"""Low-memory conversion: export the graph without its large weights, then write them in one tensor at a time.

litert-torch lowers every weight into MLIR and serializes a float flatbuffer that ai-edge-quantizer then parses
into Python objects and rewrites: several full copies of the model are alive at once (3.75x the fp32 weights
measured on TinyLlama-1.1B, and Phi-2 did not fit in 24 GiB). Here the 2-D weights (embedding, every linear layer,
the LM head) are signature inputs while litert-torch exports, so the "skeleton" it writes holds only the graph
and the small constants. Each weight input then becomes a constant tensor shared by all signatures, and its data
(in the recipe's storage: float32, float16, int8 per row, int4 per block; `edge_models.quantize.formats`) is
appended after the flatbuffer as an offset buffer, the layout ai-edge-quantizer itself writes
(`edge_models.tflite.weight_constants`).
Peak memory is the skeleton plus one weight, on top of wherever the weights come from.

Every built-in scheme is written here; a scheme from a plugin that `quantize.formats.format_for` does not know takes
the ai-edge-quantizer path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_models.convert.export import ExportSettings, Signature, lower_signatures
from edge_models.convert.parallel import export_in_parallel
from edge_models.layers import Decoder
from edge_models.layers.lora import lora_parameters
from edge_models.quantize.formats import EncodedWeight, format_for, stored_bytes
from edge_models.quantize.recipes import Recipe
from edge_models.tflite.lora import INPUT_PREFIX, input_key
from edge_models.tflite.weight_constants import WEIGHTS_ARG, weight_key, write_with_weights

LORA_ARG = INPUT_PREFIX.rstrip("_")  # the argument carrying the LoRA slots: inputs named by `layers.lora.input_name`


class _WeightsAsInputs(nn.Module):
    """A signature whose 2-D weights arrive as inputs instead of being constants of the graph (and so do the LoRA
    slots' matrices, which stay inputs).

    Its module path (`edge_models.convert.streaming._WeightsAsInputs`) is the first part of the name of every tensor
    litert-torch writes: moving the class changes the bytes of every converted file."""

    def __init__(self, signature: Signature, params: list[str], lora: list[str]) -> None:
        super().__init__()
        self.signature = signature
        self.params = params
        self.lora = lora

    def forward(self, tokens, input_pos, kv_cache, weights, lora=None):
        swapped = {f"model.{p}": weights[weight_key(p)] for p in self.params}
        swapped.update({f"model.{p}": lora[input_key(p)] for p in self.lora})
        return torch.func.functional_call(self.signature, swapped, (tokens, input_pos, kv_cache))


def streamed_weights(model: Decoder) -> dict[str, tuple[int, ...]]:
    """The parameters written by this module: every 2-D one (embedding, linear layers, LM head) except LoRA slots,
    which stay inputs of the file."""
    return {
        name: tuple(p.shape)
        for name, p in model.named_parameters()
        if p.dim() == 2 and not name.endswith((".lora_a", ".lora_b"))
    }


def can_stream(model: Decoder, recipe: Recipe) -> bool:
    return all(format_for(recipe.scheme_for(name)) for name in streamed_weights(model))


@contextlib.contextmanager
def _weights_detached(model: Decoder, params: list[str]) -> Iterator[None]:
    """Swap the large parameters for empty ones while exporting, so litert-torch never reads or copies them."""
    saved = {}
    for name in params:
        module_name, _, attr = name.rpartition(".")
        module = model.get_submodule(module_name)
        saved[name] = (module, attr, getattr(module, attr))
        setattr(module, attr, nn.Parameter(torch.empty(0), requires_grad=False))
    try:
        yield
    finally:
        for module, attr, param in saved.values():
            setattr(module, attr, param)


def export_skeleton(
    model: Decoder, settings: ExportSettings, shapes: dict[str, tuple[int, ...]], workers: int = 1
) -> tuple[bytes, int]:
    """The converted graph with `shapes`' parameters as inputs named `weights_<param with __>`, and the peak resident
    memory of the largest export worker (0 without).

    With `workers` > 1 the signatures are exported by that many processes at once (`convert.parallel`)."""
    with _weights_detached(model, list(shapes)):
        if workers > 1 and len(settings.signatures()) > 1:
            return export_in_parallel(model, settings, shapes, workers, export_signatures)
        return export_signatures(model, settings, shapes), 0


def export_signatures(
    model: Decoder, settings: ExportSettings, shapes: dict[str, tuple[int, ...]], only: list[str] | None = None
) -> bytes:
    """`export_skeleton`'s work in this process, for a model whose `shapes` parameters are already detached; `only`
    limits it to those signatures."""
    params = list(shapes)
    # Never touched: export traces shapes only, so these pages are never committed.
    placeholders = {weight_key(p): torch.empty(shape) for p, shape in shapes.items()}
    extra = {WEIGHTS_ARG: placeholders}
    lora = lora_parameters(model)
    if lora:
        extra[LORA_ARG] = {input_key(p): torch.zeros(tuple(t.shape)) for p, t in lora.items()}
    return lower_signatures(
        model,
        settings,
        lambda signature: _WeightsAsInputs(signature, params, list(lora)),
        extra,
        only=only,
    )


def convert_streaming(
    model: Decoder,
    output: Path,
    settings: ExportSettings,
    recipe: Recipe,
    read: Callable[[str], np.ndarray] | None = None,
    progress: Callable[[str], None] | None = None,
    check: Callable[[Path], None] | None = None,
    workers: int = 1,
    encoded: dict[str, EncodedWeight] | None = None,
) -> int:
    """Export the skeleton of `model` (`workers` processes at once), then write `output` with each 2-D weight from
    `encoded` (already in its stored form) or `read(param)` (default: the model's own tensor), in the scheme
    `recipe` gives it. Returns the largest export worker's peak resident memory (0 without workers)."""
    from edge_models.io.files import write_atomically

    say = progress or (lambda _m: None)
    shapes = streamed_weights(model)
    formats = {p: format_for(recipe.scheme_for(p)) for p in shapes}
    if read is None:
        params = dict(model.named_parameters())

        def read(param: str) -> np.ndarray:
            return params[param].detach().to(torch.float32).numpy()

    say(
        f"exporting the graph of {len(settings.signature_names())} signatures without its {len(shapes)} weights"
        + (f" ({workers} processes)" if workers > 1 else "")
    )
    skeleton, worker_peak = export_skeleton(model, settings, shapes, workers)
    say(f"writing {len(shapes)} weights one at a time ({recipe.text})")
    weight_bytes = sum(sum(stored_bytes(formats[p], *shape)) for p, shape in shapes.items())
    write_atomically(
        output,
        lambda f: write_with_weights(skeleton, formats, read, f, say, encoded),
        check,
        size_hint=len(skeleton) + weight_bytes,
    )
    return worker_peak
