"""`convert --composites`: RMSNorm marked as `odml.rms_norm` composites, the CPU's numbers unchanged."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edge_models import registry
from edge_models.convert import ExportSettings, convert
from edge_models.kinds.decoder import random_model
from edge_models.layers.norms import RMSNorm
from edge_models.runtime.litert_model import LiteRTModel
from edge_models.tflite.reading import mapped
from edge_models.tflite.summary import summarize

pytestmark = pytest.mark.slow  # converts two files per family

PLAIN = ExportSettings(prefill_lengths=(8,), kv_cache_len=32)
PROMPT = [3, 17, 5, 9, 11]


def _greedy(path, steps: int = 8) -> tuple[list[int], np.ndarray]:
    """Greedy tokens after PROMPT, and the logits of every decode step."""
    model = LiteRTModel(path, threads=1, windows=False)
    model.reset()
    model.prefill(PROMPT[:-1])
    token, pos, tokens, logits = PROMPT[-1], len(PROMPT) - 1, [], []
    for _ in range(steps):
        step = model.decode(token, pos).reshape(-1)
        logits.append(step)
        token, pos = int(step.argmax()), pos + 1
        tokens.append(token)
    return tokens, np.stack(logits)


# Gemma 3: `1 + w` norms, q/k norms, pre and post norms; Llama: plain; Qwen 3: q/k norms.
@pytest.mark.parametrize("family", ["gemma3-270m", "llama", "qwen3"])
def test_composites_keep_the_cpu_numbers(family, tmp_path):
    model = random_model(registry().get(family).tiny_config, seed=2)
    plain = convert(model, tmp_path / "plain.tflite", PLAIN, "fp32", progress=None).path
    marked_settings = dataclasses.replace(PLAIN, composites=True)
    marked = convert(model, tmp_path / "marked.tflite", marked_settings, "fp32", progress=None).path
    assert not any(getattr(m, "composite", False) for m in model.modules())  # the model is left as it was

    with mapped(marked) as data:
        decode = next(s for s in summarize(data).signatures if s.name == "decode")
    norms = sum(isinstance(m, RMSNorm) and m.weight is not None for m in model.modules())
    assert decode.composites == {"odml.rms_norm": norms}
    with mapped(plain) as data:
        assert not next(s for s in summarize(data).signatures if s.name == "decode").composites

    plain_tokens, plain_logits = _greedy(plain)
    marked_tokens, marked_logits = _greedy(marked)
    assert marked_tokens == plain_tokens
    assert np.abs(marked_logits - plain_logits).max() <= 1e-5
