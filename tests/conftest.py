"""Shared fixtures: tiny random `transformers` checkpoints saved in the HF layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch


def build_reference(hf_config: dict, reference_class: str, seed: int = 0):
    """A transformers model with random weights; every parameter is perturbed, norms included,
    so that a wrong tensor mapping cannot go unnoticed."""
    import transformers

    fields = {k: v for k, v in hf_config.items() if k not in ("architectures", "model_type")}
    config = transformers.AutoConfig.for_model(hf_config["model_type"], **fields)
    config.architectures = list(hf_config.get("architectures", [reference_class]))
    torch.manual_seed(seed)
    model = getattr(transformers, reference_class)._from_config(config, attn_implementation="eager", dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def save_reference(model, directory: Path, **save_kwargs) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, **save_kwargs)
    return directory


def read_hf_config(directory: Path) -> dict:
    return json.loads((directory / "config.json").read_text())


@pytest.fixture
def tiny_llama(tmp_path):
    """(reference model, checkpoint dir, spec) for the generic Llama spec."""
    from edge_models import registry

    spec = registry().get("llama")
    ref = build_reference(spec.tiny_hf_config, spec.reference_class)
    return ref, save_reference(ref, tmp_path / "llama"), spec
