"""The registered families as test cases, read from the installed plugins: a new plugin is covered with no edit."""

from __future__ import annotations

from edge_models import registry

# One case per distinct (reference class, tiny config): presets of a family share theirs.
_seen: set = set()
CASES: list[str] = []
for entry in registry().entries():
    key = (entry.spec.reference_class, repr(sorted(entry.spec.tiny_hf_config.items())))
    if key not in _seen:
        _seen.add(key)
        CASES.append(entry.spec.name)

# Conversion tests need one case per distinct model of ours: a class that stores the same tiny decoder in another
# checkpoint layout (Qwen3.5's image-text class) converts to the same file; its loading is tested in test_families.
_models: set = set()
CONVERTED_CASES: list[str] = []
for _name in CASES:
    _key = repr(registry().get(_name).tiny_config)
    if _key not in _models:
        _models.add(_key)
        CONVERTED_CASES.append(_name)

# Variants that exercise options the tiny presets do not: (spec, label, config overrides).
VARIANTS = [
    ("llama", "mha-tied", {"num_key_value_heads": 4, "tie_word_embeddings": True}),
    (
        "llama",
        "llama3-rope",
        {
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            }
        },
    ),
    ("llama", "attention-bias", {"attention_bias": True, "mlp_bias": True}),
    ("llama", "head-dim", {"head_dim": 48}),
    ("phi-2", "qk-layernorm", {"qk_layernorm": True}),
    # SmolLM3's explicit flags (1 = RoPE) in place of an interval: the first layer goes without.
    ("smollm3", "no-rope-list", {"no_rope_layers": [0, 1, 1, 0]}),
]
