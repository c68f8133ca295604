"""The families added as plugins (Qwen 2/3, Mistral, Phi-3, SmolLM3, Granite): what their building blocks must get
right, checked against transformers directly, and int8 conversion of each. Logits and greedy tokens of every
registered family against transformers are in test_families.py, fp32 files in test_convert.py, LiteRT-LM runs in the
bundler's tests.
"""

from __future__ import annotations

import json

import pytest
import torch

from conftest import build_reference, read_hf_config, save_reference
from edge_models import registry
from edge_models.hf.config import UnsupportedConfigError
from edge_models.kinds.decoder import load_for_spec
from edge_models.loader import CheckpointError

NEW_FAMILIES = ["qwen2", "qwen3", "mistral", "phi3"]


def test_new_families_are_registered_through_entry_points():
    entries = {e.spec.name: e.provider for e in registry().entries()}
    for name in ["qwen2.5-0.5b", "qwen2.5-1.5b", "qwen3-0.6b", "qwen3-1.7b", "mistral", "phi-3.5-mini", "phi-4-mini"]:
        assert name in entries
    assert entries["qwen3"].startswith("edge-models-qwen") and entries["phi3"].startswith("edge-models-phi3")
    for arch, name in [("Qwen2ForCausalLM", "qwen2"), ("Qwen3ForCausalLM", "qwen3"), ("Phi3ForCausalLM", "phi3")]:
        assert registry().for_architecture([arch]).name == name


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


def test_every_unsupported_field_is_named_in_one_message():
    spec = registry().get("qwen2")
    hf = {
        **spec.tiny_hf_config,
        "hidden_act": "gelu",
        "rope_scaling": {"rope_type": "yarn", "factor": 4.0},
        "use_sliding_window": True,
    }
    with pytest.raises(UnsupportedConfigError) as e:
        spec.config_from_hf(hf)
    message = str(e.value)
    assert "3 unsupported setting(s)" in message
    for fragment in ("'yarn'", "'hidden_act' = 'gelu'", "use_sliding_window"):
        assert fragment in message, message
    with pytest.raises(UnsupportedConfigError, match="'attention_bias' = True"):
        registry().get("qwen3").config_from_hf({**registry().get("qwen3").tiny_hf_config, "attention_bias": True})


@pytest.mark.parametrize(
    "fields",
    [
        {"num_hidden_layers": 8},
        {"num_hidden_layers": 6, "no_rope_layer_interval": 3},
        {"num_hidden_layers": 4, "no_rope_layers": [0, 1, 1, 0]},
        {"num_hidden_layers": 4, "no_rope_layers": [1, 1, 1, 1, 0], "no_rope_layer_interval": 2},
    ],
    ids=["default-interval", "interval", "list", "longer-list-wins"],
)
def test_smollm3_layers_without_rope_are_those_transformers_picks(fields):
    import transformers

    spec = registry().get("smollm3")
    hf = {k: v for k, v in spec.tiny_hf_config.items() if k != "no_rope_layer_interval"} | fields
    reference = transformers.SmolLM3Config(**{k: v for k, v in hf.items() if k not in ("architectures", "model_type")})
    expected = tuple(i for i in range(hf["num_hidden_layers"]) if not reference.no_rope_layers[i])
    assert spec.config_from_hf(hf).nope_layers == expected


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


def test_llama_derivatives_name_every_unsupported_field_in_one_message():
    smollm3 = registry().get("smollm3")
    hf = {
        **smollm3.tiny_hf_config,
        "attention_bias": True,
        "use_sliding_window": True,
        "sliding_window": 8,
        "no_rope_layers": [1, 2, 1, 0],
        "rope_scaling": {"rope_type": "yarn", "factor": 2.0},
    }
    with pytest.raises(UnsupportedConfigError) as e:
        smollm3.config_from_hf(hf)
    message = str(e.value)
    assert "4 unsupported setting(s)" in message and "SmolLM3ForCausalLM" in message
    for fragment in ("'attention_bias' = True", "'use_sliding_window' = True", "no_rope_layers", "'yarn'"):
        assert fragment in message, message
    granite = registry().get("granite")
    hf = {**granite.tiny_hf_config, "mlp_bias": True, "logits_scaling": 0, "hidden_act": "gelu"}
    with pytest.raises(UnsupportedConfigError) as e:
        granite.config_from_hf(hf)
    message = str(e.value)
    assert "3 unsupported setting(s)" in message
    for fragment in ("'mlp_bias' = True", "'logits_scaling' = 0", "'hidden_act' = 'gelu'"):
        assert fragment in message, message


@pytest.mark.parametrize("name", NEW_FAMILIES)
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
