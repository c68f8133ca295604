"""Calibrated quantization of a decoder, one block at a time.

The calibration sequences flow through the model block by block. For each block, the inputs reaching each linear
layer give its Hessian; the block's calibrated weights are rounded with GPTQ against it, and the block is run
again with those rounded weights, so the next block is calibrated on the inputs it will really see (errors of
earlier blocks included). Only one block's float weights are in memory at a time, read through `read` when the
model was loaded deferred; the results are kept in their stored form (int8, or int4 packed two per byte).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from edge_models.quantize.formats import EncodedWeight, pack_int4
from edge_models.quantize.gptq import Grid, dequantize, gptq
from edge_models.quantize.recipes import LEAD_ROWS_PARAM, Recipe, Scheme, all_schemes
from edge_models.quantize.row_chunks import RowRanges
from edge_models.quantize.smooth import apply_smoothing, smoothing_pairs, smoothing_scales

Progress = Callable[[str], None]
Reader = Callable[[str], np.ndarray]

HEAD = "lm_head.weight"
# GPTQ's damping for a tied embedding/LM head. Its integers also serve the lookup, whose error is each row's own
# (an identity Hessian); a larger damping mixes that objective in. On Gemma 3 270M (int4, blocks 32, the rest in
# float, emulated on held-out text) mean KL went 0.0575 -> 0.0495 from 0.01 to 0.1, and 0.0496 at 0.3.
TIED_DAMPING = 0.1


def grid_for(scheme: Scheme) -> Grid:
    return Grid(scheme.bits, scheme.block_size)


@dataclass
class CalibrationResult:
    encoded: dict[str, EncodedWeight]  # parameter -> what the writer stores for it
    tokens: int  # calibration tokens that went through the model
    # 1-D parameters (norm scales and biases) that smoothing changed: their new values, for the exported graph
    smoothed: dict[str, torch.Tensor] = field(default_factory=dict)

    @contextlib.contextmanager
    def applied_to(self, model: nn.Module) -> Iterator[None]:
        """The model with the smoothed norm parameters in place (the matrices are in `encoded`); restored after."""
        saved = {name: model.get_parameter(name).detach().clone() for name in self.smoothed}
        try:
            with torch.no_grad():
                for name, value in self.smoothed.items():
                    model.get_parameter(name).copy_(value)
            yield
        finally:
            with torch.no_grad():
                for name, value in saved.items():
                    model.get_parameter(name).copy_(value)


def calibrated_params(model: nn.Module, recipe: Recipe) -> list[str]:
    """The 2-D parameters whose scheme asks for calibration (the head included, under its own name)."""
    out = [
        name
        for name, p in model.named_parameters()
        if p.dim() == 2 and recipe.scheme_for(name).calibrated and name != "embed_tokens.weight"
    ]
    if recipe.scheme_for("lm_head").calibrated:
        out.append(HEAD if not model.config.tie_embeddings else "embed_tokens.weight")
    return out


def calibrate(
    model: nn.Module,
    sequences: list[list[int]],
    recipe: Recipe,
    read: Reader | None = None,
    progress: Progress | None = None,
    smooth: bool = True,
) -> CalibrationResult:
    """GPTQ-round every weight whose scheme is calibrated; `sequences` are token ids (each a calibration window).

    With `smooth`, inputs of calibrated dynamic-range layers are smoothed first (`quantize.smooth`) where their
    producer can absorb it; the model itself is left as it was, the changed norm parameters are in the result."""
    return _calibrate(model, sequences, recipe, None, read, progress, smooth)[0]


def calibrate_pair(
    model: nn.Module,
    sequences: list[list[int]],
    recipe: Recipe,
    alternative: Recipe,
    read: Reader | None = None,
    progress: Progress | None = None,
) -> tuple[CalibrationResult, CalibrationResult]:
    """`calibrate(recipe)`, and every one of its calibrated weights also rounded as `alternative` asks, from the
    same inputs: each weight's alternative is calibrated with every block before it in `recipe`, as it will be
    when a mix takes it alone (auto's choices). Smoothing depends on the inputs only, so both share it."""
    return _calibrate(model, sequences, recipe, alternative, read, progress, True)  # type: ignore[return-value]


def _calibrate(
    model: nn.Module,
    sequences: list[list[int]],
    recipe: Recipe,
    alternative: Recipe | None,
    read: Reader | None,
    progress: Progress | None,
    smooth: bool,
) -> tuple[CalibrationResult, CalibrationResult | None]:
    say = progress or (lambda _m: None)
    wanted = set(calibrated_params(model, recipe))
    if not sequences or not any(sequences):
        raise ValueError("calibration needs at least one non-empty token sequence")
    cfg = model.config
    with materialized(model, ["embed_tokens.weight"], read):
        hidden = []
        for ids in sequences:
            x = model.embed_tokens(torch.tensor([ids]))
            if model.embedding_scale is not None:
                x = x * torch.tensor(model.embedding_scale, dtype=x.dtype)
            hidden.append(x)
    run_block = _BlockRunner(model, sequences, hidden, read)
    encoded: dict[str, EncodedWeight] = {}
    also: dict[str, EncodedWeight] = {}
    n_tokens = sum(len(s) for s in sequences)
    originals = {n: p.detach().clone() for n, p in model.named_parameters() if p.dim() == 1}
    for i, block in enumerate(model.layers):
        prefix = f"layers.{i}."
        params = [prefix + n for n, p in block.named_parameters() if p.dim() == 2]
        with materialized(model, params, read):
            targets = {
                n: m for n, m in block.named_modules() if isinstance(m, nn.Linear) and prefix + n + ".weight" in wanted
            }
            hessians, absmax = _collect_statistics(
                targets, lambda: [run_block(block, i, n, x) for n, x in enumerate(hidden)]
            )
            if smooth:
                _smooth_block(block, targets, hessians, absmax, lambda n: recipe.scheme_for(prefix + n))
            for name, module in targets.items():
                param = prefix + name + ".weight"
                if alternative is not None:
                    other = grid_for(alternative.scheme_for(param))
                    also[param] = _encode(*gptq(module.weight, hessians[name], other), other)
                grid = grid_for(recipe.scheme_for(param))
                q, scales = gptq(module.weight, hessians[name], grid)
                encoded[param] = _encode(q, scales, grid)
                module.weight.data = dequantize(q, scales, grid)
            with torch.no_grad():
                hidden = [run_block(block, i, n, x) for n, x in enumerate(hidden)]
        say(f"calibrated block {i + 1}/{cfg.num_layers}")
    head_param = HEAD if not cfg.tie_embeddings else "embed_tokens.weight"
    if head_param in wanted:
        with torch.no_grad():
            normed = [model.final_norm(x) for x in hidden]
        h = _hessian_of(normed)
        with materialized(model, [head_param], read):
            weight = model.get_parameter(head_param)
            damping = TIED_DAMPING if head_param == "embed_tokens.weight" else 0.01
            for r, out in ((recipe, encoded), (alternative, also)):
                if r is None:
                    continue
                grid = grid_for(r.scheme_for("lm_head"))
                # rows.K: the first K rows in their own scheme, stored as a matrix of their own (layers.split_vocab).
                lead = r.lead_rows if head_param == "embed_tokens.weight" else None
                parts = [(head_param, weight, grid)]
                if lead:
                    k, scheme = lead
                    parts = [
                        (LEAD_ROWS_PARAM, weight[:k], grid_for(all_schemes()[scheme])),
                        (head_param, weight[k:], grid),
                    ]
                for name, rows, g in parts:
                    out[name] = _encode(*gptq(rows, h, g, damping=damping), g)
        say("calibrated the LM head")
    smoothed = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in originals and not torch.equal(p, originals[name]):
                smoothed[name] = p.detach().clone()
                p.copy_(originals[name])
    paired = None if alternative is None else CalibrationResult(also, n_tokens, smoothed)
    return CalibrationResult(encoded, n_tokens, smoothed), paired


def _smooth_block(block, targets: dict[str, nn.Linear], hessians, absmax, scheme_of) -> None:
    """Smooth each pair whose layers are all calibrated and activation-quantized; keep the Hessians in step
    (the consumers' inputs are divided by s, so H becomes H / (s sᵀ))."""
    for pair in smoothing_pairs(block):
        names = [*pair.consumers] + ([pair.producer] if pair.producer.startswith("mlp.") else [])
        if not all(n in targets and scheme_of(n + ".weight").mode == "dynamic" for n in names):
            continue
        consumers = [targets[n] for n in pair.consumers]
        s = smoothing_scales(absmax[pair.consumers[0]], consumers)
        apply_smoothing(block.get_submodule(pair.producer), consumers, s)
        for n in pair.consumers:
            hessians[n] = hessians[n] / (s[:, None] * s[None, :])


TABLE = "table.weight"  # the per-layer table, under `per_layer_embedding`


@contextlib.contextmanager
def _table_rows(model: nn.Module, sequences: list[list[int]], read: Reader | None) -> Iterator[None]:
    """The per-layer table with real rows for the calibration tokens only: full-size, but the other rows are zero
    pages never written (numpy allocates zeros lazily), so Gemma 4 E2B's 9.4 GB float32 table costs the rows read."""
    name = f"per_layer_embedding.{TABLE}"
    if not model.get_parameter(name).is_meta:
        with materialized(model, [name], read):
            yield
        return
    if read is None:
        raise ValueError(f"{name} is not loaded and no reader was given")
    source = read(name)
    table = np.zeros(source.shape, np.float32)
    ids = sorted({int(t) for ids in sequences for t in ids})
    # Runs of consecutive ids are read at once: one read per run, not per token.
    start = 0
    for k in range(1, len(ids) + 1):
        if k == len(ids) or ids[k] != ids[k - 1] + 1:
            first, last = ids[start], ids[k - 1] + 1
            rows = source.rows(first, last) if isinstance(source, RowRanges) else source[first:last]
            table[first:last] = rows
            start = k
    module = model.per_layer_embedding.table
    saved = module.weight
    module.weight = nn.Parameter(torch.from_numpy(table), requires_grad=False)
    try:
        yield
    finally:
        module.weight = saved


class _BlockRunner:
    """Runs one block on one calibration sequence as the whole model would: from an empty cache, with its slice of
    the per-layer inputs (Gemma 3n / 4), and for a KV-sharing layer over the cache its source layer last wrote."""

    def __init__(self, model: nn.Module, sequences: list[list[int]], hidden: list[torch.Tensor], read) -> None:
        self.config = model.config
        self.per_layer: list[torch.Tensor] | None = None
        ple = getattr(model, "per_layer_embedding", None)
        if ple is not None:
            params = [f"per_layer_embedding.{n}" for n, p in ple.named_parameters() if p.dim() == 2 and n != TABLE]
            with materialized(model, params, read), _table_rows(model, sequences, read), torch.no_grad():
                self.per_layer = [ple(torch.tensor([ids]), x) for ids, x in zip(sequences, hidden)]
        self.caches: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, block: nn.Module, index: int, sequence: int, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        if block.state_names:  # a convolution or delta-net layer (LFM2, Qwen3.5): from an empty state
            with torch.no_grad():
                out, _ = block.forward_state(x, torch.arange(t), block.empty_state())
            return out
        source = self.config.kv_source(index)
        if source == index:
            attn = block.attn.cfg
            k = torch.zeros(1, attn.num_kv_heads, t, attn.head_dim)
            v = torch.zeros(1, attn.num_kv_heads, attn.head_dim, t)
        else:
            k, v = self.caches[(source, sequence)]
        per_layer = None if self.per_layer is None else self.per_layer[sequence][:, :, index, :]
        with torch.no_grad():
            out, k, v = block(x, torch.arange(t), k, v, None, None, per_layer)
        if source == index and self.config.kv_shared_layers:
            # The last run is the one after this block's weights were quantized: what its readers will see.
            self.caches[(index, sequence)] = (k, v)
        return out


def _collect_statistics(
    modules: dict[str, nn.Linear], run: Callable[[], object]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Each module's input Hessian XᵀX / n and per-channel absolute maximum over everything `run` feeds it."""
    sums = {name: torch.zeros(m.in_features, m.in_features, dtype=torch.float64) for name, m in modules.items()}
    absmax = {name: torch.zeros(m.in_features) for name, m in modules.items()}
    counts = dict.fromkeys(modules, 0)

    def hook(name):
        def accumulate(_module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1])
            absmax[name] = torch.maximum(absmax[name], x.abs().amax(dim=0).float())
            x = x.double()
            sums[name] += x.T @ x
            counts[name] += x.shape[0]

        return accumulate

    handles = [m.register_forward_pre_hook(hook(name)) for name, m in modules.items()]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return {name: (sums[name] / max(counts[name], 1)).float() for name in modules}, absmax


def _hessian_of(xs: list[torch.Tensor]) -> torch.Tensor:
    total = None
    count = 0
    for x in xs:
        flat = x.reshape(-1, x.shape[-1]).double()
        total = flat.T @ flat if total is None else total + flat.T @ flat
        count += flat.shape[0]
    return (total / count).float()


def _encode(q: torch.Tensor, scales: torch.Tensor, grid: Grid) -> EncodedWeight:
    if grid.bits == 8 and grid.block is None:
        return EncodedWeight(q.numpy().view(np.uint8).reshape(-1).copy(), row_scales=scales[:, 0].numpy().copy())
    if grid.bits == 4 and grid.block:
        return EncodedWeight(pack_int4(q.numpy()), block_scales=scales.half().numpy())
    raise ValueError(f"no stored format for {grid.bits}-bit weights with blocks of {grid.block}")


class materialized:
    """Give `params` real float32 data for the duration (from `read` where they are on the meta device), then put
    the model's own parameters back, so calibration holds one block's weights at a time."""

    def __init__(self, model: nn.Module, params: list[str], read: Reader | None) -> None:
        self.model, self.params, self.read = model, params, read
        self.saved: dict[str, nn.Parameter] = {}

    def __enter__(self):
        for name in self.params:
            module_name, _, attr = name.rpartition(".")
            module = self.model.get_submodule(module_name)
            original = getattr(module, attr)
            self.saved[name] = original
            if original.is_meta:
                if self.read is None:
                    raise ValueError(f"{name} is not loaded and no reader was given")
                data = torch.from_numpy(np.asarray(self.read(name)))  # whole, also a `RowRanges` one
            else:
                data = original.detach().float().clone()
            setattr(module, attr, nn.Parameter(data, requires_grad=False))
        return self

    def __exit__(self, *exc):
        for name, original in self.saved.items():
            module_name, _, attr = name.rpartition(".")
            setattr(self.model.get_submodule(module_name), attr, original)
        return False
