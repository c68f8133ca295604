"""`--quantize auto`: a scheme per decoder block part, chosen to meet a quality or size target at the least size.

1. Every weight is calibrated twice, once as int8 (`int8-gptq`) and once as int4 (`int4-block32-gptq`).
2. Sensitivity: with everything at int8 (the file's arithmetic emulated, `quantize.simulate`), each unit (one
   block's attention, one block's feed-forward, the embedding/LM head) is switched alone to its int4 weights; the
   rise of the mean KL divergence from the float model on calibration text is that unit's cost. (KL, not the
   rise of the negative log-likelihood: on a thousand tokens a single unit's NLL change is below the noise of
   near-tie tokens flipping, and came out negative for most of Gemma 3 270M's units.)
3. Units go to int4 cheapest cost per byte saved first, while the predicted perplexity increase stays within
   `max_ppl_increase`, or until the weights fit `max_size`. The prediction takes the mean KL divergence as the log
   of the perplexity ratio (on Gemma 3 270M's files the two agree within about 20 %): the all-int8 divergence plus
   the chosen units' costs.

The choice is an ordinary recipe string (`layers.N.feedforward=...` parts), so the file can be reproduced without
`auto`. The prediction assumes the units' costs add up; the converter re-calibrates the chosen mix and reports the
measured value beside the predicted one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edge_models.quantize.calibrate import CalibrationResult, calibrate, materialized
from edge_models.quantize.recipes import RecipeError, parse_recipe
from edge_models.quantize.simulate import emulated, log_probs, mean_kl, stored_weight

HIGH, LOW = "int8-gptq", "int4-block32-gptq"
SENSITIVITY_WINDOWS = 3  # calibration windows each sensitivity is measured on
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Target:
    max_ppl_increase: float | None = None  # 0.03 = +3 %
    max_size: int | None = None  # bytes of stored weights

    def __post_init__(self) -> None:
        if (self.max_ppl_increase is None) == (self.max_size is None):
            raise RecipeError("auto needs exactly one target: --max-ppl-increase or --max-size")
        if self.max_ppl_increase is not None and self.max_ppl_increase < 0:
            raise RecipeError("--max-ppl-increase must be 0 % or more")

    def describe(self) -> str:
        if self.max_size is not None:
            return f"weights <= {self.max_size / 1e6:,.1f} MB"
        return f"perplexity increase <= {100 * self.max_ppl_increase:.2f} %"


def parse_percent(text: str) -> float:
    """`3%`, `3 %` or `0.03` -> 0.03."""
    value = text.strip()
    try:
        return float(value.rstrip("%").strip()) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise RecipeError(f"expected a percentage such as 3% or 0.03, got {text!r}") from None


def parse_size(text: str) -> int:
    """`250MB`, `1.2GB`, `240000000` -> bytes."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kKmMgG]?)i?[bB]?\s*", text)
    if not m:
        raise RecipeError(f"expected a size such as 250MB or 1.2GB, got {text!r}")
    return int(float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2).lower()])


@dataclass
class Unit:
    part: str  # recipe part: layers.N.attention, layers.N.feedforward, or embedding,lm_head
    params: list[str]
    bytes_high: int
    bytes_low: int | None  # None: int4 blocks do not fit this unit's input width
    numel: int = 0
    cost: float = 0.0  # mean NLL increase when only this unit is int4
    choice: str = HIGH


