"""What the encoder and encoder-decoder converters share: these models are small (all-MiniLM-L6-v2 has 23M
parameters), so they take litert-torch's own lowering and ai-edge-quantizer rather than the decoder's streaming
writer, and recipes without calibration or per-layer parts."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from edge_models.convert.converter import ConvertResult
from edge_models.io.files import write_atomically
from edge_models.quantize import Recipe, RecipeError, parse_recipe
from edge_models.quantize.ai_edge import quantize_flatbuffer
from edge_models.runtime.memory import peak_rss_bytes


def plain_recipe(recipe: str | None, kind: str) -> Recipe:
    """`recipe` parsed, refused when it asks for what only the decoder's writer does."""
    parsed = parse_recipe(recipe)
    if parsed.is_calibrated or parsed.has_layer_parts:
        raise RecipeError(
            f"recipe {parsed.text!r}: calibrated (-gptq) schemes and per-layer parts are for decoders; {kind} take "
            "int8, int8-weight, fp16, fp32 or int4 blocks"
        )
    return parsed


def lower_and_write(
    converter, recipe: Recipe, output: str | Path, names: list[str], say: Callable[[str], None], started: float
) -> ConvertResult:
    """Lower `converter`'s signatures (`names`), quantize by `recipe`, write `output` atomically after checking
    that the file has exactly those signatures."""
    say(f"exporting and lowering {len(names)} signatures ({', '.join(names)})")
    with torch.no_grad():
        flatbuffer = converter.convert().model_content()
    if not recipe.is_float32:
        say(f"quantizing with recipe {recipe.text}")
        flatbuffer = quantize_flatbuffer(flatbuffer, recipe)
    say(f"writing and checking {output}")
    path = write_atomically(output, lambda f: f.write(flatbuffer), lambda p: _check(p, names))
    seconds = time.perf_counter() - started
    return ConvertResult(path, path.stat().st_size, names, seconds, peak_rss_bytes(), recipe.text)


def _check(path: Path, expected: list[str]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    found = sorted(Interpreter(str(path)).get_signature_list())
    if found != sorted(expected):
        raise RuntimeError(f"converted file has signatures {found}, expected {sorted(expected)}")
