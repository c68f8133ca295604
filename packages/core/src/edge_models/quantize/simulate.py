"""The converted file's arithmetic, emulated in PyTorch: its stored weights, and its dynamic-range layers' inputs
rounded to int8 per token as the runtime's kernels round them. `auto` measures candidate recipes with it in seconds
instead of converting each one.

The runtime (XNNPACK's dynamically quantized fully-connected kernels) quantizes each row of a layer's input
asymmetrically to int8 from that row's own minimum and maximum (zero included); that is what `fake_quantize_rows`
does. The match with the real file is close, not exact (the kernels accumulate in integers): a benchmark measures
the file itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from edge_models.quantize.formats import EncodedWeight, decode, encode, format_for
from edge_models.quantize.recipes import LEAD_ROWS_PARAM, Recipe, Scheme, all_schemes


def fake_quantize_rows(x: torch.Tensor) -> torch.Tensor:
    """Per-row asymmetric int8 quantize-dequantize."""
    low = torch.clamp(x.amin(dim=-1, keepdim=True), max=0.0)
    high = torch.clamp(x.amax(dim=-1, keepdim=True), min=0.0)
    scale = (high - low) / 255.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.round(-128.0 - low / scale)
    q = torch.clamp(torch.round(x / scale) + zero, -128, 127)
    return (q - zero) * scale


def stored_weight(
    param: torch.Tensor, recipe: Recipe, name: str, encoded: dict[str, EncodedWeight] | None = None
) -> torch.Tensor:
    """What the file computes with for `name`: its calibrated encoding (in `encoded`), or the recipe's rounding of
    `param`. A tied matrix split by `rows.K` is its two parts, each in its own scheme, one above the other."""
    encoded = encoded or {}
    lead = recipe.lead_rows if name == "embed_tokens.weight" else None
    if lead is None:
        return _stored(param, recipe.scheme_for(name), encoded.get(name))
    k, scheme = lead
    return torch.cat(
        [
            _stored(param[:k], all_schemes()[scheme], encoded.get(LEAD_ROWS_PARAM)),
            _stored(param[k:], recipe.scheme_for(name), encoded.get(name)),
        ]
    )


def _stored(param: torch.Tensor, scheme: Scheme, encoded: EncodedWeight | None) -> torch.Tensor:
    fmt = format_for(scheme)
    stored = encoded if encoded is not None else encode(param.detach().float().numpy(), fmt)
    return torch.from_numpy(decode(stored, fmt, tuple(param.shape)))


@contextlib.contextmanager
def emulated(
    model: nn.Module,
    recipe: Recipe,
    encoded: dict[str, EncodedWeight] | None = None,
    smoothed: dict[str, torch.Tensor] | None = None,
    only: set[str] | None = None,
) -> Iterator[nn.Module]:
    """`model` computing as the converted file would (restored afterwards). `only`: emulate just these matrices
    (parameter names) and leave everything else in float, activations included."""
    encoded = encoded or {}
    swapped: dict[str, torch.Tensor] = {}
    handles = []
    try:
        with torch.no_grad():
            for name, value in (smoothed or {}).items():
                param = model.get_parameter(name)
                swapped[name] = param.detach().clone()
                param.copy_(value)
            for name, param in model.named_parameters():
                if param.dim() != 2 or (only is not None and name not in only):
                    continue
                swapped[name] = param.detach().clone()
                param.copy_(stored_weight(param, recipe, name, encoded))
        for name, module in model.named_modules():
            weight = f"{name}.weight" if isinstance(module, nn.Linear) else None
            if name == "lm_head":
                weight = "lm_head.weight" if not model.config.tie_embeddings else "embed_tokens.weight"
            if weight is None or (only is not None and weight not in only):
                continue
            if recipe.scheme_for(name if name == "lm_head" else weight).mode == "dynamic":
                handles.append(module.register_forward_pre_hook(_quantize_input))
        yield model
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for name, value in swapped.items():
                model.get_parameter(name).copy_(value)


def _quantize_input(_module, args):
    return (fake_quantize_rows(args[0]), *args[1:])


def log_probs(model: nn.Module, windows: list[list[int]]) -> list[torch.Tensor]:
    """The model's next-token log-probabilities over each window (float16: a reference kept for `mean_kl`)."""
    out = []
    with torch.no_grad():
        for ids in windows:
            logits, _ = model(torch.tensor([ids]), torch.arange(len(ids)), model.empty_cache(len(ids)))
            out.append(torch.log_softmax(logits[0, :-1].float(), dim=-1).half())
    return out


def mean_kl(model: nn.Module, windows: list[list[int]], reference: list[torch.Tensor]) -> float:
    """Mean KL divergence per token from `reference` (`log_probs` of the float model) to `model`."""
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, want in zip(windows, reference):
            logits, _ = model(torch.tensor([ids]), torch.arange(len(ids)), model.empty_cache(len(ids)))
            got = torch.log_softmax(logits[0, :-1].float(), dim=-1)
            want = want.float()
            total += float((want.exp() * (want - got)).sum())
            count += len(ids) - 1
    return total / max(count, 1)
