"""PyTorch decoder -> one .tflite with prefill_<N> and decode signatures."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from edge_models.convert.export import ExportSettings, lower_signatures
from edge_models.io.files import write_atomically
from edge_models.layers import Decoder
from edge_models.layers.shortlist import SHORTLIST_PARAM, ShortlistHead
from edge_models.layers.split_vocab import SplitEmbedding, SplitHead
from edge_models.quantize import Recipe, RecipeError, parse_recipe
from edge_models.quantize.ai_edge import quantize_flatbuffer
from edge_models.quantize.calibrate import HEAD
from edge_models.quantize.recipes import LEAD_ROWS_PARAM
from edge_models.runtime.memory import peak_rss_bytes
from edge_models.tflite.checks import check_tflite

if TYPE_CHECKING:
    from edge_models.quantize.calibrate import CalibrationResult

Progress = Callable[[str], None]


def _stderr(message: str) -> None:
    from edge_models.io import console

    console.stage(message)


@dataclass(frozen=True)
class ConvertResult:
    path: Path
    size_bytes: int
    signatures: list[str]
    seconds: float
    peak_rss_bytes: int
    recipe: str
    worker_peak_rss_bytes: int = 0  # the largest export worker (`workers` > 1), which ran beside this process

    def summary(self) -> str:
        return (
            f"wrote {self.path} ({self.size_bytes / 1e6:.1f} MB, recipe {self.recipe}); "
            f"signatures: {', '.join(self.signatures)}; "
            f"{self.seconds:.1f} s; peak RSS {self.peak_rss_bytes / 2**30:.2f} GiB"
            + (f" (+ export worker {self.worker_peak_rss_bytes / 2**30:.2f} GiB)" if self.worker_peak_rss_bytes else "")
        )


def convert(
    model: Decoder,
    output: str | Path,
    settings: ExportSettings | None = None,
    recipe: Recipe | str | None = None,
    progress: Progress | None = _stderr,
    *,
    weights: Callable[[str], np.ndarray] | None = None,
    low_memory: bool = True,
    workers: int = 1,
    calibration: list[list[int]] | None = None,
    calibrated: CalibrationResult | None = None,
) -> ConvertResult:
    """Convert `model` and write `output` atomically; the file is checked before it is renamed into place.

    With `low_memory` (the default), the graph is exported without its 2-D weights and they are written one at a
    time (`edge_models.convert.streaming`); `weights(param)` supplies them when the model was loaded with
    `load_for_spec(..., deferred=True)`. A plugin's scheme the writer does not store, or `low_memory=False`, goes
    through litert-torch's float flatbuffer and ai-edge-quantizer, which hold several copies of the weights.
    `workers` > 1 exports the low-memory path's signatures in that many processes at once (~1 GiB each).
    A recipe with calibrated schemes needs `calibration`: token windows (`quantize.calibration_data`), or
    `calibrated`, the result of calibrating this model with this recipe already (`quantize.auto` hands it over).
    """
    settings = settings or ExportSettings()
    recipe = recipe if isinstance(recipe, Recipe) else parse_recipe(recipe)
    output = Path(output)
    say = progress or (lambda _msg: None)
    recipe.check_model(model)
    started = time.perf_counter()
    # The model-transforming steps, each undone on leaving: a shortlist head attached, the tied embedding split
    # at rows.K, the LM head untied. Each hands on the weight reader of the model as it has changed it.
    with contextlib.ExitStack() as transformed:
        read = weights
        if settings.shortlist and getattr(model, "shortlist", None) is None:
            dynamic = recipe.scheme_for("lm_head").mode == "dynamic"
            read = transformed.enter_context(_shortlisted(model, settings.shortlist, read, dynamic))
        if recipe.lead_rows and not isinstance(model.embed_tokens, SplitEmbedding):
            if not low_memory:
                raise RecipeError(f"recipe {recipe.text!r}: rows.K is written by the low-memory converter only")
            # On the whole matrix, before it is split: calibration reads the embedding as the model has it.
            calibrated = _calibrated(model, recipe, calibration, calibrated, read, say)
            read = transformed.enter_context(_split_rows(model, recipe.lead_rows[0], read))
        if recipe.unties(model):
            read = transformed.enter_context(_untied(model, read))
        if settings.composites:
            transformed.enter_context(_composites_marked(model))
        worker_peak = _write(model, output, settings, recipe, read, say, low_memory, workers, calibration, calibrated)
    result = ConvertResult(
        path=output,
        size_bytes=output.stat().st_size,
        signatures=settings.signature_names(),
        seconds=time.perf_counter() - started,
        peak_rss_bytes=peak_rss_bytes(),
        recipe=recipe.text,
        worker_peak_rss_bytes=worker_peak,
    )
    say(result.summary())
    return result


@contextlib.contextmanager
def _composites_marked(model: Decoder) -> Iterator[None]:
    """Every RMSNorm of `model` traced as an `odml.rms_norm` composite while converting."""
    from edge_models.layers.norms import RMSNorm

    norms = [m for m in model.modules() if isinstance(m, RMSNorm)]
    for norm in norms:
        norm.composite = True
    try:
        yield
    finally:
        for norm in norms:
            del norm.composite  # back to the class's False


def _write(
    model: Decoder,
    output: Path,
    settings: ExportSettings,
    recipe: Recipe,
    weights: Callable[[str], np.ndarray] | None,
    say: Progress,
    low_memory: bool,
    workers: int,
    calibration: list[list[int]] | None,
    calibrated: CalibrationResult | None,
) -> int:
    """The file of `model` as the transforms left it: streamed one weight at a time where the writer stores every
    scheme of `recipe`, else through litert-torch's float flatbuffer and ai-edge-quantizer. Returns the largest
    export worker's peak resident memory (0 without workers)."""
    import edge_models.convert.streaming as streaming

    model = model.eval()
    # KV-sharing layers (Gemma 3n / 4) have no cache entries: the file holds those of the layers before them.
    check = partial(_check, layers=model.config.first_kv_shared_layer)
    from edge_models.layers.lora import lora_parameters

    streams = low_memory and streaming.can_stream(model, recipe)
    if lora_parameters(model) and not streams:
        raise RecipeError(f"recipe {recipe.text!r}: LoRA inputs are written by the low-memory converter only")
    if settings.shortlist and not streams:
        raise RecipeError(f"recipe {recipe.text!r}: shortlist signatures are written by the low-memory converter only")
    if recipe.is_calibrated and not streams:
        raise RecipeError(f"recipe {recipe.text!r}: calibrated schemes are written by the low-memory converter only")
    calibrated = _calibrated(model, recipe, calibration, calibrated, weights, say)
    if calibrated is not None:
        with calibrated.applied_to(model):
            return streaming.convert_streaming(
                model, output, settings, recipe, weights, say, check, workers, calibrated.encoded
            )
    if streams:
        return streaming.convert_streaming(model, output, settings, recipe, weights, say, check, workers)
    if weights is not None:
        say("this recipe needs every weight in memory: reading them all")
        _materialize(model, weights)
    flatbuffer = _lower(model, settings, say)
    if not recipe.is_float32:
        say(f"quantizing with recipe {recipe.text}")
        flatbuffer = quantize_flatbuffer(flatbuffer, recipe)
    say(f"writing and checking {output}")
    write_atomically(output, lambda f: f.write(flatbuffer), check)
    return 0


