"""Every registered model family against transformers, on tiny random checkpoints.

Parametrised over the installed plugins' specs, so a new plugin is covered with no edit here.
"""

from __future__ import annotations

import pytest
import torch

from edge_models import registry
from edge_models.kinds.decoder import load_for_spec
from edge_models.kinds.decoder_verify import compare
from edge_models.testing import build_reference, save_reference
from helpers import read_hf_config
from helpers.families import CASES, VARIANTS


def _check(spec, hf_config, tmp_path, prompt_len=12, new_tokens=8):
    ref = build_reference(hf_config, spec.reference_class)
    ckpt = save_reference(ref, tmp_path / "ckpt")
    ours = load_for_spec(spec, ckpt, spec.config_from_hf(read_hf_config(ckpt)))
    ids = torch.randint(0, hf_config["vocab_size"], (prompt_len,), generator=torch.Generator().manual_seed(1)).tolist()
    result = compare(ours, ref, ids, new_tokens, atol=1e-4)
    assert result.max_abs_diff <= 1e-4, result
    assert result.greedy_match == new_tokens, result
    return ours, ref, result


@pytest.mark.parametrize("name", CASES)
@pytest.mark.slow
def test_matches_transformers(name, tmp_path):
    spec = registry().get(name)
    # Prompt longer than any tiny sliding window (8), so local attention is really exercised.
    _check(spec, spec.tiny_hf_config, tmp_path, prompt_len=12, new_tokens=8)


@pytest.mark.parametrize("name,label,overrides", VARIANTS, ids=[f"{v[0]}-{v[1]}" for v in VARIANTS])
@pytest.mark.slow
def test_variant_matches_transformers(name, label, overrides, tmp_path):
    spec = registry().get(name)
    _check(spec, {**spec.tiny_hf_config, **overrides}, tmp_path)


@pytest.mark.parametrize("name", ["smollm3", "granite"])
@pytest.mark.slow
def test_llama_derivatives_hold_for_32_greedy_tokens(name, tmp_path):
    """SmolLM3 (layers without RoPE) and Granite (multipliers, logits scaling) are Llama plus config fields: their
    logits stay within 1e-4 of transformers' over 32 greedy steps, every token the same."""
    spec = registry().get(name)
    _check(spec, spec.tiny_hf_config, tmp_path, prompt_len=12, new_tokens=32)


def test_auto_detects_every_architecture(tmp_path):
    from edge_models.kinds.decoder import resolve_spec

    for name in CASES:
        spec = registry().get(name)
        ckpt = save_reference(build_reference(spec.tiny_hf_config, spec.reference_class), tmp_path / name)
        assert spec.reference_class in resolve_spec("auto", ckpt).architectures
