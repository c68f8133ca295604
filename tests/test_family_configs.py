"""Families' configs read from a checkpoint's config.json (Qwen 2/3, Mistral, Phi-3, SmolLM3, Granite): the family an
architecture maps to, every unsupported setting named in one message, and derived fields as transformers derives them.
"""

from __future__ import annotations

import pytest

from edge_models import registry
from edge_models.hf.config import UnsupportedConfigError


def test_new_families_are_registered_through_entry_points():
    entries = {e.spec.name: e.provider for e in registry().entries()}
    for name in ["qwen2.5-0.5b", "qwen2.5-1.5b", "qwen3-0.6b", "qwen3-1.7b", "mistral", "phi-3.5-mini", "phi-4-mini"]:
        assert name in entries
    assert entries["qwen3"].startswith("edge-models-qwen") and entries["phi3"].startswith("edge-models-phi3")
    for arch, name in [("Qwen2ForCausalLM", "qwen2"), ("Qwen3ForCausalLM", "qwen3"), ("Phi3ForCausalLM", "phi3")]:
        assert registry().for_architecture([arch]).name == name


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