@contextlib.contextmanager
def _untied(model: Decoder, weights: Callable[[str], np.ndarray] | None):
    """The LM head with its own copy of the tied matrix while converting, so lookup and head can be stored in two
    schemes; a deferred copy reads the embedding's tensor. The model is tied again afterwards."""
    embedding, head, config = model.embed_tokens.weight, model.lm_head, model.config
    copy = torch.empty_like(embedding, device="meta") if embedding.is_meta else embedding.detach().clone()
    head.weight = nn.Parameter(copy, requires_grad=False)
    head.tied, model.config = False, config.replace(tie_embeddings=False)
    try:
        yield None if weights is None else (lambda name: weights("embed_tokens.weight" if name == HEAD else name))
    finally:
        del head.weight
        head.tied, model.config = True, config


@contextlib.contextmanager
def _shortlisted(model: Decoder, k: int, weights: Callable[[str], np.ndarray] | None, dynamic_int8: bool):
    """The two-stage head (layers.shortlist) attached while converting, its weight a copy of the LM head's matrix (a
    deferred copy reads the head's tensor); removed afterwards."""
    cfg = model.config
    if not 0 < k < cfg.vocab_size:
        raise RecipeError(f"--shortlist {k}: must be between 1 and the vocabulary size ({cfg.vocab_size:,})")
    if cfg.hidden_size % 32:
        raise RecipeError(
            f"--shortlist: its int4 copy of the head needs a hidden size divisible by 32, not {cfg.hidden_size}"
        )
    source = "embed_tokens.weight" if cfg.tie_embeddings else HEAD
    matrix = model.get_parameter(source)
    copy = torch.empty_like(matrix, device="meta") if matrix.is_meta else matrix.detach().clone()
    model.shortlist = ShortlistHead(nn.Parameter(copy, requires_grad=False), k, dynamic_int8)
    try:
        yield None if weights is None else (lambda name: weights(source if name == SHORTLIST_PARAM else name))
    finally:
        del model.shortlist


