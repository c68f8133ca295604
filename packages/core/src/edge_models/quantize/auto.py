"""`--quantize auto`: a scheme per decoder block part, chosen to meet a quality or size target at the least size.

1. Every weight is calibrated twice, as int8 (`int8-gptq`) and as int4 (`int4-block32-gptq`), both on the inputs
   it gets with every block before it at int8 (`calibrate_pair`): the mixes are mostly int8. (Calibrated in an
   all-int4 model instead, Gemma 3 270M's quarter split cost +0.0202 KL, enough to miss a 3 % target it meets when
   converted; on int8 inputs it costs +0.0193, and the mix measured what was predicted, +2.98 %.)
2. Sensitivity: with everything at int8 (the file's arithmetic emulated, `quantize.simulate`), each unit (one
   block's attention, one block's feed-forward, the embedding/LM head; with per-layer inputs, Gemma 3n / 4, their
   table and the projections that mix it in) is switched alone to each smaller choice:
   int4, and for a tied embedding/LM head also splits (int4 with the first quarter, half or three quarters of the
   vocabulary's rows at int8, `rows.K`). The rise of the mean KL divergence from the float model is that choice's
   cost. (KL, not the rise of the negative log-likelihood: on a thousand tokens a single unit's NLL change is below
   the noise of near-tie tokens flipping, and came out negative for most of Gemma 3 270M's units.) It is measured
   on held-out windows spread over the calibration text (kept out of calibration): on the windows GPTQ was fitted
   to, a mix predicted at +3 % landed at +4.2 % on other text.
3. Units step down their choices, the least cost per byte saved first, while the predicted perplexity increase
   stays within `max_ppl_increase`, or until the weights fit `max_size`. The prediction takes the mean KL
   divergence as the log of the perplexity ratio (on Gemma 3 270M's files the two agree within about a third): the
   all-int8 divergence plus the chosen costs. Costs need not add up, so for a perplexity target the mix itself is
   then measured and the last steps are given back while it misses.
4. For a perplexity target, smaller mixes the walk passed over on predicted cost (one part a step further down,
   the costliest steps of others given back) are measured too, when predicted within a tenth of the budget above
   every-part-int8 over the target, and the smallest that measures within it is kept (single parts' costs are
   not additive: on Gemma 3 270M a mix predicted at +3.07 % measured +2.98 %).

The choice is an ordinary recipe string (`layers.N.feedforward=...`, `rows.K=...` parts), so the file can be
reproduced without `auto`. The converter's calibration of the chosen mix is measured and reported beside the
prediction.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from edge_models.quantize.calibrate import CalibrationResult, calibrate, calibrate_pair, materialized
from edge_models.quantize.recipes import RecipeError, parse_recipe, per_layer_part
from edge_models.quantize.simulate import emulated, log_probs, mean_kl, stored_weight

HIGH, LOW = "int8-gptq", "int4-block32-gptq"
# A tied embedding/LM head at LOW with its first rows at HIGH (`rows.K`): choices `rows.K`, K a quarter, a half and
# three quarters of the vocabulary (tokenizers number frequent pieces first).
SPLIT_FRACTIONS = (4, 2, 4 / 3)
SENSITIVITY_WINDOWS = 3  # calibration windows each sensitivity is measured on
SWAP_SLACK = 0.1  # smaller mixes predicted this share of the budget over the target are still measured
SWAP_MEASUREMENTS = 4  # at most this many of them
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
    # recipe part: layers.N.attention, layers.N.feedforward, embedding,lm_head, per_layer_table, per_layer_projections
    part: str
    params: list[str]
    sizes: dict[str, int]  # choice -> bytes stored: HIGH always; LOW (and rows.K splits) where int4 blocks fit
    numel: int = 0
    rows: int = 0  # of the first matrix (the vocabulary, for an embedding)
    costs: dict[str, float] = field(default_factory=dict)  # choice -> rise of mean KL when only this unit takes it
    choice: str = HIGH

    @property
    def options(self) -> list[str]:
        """Choices from the largest to the smallest."""
        return sorted(self.sizes, key=self.sizes.__getitem__, reverse=True)

    def cost(self, choice: str | None = None) -> float:
        """Predicted cost of `choice` (default: the current one); a cost that is noise below zero counts as free."""
        choice = choice or self.choice
        return 0.0 if choice == HIGH else max(self.costs.get(choice, 0.0), 0.0)


@dataclass
class AutoPlan:
    recipe: str
    units: list[Unit]
    target: Target
    predicted_increase: float  # perplexity ratio - 1
    all_high_increase: float
    weights_bytes: int
    held_out: bool  # measured on calibration text the rounding was not fitted to
    measured_increase: float | None = None  # the chosen mix, calibrated and emulated on the measuring windows
    calibrated: CalibrationResult | None = None  # the chosen mix's calibration, for the converter to write

    def table(self) -> str:
        rows = [("part", "params", "KL cost of each smaller choice", "choice", "MB")]
        for u in self.units:
            costs = " / ".join(f"{u.costs[c]:+.5f}" for c in u.options[1:]) or "-"
            choice = f"{LOW}, {u.choice}={HIGH}" if is_split(u.choice) else u.choice
            rows.append((u.part, f"{u.numel / 1e6:.2f}M", costs, choice, f"{u.sizes[u.choice] / 1e6:.1f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
        where = "held-out calibration text" if self.held_out else "the calibration windows themselves"
        lines.append(
            f"target: {self.target.describe()}; predicted: perplexity +{100 * self.predicted_increase:.2f} %, "
            f"weights {self.weights_bytes / 1e6:,.1f} MB (every part int8: +{100 * self.all_high_increase:.2f} %)"
            + ("" if self.measured_increase is None else f"; the chosen mix: +{100 * self.measured_increase:.2f} %")
            + f" (on {where})"
        )
        lines.append(f"recipe: {self.recipe}")
        return "\n".join(lines)


def is_split(choice: str) -> bool:
    return choice.startswith("rows.")


def split_rows(choice: str) -> int:
    """K of a `rows.K` choice."""
    return int(choice.removeprefix("rows."))


def units_of(model: nn.Module) -> list[Unit]:
    cfg = model.config
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if p.dim() == 2}
    groups: dict[str, list[str]] = {}
    for name in shapes:
        layer = re.match(r"layers\.(\d+)\.(attn|mlp)\.", name)
        if layer:
            part = f"layers.{layer.group(1)}.{'attention' if layer.group(2) == 'attn' else 'feedforward'}"
        elif per_layer_part(name):
            # Gemma 3n / 4: the per-layer table is a lookup like the embedding (rounded per row, never calibrated),
            # the projections mixing it in are linear layers; a unit each, chosen like any other.
            part = per_layer_part(name)
        elif cfg.tie_embeddings or name == "embed_tokens.weight":
            part = "embedding,lm_head" if cfg.tie_embeddings else "embedding"
        else:
            part = "lm_head"
        groups.setdefault(part, []).append(name)

    def high(r: int, c: int) -> int:
        return r * c + 4 * r

    def low(r: int, c: int) -> int:
        return r * c // 2 + 2 * r * (c // 32)

    units = []
    for part, params in groups.items():
        dims = [shapes[p] for p in params]
        sizes = {HIGH: sum(high(r, c) for r, c in dims)}
        if all(c % 32 == 0 for _, c in dims):
            sizes[LOW] = sum(low(r, c) for r, c in dims)
        unit = Unit(part, params, sizes, numel=sum(r * c for r, c in dims), rows=dims[0][0])
        if part == "embedding,lm_head" and LOW in sizes:
            cols = dims[0][1]
            for k in sorted({int(unit.rows / f) for f in SPLIT_FRACTIONS} - {0, unit.rows}):
                sizes[f"rows.{k}"] = high(k, cols) + low(unit.rows - k, cols)
        units.append(unit)
    return units


def _recipe_text(units: list[Unit]) -> str:
    """The shortest spelling: the majority scheme as default, the rest per part."""
    layer_units = [u for u in units if u.part.startswith("layers.")]
    low_layers = sum(u.choice == LOW for u in layer_units)
    default = LOW if low_layers * 2 > len(layer_units) else HIGH
    parts = [default]
    for u in units:
        scheme = LOW if is_split(u.choice) else u.choice
        if scheme != default:
            parts.extend(f"{p}={scheme}" for p in u.part.split(","))
        if is_split(u.choice):
            parts.append(f"{u.choice}={HIGH}")
    return ",".join(parts)


def choose_recipe(
    model: nn.Module,
    windows: list[list[int]],
    target: Target,
    read: Callable[[str], np.ndarray] | None = None,
    progress: Progress | None = None,
    held_out: list[list[int]] | None = None,
) -> AutoPlan:
    """The plan for `target` (nothing is written). `windows` calibrate; `held_out` (windows the rounding is not
    fitted to) measure, else the first calibration windows do. Raises RecipeError with the best reachable value
    when the target cannot be met with int8/int4 parts."""
    say = progress or (lambda _m: None)
    units = units_of(model)
    everything = [p for u in units for p in u.params]
    smallest = sum(min(u.sizes.values()) for u in units)
    if target.max_size is not None and smallest > target.max_size:
        raise RecipeError(
            f"auto: weights of {target.max_size / 1e6:,.1f} MB cannot be reached with int8/int4 parts; the "
            f"smallest is {smallest / 1e6:,.1f} MB (every part that allows it {LOW}). Nothing was written"
        )
    probe = held_out or windows[:SENSITIVITY_WINDOWS]
    high_recipe = parse_recipe(_recipe_text(units))
    for u in units:
        u.choice = LOW if LOW in u.sizes else HIGH
    low_recipe = parse_recipe(_recipe_text(units))
    for u in units:
        u.choice = HIGH
    say(f"auto: calibrating every part as {HIGH}, and as {LOW} on the same inputs")
    high, low = calibrate_pair(model, windows, high_recipe, low_recipe, read, say)
    with materialized(model, everything, read):
        reference = log_probs(model, probe)
        with emulated(model, high_recipe, high.encoded, high.smoothed):
            all_high = mean_kl(model, probe, reference)
    if target.max_ppl_increase is not None and all_high > math.log1p(target.max_ppl_increase):
        raise RecipeError(
            f"auto: a perplexity increase of {100 * target.max_ppl_increase:.2f} % cannot be reached with "
            f"int8/int4 parts; the best reachable is +{100 * math.expm1(all_high):.2f} % (every part {HIGH}, "
            f"{sum(u.sizes[HIGH] for u in units) / 1e6:,.1f} MB of weights; estimated on the calibration text). "
            "Nothing was written; use a larger target, or a float recipe (fp16)"
        )
    choices = _Choices(model, units, high, low)
    with materialized(model, everything, read):
        with emulated(model, high_recipe, high.encoded, high.smoothed):
            for k, unit in enumerate(units):
                for option in unit.options[1:]:
                    with choices.applied({unit.part: option}):
                        unit.costs[option] = mean_kl(model, probe, reference) - all_high
                shown = ", ".join(f"{c} {v:+.5f}" for c, v in unit.costs.items())
                say(f"auto: sensitivity {k + 1}/{len(units)} ({unit.part}{': ' if shown else ''}{shown})")
            steps = _greedy(units, target, all_high)
            if target.max_ppl_increase is not None:
                # Costs measured one unit at a time need not add up: measure the mix and give back the last
                # steps while it misses the target.
                limit = math.log1p(target.max_ppl_increase)
                while steps:
                    mixed = _measure(choices, {u.part: u.choice for u in units}, probe, reference)
                    if mixed <= limit:
                        break
                    unit, previous = steps.pop()
                    say(f"auto: the mix measured +{100 * math.expm1(mixed):.2f} %; {unit.part} back to {previous}")
                    unit.choice = previous
                _measured_swaps(units, all_high, limit, lambda mix: _measure(choices, mix, probe, reference), say)
    size = sum(u.sizes[u.choice] for u in units)
    predicted = all_high + sum(u.cost() for u in units)
    plan = AutoPlan(
        _recipe_text(units), units, target, math.expm1(predicted), math.expm1(all_high), size, bool(held_out)
    )
    say(f"auto: calibrating the chosen mix ({sum(u.choice != HIGH for u in units)}/{len(units)} parts below int8)")
    chosen = parse_recipe(plan.recipe)
    plan.calibrated = calibrate(model, windows, chosen, read, say)
    with materialized(model, everything, read):
        with emulated(model, chosen, plan.calibrated.encoded, plan.calibrated.smoothed):
            plan.measured_increase = math.expm1(mean_kl(model, probe, reference))
    return plan


def _greedy(units: list[Unit], target: Target, all_high: float) -> list[tuple[Unit, str]]:
    """Step units down their options, the least predicted cost per byte saved first, while the prediction stays
    within a perplexity target or until the weights fit a size target. Returns the steps taken as (unit, choice
    before), in order."""
    limit = math.log1p(target.max_ppl_increase) if target.max_ppl_increase is not None else math.inf
    predicted, size = all_high, sum(u.sizes[HIGH] for u in units)
    steps: list[tuple[Unit, str]] = []
    while target.max_size is None or size > target.max_size:
        candidates = [
            ((u.cost(o) - u.cost()) / (u.sizes[u.choice] - u.sizes[o]), u, o)
            for u in units
            for o in u.options[u.options.index(u.choice) + 1 :]
            if predicted + u.cost(o) - u.cost() <= limit
        ]
        if not candidates:
            break
        _, unit, option = min(candidates, key=lambda c: c[0])
        steps.append((unit, unit.choice))
        predicted += unit.cost(option) - unit.cost()
        size -= unit.sizes[unit.choice] - unit.sizes[option]
        unit.choice = option
    if target.max_size is not None:
        # One large step (an embedding) can overshoot the budget; spend what is left on the costliest parts.
        for u in sorted(units, key=lambda u: u.cost(), reverse=True):
            for o in u.options[: u.options.index(u.choice)]:
                if size + u.sizes[o] - u.sizes[u.choice] <= target.max_size and u.cost(o) < u.cost():
                    size += u.sizes[o] - u.sizes[u.choice]
                    u.choice = o
                    break
    return steps


def _predicted(units: list[Unit], all_high: float, mix: dict[str, str]) -> float:
    return all_high + sum(u.cost(mix[u.part]) for u in units)


def _swaps(units: list[Unit], all_high: float, limit: float, slack: float = SWAP_SLACK) -> list[dict[str, str]]:
    """Mixes smaller than the units' current choices: one unit a step (or more) further down, with other units'
    costliest steps per byte given back while the prediction is over `limit`; those predicted within `slack` of
    the budget above every-part-HIGH over `limit`, smallest first."""
    current = {u.part: u.choice for u in units}
    size_of = lambda mix: sum(u.sizes[mix[u.part]] for u in units)  # noqa: E731
    ceiling = limit + slack * (limit - all_high)
    found: dict[tuple[tuple[str, str], ...], tuple[int, float]] = {}
    for unit in units:
        for option in unit.options[unit.options.index(unit.choice) + 1 :]:
            mix = {**current, unit.part: option}
            while _predicted(units, all_high, mix) > limit:
                backs = [
                    ((u.cost(mix[u.part]) - u.cost(up)) / (u.sizes[up] - u.sizes[mix[u.part]]), u, up)
                    for u in units
                    if u is not unit and mix[u.part] != HIGH
                    for up in [u.options[u.options.index(mix[u.part]) - 1]]
                ]
                if not backs:
                    break
                _, back, up = max(backs, key=lambda b: b[0])
                mix[back.part] = up
            size, predicted = size_of(mix), _predicted(units, all_high, mix)
            if size < size_of(current) and predicted <= ceiling:
                found[tuple(mix.items())] = (size, predicted)
    return [dict(key) for key, _ in sorted(found.items(), key=lambda item: item[1])]


def _measured_swaps(
    units: list[Unit], all_high: float, limit: float, measure: Callable[[dict[str, str]], float], say: Progress
) -> None:
    """Take the smallest of `_swaps` that measures within `limit`, again from there, within SWAP_MEASUREMENTS."""
    left, moved = SWAP_MEASUREMENTS, True
    while left and moved:
        moved = False
        for mix in _swaps(units, all_high, limit)[:left]:
            left -= 1
            changed = ", ".join(f"{u.part}={mix[u.part]}" for u in units if mix[u.part] != u.choice)
            mixed = measure(mix)
            moved = mixed <= limit
            say(f"auto: tried {changed}: +{100 * math.expm1(mixed):.2f} %{' (kept)' if moved else ''}")
            if moved:
                for u in units:
                    u.choice = mix[u.part]
                break


def _measure(choices: _Choices, mix: dict[str, str], probe: list[list[int]], reference: list[torch.Tensor]) -> float:
    with choices.applied(mix):
        return mean_kl(choices.model, probe, reference)


class _Choices:
    """Units' choices applied to the model emulating every part at HIGH: their weights from the two
    calibrations (a split is the HIGH encoding's first rows over the LOW encoding's others; GPTQ rounds rows
    independently) and the smoothed norms in front of them."""

    def __init__(self, model: nn.Module, units: list[Unit], high: CalibrationResult, low: CalibrationResult):
        self.model, self.units = model, {u.part: u for u in units}
        self.high, self.low = high, low
        self.high_recipe = parse_recipe(HIGH)
        self.low_recipe = parse_recipe(LOW)

    def _weights(self, unit: Unit, choice: str) -> dict[str, torch.Tensor]:
        out = {}
        for n in unit.params:
            param = self.model.get_parameter(n)
            low = stored_weight(param, self.low_recipe, n, self.low.encoded)
            if is_split(choice):
                k = split_rows(choice)
                low[:k] = stored_weight(param, self.high_recipe, n, self.high.encoded)[:k]
            out[n] = low
        return out

    @contextlib.contextmanager
    def applied(self, choices: dict[str, str]) -> Iterator[None]:
        new: dict[str, torch.Tensor] = {}
        for part, choice in choices.items():
            if choice == HIGH:
                continue
            new.update(self._weights(self.units[part], choice))
            new.update({n: v for n, v in self.low.smoothed.items() if _owner(n) == part})
        saved = {n: self.model.get_parameter(n).detach().clone() for n in new}
        try:
            with torch.no_grad():
                for n, value in new.items():
                    self.model.get_parameter(n).copy_(value)
            yield
        finally:
            with torch.no_grad():
                for n, value in saved.items():
                    self.model.get_parameter(n).copy_(value)


def _owner(param: str) -> str | None:
    """The unit a smoothed 1-D parameter belongs to (the norm in front of a block part, or a bias inside it)."""
    m = re.match(r"layers\.(\d+)\.(input_norm|pre_mlp_norm|attn|mlp)\.", param)
    if not m:
        return None
    return f"layers.{m.group(1)}.{'attention' if m.group(2) in ('input_norm', 'attn') else 'feedforward'}"
