"""Building blocks that single families need (Phi-3's fused projections and LongRoPE, SmolLM3's layers without RoPE,
Granite's multipliers), checked against transformers directly, and int8 conversion of Qwen 2/3, Mistral and Phi-3.
Their configs are in test_family_configs.py; logits and greedy tokens of every registered family against transformers
in test_families.py, fp32 files in test_convert.py, LiteRT-LM runs in the bundler's tests.
"""

from __future__ import annotations

import json

import pytest
import torch

from edge_models import registry
from edge_models.kinds.decoder import load_for_spec
from edge_models.loader import CheckpointError
from edge_models.testing import build_reference, save_reference
from helpers import read_hf_config

NEW_FAMILIES = ["qwen2", "qwen3", "mistral", "phi3"]


def test_fused_projections_are_split_like_transformers(tmp_path):
    spec = registry().get("phi3")
    ref = build_reference(spec.tiny_hf_config, spec.reference_class)
    ours = load_for_spec(spec, save_reference(ref, tmp_path / "ckpt"))
    attn, mlp = ref.model.layers[1].self_attn, ref.model.layers[1].mlp
    q, k, v = ours.layers[1].attn.q_proj.weight, ours.layers[1].attn.k_proj.weight, ours.layers[1].attn.v_proj.weight
    assert torch.equal(torch.cat([q, k, v]), attn.qkv_proj.weight)
    assert k.shape[0] == ref.config.num_key_value_heads * ours.config.attention.head_dim
    gate, up = ours.layers[1].mlp.gate_proj.weight, ours.layers[1].mlp.up_proj.weight
    assert torch.equal(torch.cat([gate, up]), mlp.gate_up_proj.weight)
    x = torch.randn(3, spec.tiny_hf_config["hidden_size"])
    with torch.no_grad():
        assert torch.allclose(ours.layers[1].mlp(x), mlp(x), atol=1e-6)


def test_fused_tensor_of_the_wrong_shape_is_named(tmp_path):
    from safetensors.torch import load_file, save_file

    spec = registry().get("phi3")
    ckpt = save_reference(build_reference(spec.tiny_hf_config, spec.reference_class), tmp_path / "ckpt")
    tensors = load_file(ckpt / "model.safetensors")
    name = "model.layers.0.mlp.gate_up_proj.weight"
    tensors[name] = tensors[name][:-4]
    save_file(tensors, ckpt / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"gate_up_proj.weight': expected \[512, 128\] \(fused projections"):
        load_for_spec(spec, ckpt)


def test_longrope_cos_sin_match_transformers():
    import transformers

    spec = registry().get("phi3")
    hf = {**spec.tiny_hf_config, "partial_rotary_factor": 0.75}
    ours = load_config_rope(spec, hf)
    config = transformers.AutoConfig.for_model("phi3", **{k: v for k, v in hf.items() if k != "model_type"})
    rotary = transformers.models.phi3.modeling_phi3.Phi3RotaryEmbedding(config)
    positions = torch.arange(0, 60)
    x = torch.zeros(1, 60, 4, ours.rotary_dim)
    cos_ref, sin_ref = rotary(x, positions[None])
    cos, sin = ours.cos_sin(positions)
    assert ours.attention_factor > 1.2
    assert torch.allclose(cos, cos_ref[0], atol=1e-6) and torch.allclose(sin, sin_ref[0], atol=1e-6)


def load_config_rope(spec, hf):
    from edge_models.layers.rope import RotaryEmbedding

    config = spec.config_from_hf(hf)
    return RotaryEmbedding(config.rotary_dim, config.rope.base, config.rope.scaling)


@pytest.mark.parametrize(
    "name,field,default",
    [
        ("smollm3", "nope_layers", ()),
        ("granite", "embedding_multiplier", 1.0),
        ("granite", "residual_multiplier", 1.0),
        ("granite", "logit_divisor", 1.0),
        ("granite", "attention", None),
    ],
)
def test_each_derivative_field_changes_the_logits(name, field, default, tmp_path):
    """Left at its default, each field the tiny configs set moves the logits far beyond the families tests'
    tolerance: those tests cannot pass on a model that ignores it."""
    import dataclasses

    spec = registry().get(name)
    ckpt = save_reference(build_reference(spec.tiny_hf_config, spec.reference_class), tmp_path / "ckpt")
    config = spec.config_from_hf(read_hf_config(ckpt))
    if field == "attention":
        default = dataclasses.replace(config.attention, query_scale=None)
    ids = torch.arange(12)[None]
    logits = []
    for cfg in (config, config.replace(**{field: default})):
        model = load_for_spec(spec, ckpt, cfg)
        with torch.no_grad():
            logits.append(model(ids, torch.arange(12), model.empty_cache(16))[0])
    assert (logits[0] - logits[1]).abs().max() > 1e-2 * logits[0].abs().max()


@pytest.mark.parametrize("name", NEW_FAMILIES)
@pytest.mark.slow
def test_int8_converts(name, tmp_path):
    from edge_models.convert import ExportSettings, convert
    from edge_models.runtime import LiteRTModel

    spec = registry().get(name)
    ckpt = save_reference(build_reference(spec.tiny_hf_config, spec.reference_class), tmp_path / "ckpt")
    model = load_for_spec(spec, ckpt, spec.config_from_hf(read_hf_config(ckpt)))
    result = convert(model, tmp_path / "m.tflite", ExportSettings((8,), 64), "int8", progress=None)
    runner = LiteRTModel(result.path)
    runner.prefill([1, 2, 3], 0)
    assert runner.decode(4, 3).shape == (spec.tiny_hf_config["vocab_size"],)
    assert json.loads((ckpt / "config.json").read_text())["architectures"] == [spec.reference_class]