def _calibrated(model, recipe: Recipe, calibration, calibrated, weights, say):
    """`calibrated`, or the calibration a calibrated recipe needs (None for one that needs none)."""
    if not recipe.is_calibrated or calibrated is not None:
        return calibrated
    if not calibration:
        raise RecipeError(f"recipe {recipe.text!r} is calibrated: give calibration token windows")
    from edge_models.quantize.calibrate import calibrate

    say(f"calibrating with GPTQ on {sum(map(len, calibration)):,} tokens, one block at a time")
    return calibrate(model, calibration, recipe, weights, say)


@contextlib.contextmanager
def _split_rows(model: Decoder, k: int, weights: Callable[[str], np.ndarray] | None):
    """The tied embedding/LM head as two matrices (its first `k` rows, the rest) while converting; a deferred model
    reads both from the embedding's tensor. The model is whole again afterwards."""
    embedding, head = model.embed_tokens, model.lm_head
    whole = embedding.weight
    if whole.is_meta:
        lead = torch.empty(k, whole.shape[1], device="meta")
        rest = torch.empty(whole.shape[0] - k, whole.shape[1], device="meta")
    else:
        lead, rest = whole.detach()[:k].clone(), whole.detach()[k:].clone()
    split = SplitEmbedding(nn.Parameter(lead, requires_grad=False), nn.Parameter(rest, requires_grad=False))
    model.embed_tokens, model.lm_head = split, SplitHead(split, head.bias)

    def read(name: str) -> np.ndarray:
        if name == LEAD_ROWS_PARAM:
            return weights("embed_tokens.weight")[:k]
        if name == "embed_tokens.weight":
            return weights("embed_tokens.weight")[k:]
        return weights(name)

    try:
        yield None if weights is None else read
    finally:
        model.embed_tokens, model.lm_head = embedding, head


def _check(path: Path, layers: int) -> None:
    check_tflite(path, layers)


def _lower(model: Decoder, settings: ExportSettings, say: Progress, lightweight: bool = True) -> bytes:
    """litert-torch's own path: every weight lowered into the graph, one float flatbuffer."""
    say(f"exporting and lowering {len(settings.signature_names())} signatures")
    # Lightweight mode keeps constants lazy: measured 2.5 GiB instead of 3.5 GiB peak RSS on a
    # 135M-parameter Llama (fp32), same size and numbers (tests compare every family).
    return lower_signatures(model, settings, lightweight=lightweight)


def _materialize(model: Decoder, weights: Callable[[str], np.ndarray]) -> None:
    from edge_models.loader.load import _assign

    for name, param in list(model.named_parameters()):
        if param.is_meta:
            _assign(model, name, torch.from_numpy(np.asarray(weights(name))))