@dataclass
class AutoPlan:
    recipe: str
    units: list[Unit]
    target: Target
    predicted_increase: float  # perplexity ratio - 1
    all_high_increase: float
    weights_bytes: int
    measured_increase: float | None = None  # the chosen mix, calibrated and emulated on the calibration text
    calibrated: CalibrationResult | None = None  # the chosen mix's calibration, for the converter to write

    def table(self) -> str:
        rows = [("part", "params", "int4 cost (KL)", "choice", "MB")]
        for u in self.units:
            n = u.numel
            size = u.bytes_low if u.choice == LOW else u.bytes_high
            cost = "-" if u.bytes_low is None else f"{u.cost:+.5f}"
            rows.append((u.part, f"{n / 1e6:.2f}M", cost, u.choice, f"{size / 1e6:.1f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
        lines.append(
            f"target: {self.target.describe()}; predicted: perplexity +{100 * self.predicted_increase:.2f} %, "
            f"weights {self.weights_bytes / 1e6:,.1f} MB (every part int8: +{100 * self.all_high_increase:.2f} %)"
            + (
                ""
                if self.measured_increase is None
                else f"; the chosen mix emulated: +{100 * self.measured_increase:.2f} %"
            )
        )
        lines.append(f"recipe: {self.recipe}")
        return "\n".join(lines)


def units_of(model: nn.Module) -> list[Unit]:
    cfg = model.config
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if p.dim() == 2}
    groups: dict[str, list[str]] = {}
    for name in shapes:
        layer = re.match(r"layers\.(\d+)\.(attn|mlp)\.", name)
        if layer:
            part = f"layers.{layer.group(1)}.{'attention' if layer.group(2) == 'attn' else 'feedforward'}"
        elif cfg.tie_embeddings or name == "embed_tokens.weight":
            part = "embedding,lm_head" if cfg.tie_embeddings else "embedding"
        else:
            part = "lm_head"
        groups.setdefault(part, []).append(name)
    units = []
    for part, params in groups.items():
        high = sum(r * c + 4 * r for r, c in (shapes[p] for p in params))
        fits = all(shapes[p][1] % 32 == 0 for p in params)
        low = sum(r * c // 2 + 2 * r * (c // 32) for r, c in (shapes[p] for p in params)) if fits else None
        units.append(Unit(part, params, high, low, numel=sum(shapes[p][0] * shapes[p][1] for p in params)))
    return units


def _recipe_text(units: list[Unit]) -> str:
    """The shortest spelling: the majority scheme as default, the rest per part."""
    layer_units = [u for u in units if u.part.startswith("layers.")]
    low_layers = sum(u.choice == LOW for u in layer_units)
    default = LOW if low_layers * 2 > len(layer_units) else HIGH
    parts = [default]
    for u in units:
        if u.choice == default:
            continue
        parts.extend(f"{p}={u.choice}" for p in u.part.split(","))
    return ",".join(parts)


def _with_part(units: list[Unit], chosen: Unit, scheme: str) -> str:
    saved = chosen.choice
    chosen.choice = scheme
    try:
        return _recipe_text(units)
    finally:
        chosen.choice = saved


def choose_recipe(
    model: nn.Module,
    windows: list[list[int]],
    target: Target,
    read: Callable[[str], np.ndarray] | None = None,
    progress: Progress | None = None,
) -> AutoPlan:
    """The plan for `target` (nothing is written). Raises RecipeError with the best reachable value when the
    target cannot be met with int8/int4 parts."""
    say = progress or (lambda _m: None)
    units = units_of(model)
    everything = [p for u in units for p in u.params]
    high_recipe = parse_recipe(_recipe_text(units))
    for u in units:
        u.choice = LOW if u.bytes_low is not None else HIGH
    low_recipe = parse_recipe(_recipe_text(units))
    for u in units:
        u.choice = HIGH
    smallest = sum(u.bytes_low if u.bytes_low is not None else u.bytes_high for u in units)
    if target.max_size is not None and smallest > target.max_size:
        raise RecipeError(
            f"auto: weights of {target.max_size / 1e6:,.1f} MB cannot be reached with int8/int4 parts; the "
            f"smallest is {smallest / 1e6:,.1f} MB (every part that allows it {LOW}). Nothing was written"
        )
    probe = windows[:SENSITIVITY_WINDOWS]
    say(f"auto: calibrating every part as {HIGH}")
    high = calibrate(model, windows, high_recipe, read, say)
    with materialized(model, everything, read):
        reference = log_probs(model, probe)
        with emulated(model, high_recipe, high.encoded, high.smoothed):
            all_high = mean_kl(model, probe, reference)
    size = sum(u.bytes_high for u in units)
    if target.max_ppl_increase is not None and all_high > math.log1p(target.max_ppl_increase):
        raise RecipeError(
            f"auto: a perplexity increase of {100 * target.max_ppl_increase:.2f} % cannot be reached with "
            f"int8/int4 parts; the best reachable is +{100 * math.expm1(all_high):.2f} % (every part {HIGH}, "
            f"{size / 1e6:,.1f} MB of weights; estimated on the calibration text). Nothing was written; use a "
            "larger target, or a float recipe (fp16)"
        )
    say(f"auto: calibrating every part as {LOW}")
    low = calibrate(model, windows, low_recipe, read, say)
    with materialized(model, everything, read):
        with emulated(model, high_recipe, high.encoded, high.smoothed):
            for k, unit in enumerate(units):
                if unit.bytes_low is not None:
                    unit.cost = _cost_of_low(model, unit, low, probe, reference, units) - all_high
                say(f"auto: sensitivity {k + 1}/{len(units)} ({unit.part}: {unit.cost:+.5f})")

    # Cheapest quality per byte saved first; a part whose cost is noise below zero counts as free.
    order = sorted((u for u in units if u.bytes_low is not None), key=lambda u: u.cost / (u.bytes_high - u.bytes_low))
    predicted = all_high
    limit = math.log1p(target.max_ppl_increase) if target.max_ppl_increase is not None else math.inf
    for u in order:
        if target.max_size is not None and size <= target.max_size:
            break
        if predicted + max(u.cost, 0.0) > limit:
            continue
        u.choice, predicted, size = LOW, predicted + max(u.cost, 0.0), size - (u.bytes_high - u.bytes_low)
    if target.max_size is not None:
        # One large part (an embedding) can overshoot the budget; spend what is left on the costliest int4 parts.
        for u in sorted((u for u in units if u.choice == LOW), key=lambda u: u.cost, reverse=True):
            if size + (u.bytes_high - u.bytes_low) <= target.max_size:
                u.choice, predicted, size = HIGH, predicted - max(u.cost, 0.0), size + (u.bytes_high - u.bytes_low)
    plan = AutoPlan(_recipe_text(units), units, target, math.expm1(predicted), math.expm1(all_high), size)
    say(f"auto: calibrating the chosen mix ({sum(u.choice == LOW for u in units)}/{len(units)} parts {LOW})")
    chosen = parse_recipe(plan.recipe)
    plan.calibrated = calibrate(model, windows, chosen, read, say)
    with materialized(model, everything, read):
        with emulated(model, chosen, plan.calibrated.encoded, plan.calibrated.smoothed):
            plan.measured_increase = math.expm1(mean_kl(model, probe, reference))
    return plan


def _cost_of_low(model: nn.Module, unit: Unit, low: CalibrationResult, probe, reference, units: list[Unit]) -> float:
    """Mean KL divergence from the float model when `unit` alone takes its int4 weights (and its smoothed norms)
    in the int8 model."""
    recipe = parse_recipe(_with_part(units, unit, LOW))
    owned = [n for n in low.smoothed if _owner(n) == unit.part]
    saved = {n: model.get_parameter(n).detach().clone() for n in [*unit.params, *owned]}
    try:
        with torch.no_grad():
            for n in unit.params:
                model.get_parameter(n).copy_(stored_weight(model.get_parameter(n), recipe, n, low.encoded.get(n)))
            for n in owned:
                model.get_parameter(n).copy_(low.smoothed[n])
        return mean_kl(model, probe, reference)
    finally:
        with torch.no_grad():
            for n, value in saved.items():
                model.get_parameter(n).copy_(value)


def _owner(param: str) -> str | None:
    """The unit a smoothed 1-D parameter belongs to (the norm in front of a block part, or a bias inside it)."""
    m = re.match(r"layers\.(\d+)\.(input_norm|pre_mlp_norm|attn|mlp)\.", param)
    if not m:
        return None
    return f"layers.{m.group(1)}.{'attention' if m.group(2) in ('input_norm', 'attn') else 'feedforward'}"
