"""Phi-3, Phi-3.5 and Phi-4-mini for edge-models.

The checkpoint stores q, k and v as one `qkv_proj` and the gate and up projections as one `gate_up_proj`: the
tensor map names the fused tensors and core's loader splits them (checking their shapes). Long-context models
use LongRoPE (core's `longrope` scaling, short factors: contexts up to `original_max_position_embeddings`, 4,096
tokens for Phi-3.5-mini and Phi-4-mini). Phi-4-mini rotates 3/4 of each head.
"""

from __future__ import annotations

from edge_models import (
    ModelConfig,
    ModelSpec,
    PromptTemplate,
    TensorNames,
    TokenizerDefaults,
    hookimpl,
)
from edge_models.hf.config import gated_silu_decoder

__version__ = "0.1.0"


def phi3_config_from_hf(hf: dict) -> ModelConfig:
    """`Phi3ForCausalLM`: every unsupported field is named in one error."""
    # A window as long as the model's context changes nothing: attend globally.
    window = hf.get("sliding_window")
    if window and window >= hf.get("max_position_embeddings", 4096):
        window = None
    return gated_silu_decoder(
        hf, family="Phi-3", partial_rotary=True, sliding_window=window, eps=1e-5, max_seq_len=4096
    )


PHI3_NAMES = TensorNames.hf_decoder(fused_qkv=True, fused_gate_up=True)


def _longrope(rotary_dim: int, original: int = 4096) -> dict:
    # The published checkpoints' config.json carries their fitted factors; these stand in for shape-only use
    # (parameter counts, full-size benchmarks with random weights), where their values do not matter.
    return {
        "rope_type": "longrope",
        "short_factor": [1.0] * (rotary_dim // 2),
        "long_factor": [1.0] * (rotary_dim // 2),
        "original_max_position_embeddings": original,
    }


PHI35_MINI = {
    "architectures": ["Phi3ForCausalLM"],
    "model_type": "phi3",
    "vocab_size": 32064,
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "rope_theta": 10000.0,
    "rope_scaling": _longrope(96),
    "original_max_position_embeddings": 4096,
    "max_position_embeddings": 131072,
    "sliding_window": 262144,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
}
PHI4_MINI = {
    **PHI35_MINI,
    "vocab_size": 200064,
    "num_attention_heads": 24,
    "num_key_value_heads": 8,
    "partial_rotary_factor": 0.75,
    "rope_scaling": _longrope(96),
    "tie_word_embeddings": True,
}
# Tiny: partial rotary, LongRoPE with distinct short factors and a short original context, untied head.
TINY_PHI3 = {
    **PHI35_MINI,
    "vocab_size": 256,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "partial_rotary_factor": 0.75,
    "rope_scaling": {
        "rope_type": "longrope",
        "short_factor": [1.0 + 0.15 * i for i in range(12)],
        "long_factor": [2.0 + 0.5 * i for i in range(12)],
    },
    "original_max_position_embeddings": 64,
    "max_position_embeddings": 512,
    "sliding_window": None,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
}

PHI3_TOKENS = TokenizerDefaults(
    start_token=None,
    stop_tokens=("<|end|>", "<|endoftext|>"),
    template=PromptTemplate(
        user_prefix="<|user|>\n",
        user_suffix="<|end|>\n",
        model_prefix="<|assistant|>\n",
        model_suffix="<|end|>\n",
        system_prefix="<|system|>\n",
        system_suffix="<|end|>\n",
    ),
)


@hookimpl
def register_models(register):
    for name, published, description in (
        ("phi3", PHI35_MINI, "any Phi3ForCausalLM (fused qkv/gate_up, LongRoPE, partial rotary)"),
        ("phi-3.5-mini", PHI35_MINI, "Phi-3.5-mini-instruct (3.8B)"),
        ("phi-4-mini", PHI4_MINI, "Phi-4-mini-instruct (3.8B, 200k vocabulary, tied head)"),
    ):
        register(
            ModelSpec(
                name=name,
                family="phi3",
                architectures=("Phi3ForCausalLM",),
                config_from_hf=phi3_config_from_hf,
                config=phi3_config_from_hf(published),
                published_hf_config=published,
                tiny_hf_config=TINY_PHI3,
                tensor_names=PHI3_NAMES,
                tokenizer=PHI3_TOKENS,
                reference_class="Phi3ForCausalLM",
                description=description,
            )
        )
