"""Qwen 2 / 2.5 and Qwen 3 for edge-models: configs and tensor-name maps on core's decoder.

Qwen 2 is the Llama block with biases on q, k and v (not on the output projection); Qwen 3 drops the biases and
normalises each head's q and k (RMSNorm over head_dim) before RoPE, with an explicit head_dim.
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
from edge_models.hf.config import attempt, gated_silu_decoder, layer_types

__version__ = "0.1.0"


def _qwen_config(hf: dict, qwen3: bool) -> ModelConfig:
    problems: list[str] = []
    types = attempt(problems, layer_types, hf, hf.get("num_hidden_layers", 0))
    sliding = types is not None and "sliding" in types
    if hf.get("use_sliding_window") and types is None:
        problems.append("'use_sliding_window' = True without 'layer_types' (which layers slide is not known)")
    return gated_silu_decoder(
        hf,
        problems,
        family="Qwen",
        allowed={"attention_bias": (False, None)} if qwen3 else None,
        qkv_bias=not qwen3,
        qk_norm=qwen3,
        sliding_window=hf.get("sliding_window") if sliding else None,
        layer_types=types,
        max_seq_len=32768,
    )


def qwen2_config_from_hf(hf: dict) -> ModelConfig:
    """`Qwen2ForCausalLM` (Qwen 2, Qwen 2.5): every unsupported field is named in one error."""
    return _qwen_config(hf, qwen3=False)


def qwen3_config_from_hf(hf: dict) -> ModelConfig:
    """`Qwen3ForCausalLM` (dense Qwen 3)."""
    return _qwen_config(hf, qwen3=True)


QWEN2_NAMES, QWEN3_NAMES = TensorNames.hf_decoder(), TensorNames.hf_decoder(qk_norm=True)

_COMMON = {"model_type": "qwen2", "vocab_size": 151936, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6}
QWEN25_05B = {
    **_COMMON,
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "tie_word_embeddings": True,
}
QWEN25_15B = {
    **QWEN25_05B,
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
}
QWEN3_06B = {
    **_COMMON,
    "model_type": "qwen3",
    "architectures": ["Qwen3ForCausalLM"],
    "hidden_size": 1024,
    "intermediate_size": 3072,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "attention_bias": False,
    "max_position_embeddings": 40960,
    "tie_word_embeddings": True,
}
QWEN3_17B = {**QWEN3_06B, "hidden_size": 2048, "intermediate_size": 6144}

_TINY = {"vocab_size": 256, "num_hidden_layers": 2, "max_position_embeddings": 512}
TINY_QWEN2 = {**QWEN25_05B, **_TINY, "hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 4}
TINY_QWEN3 = {
    **QWEN3_06B,
    **_TINY,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 48,
    "tie_word_embeddings": False,
}

# ChatML; Qwen's tokenizers add no start token. A checkpoint's own files override these.
QWEN_TOKENS = TokenizerDefaults(
    start_token=None,
    stop_tokens=("<|im_end|>", "<|endoftext|>"),
    template=PromptTemplate(
        user_prefix="<|im_start|>user\n",
        user_suffix="<|im_end|>\n",
        model_prefix="<|im_start|>assistant\n",
        model_suffix="<|im_end|>\n",
        system_prefix="<|im_start|>system\n",
        system_suffix="<|im_end|>\n",
    ),
)

_PRESETS = [
    ("qwen2", qwen2_config_from_hf, QWEN25_05B, TINY_QWEN2, QWEN2_NAMES, "Qwen2ForCausalLM", "any Qwen2ForCausalLM"),
    ("qwen2.5-0.5b", qwen2_config_from_hf, QWEN25_05B, TINY_QWEN2, QWEN2_NAMES, "Qwen2ForCausalLM", "Qwen2.5-0.5B"),
    ("qwen2.5-1.5b", qwen2_config_from_hf, QWEN25_15B, TINY_QWEN2, QWEN2_NAMES, "Qwen2ForCausalLM", "Qwen2.5-1.5B"),
    ("qwen3", qwen3_config_from_hf, QWEN3_06B, TINY_QWEN3, QWEN3_NAMES, "Qwen3ForCausalLM", "any Qwen3ForCausalLM"),
    ("qwen3-0.6b", qwen3_config_from_hf, QWEN3_06B, TINY_QWEN3, QWEN3_NAMES, "Qwen3ForCausalLM", "Qwen3-0.6B"),
    ("qwen3-1.7b", qwen3_config_from_hf, QWEN3_17B, TINY_QWEN3, QWEN3_NAMES, "Qwen3ForCausalLM", "Qwen3-1.7B"),
]


@hookimpl
def register_models(register):
    for name, from_hf, published, tiny, names, reference, description in _PRESETS:
        register(
            ModelSpec(
                name=name,
                family="qwen3" if reference == "Qwen3ForCausalLM" else "qwen2",
                architectures=(reference,),
                config_from_hf=from_hf,
                config=from_hf(published),
                published_hf_config=published,
                tiny_hf_config=tiny,
                tensor_names=names,
                tokenizer=QWEN_TOKENS,
                reference_class=reference,
                description=f"{description}; byte-level BPE tokenizer.json (bundles as .litertlm)",
            )
        )
