"""Llama-architecture models for edge-models: TinyLlama and any LlamaForCausalLM checkpoint."""

from __future__ import annotations

from edge_models import (
    AttentionConfig,
    MLPConfig,
    ModelConfig,
    ModelSpec,
    NormConfig,
    PromptTemplate,
    RopeConfig,
    TensorNames,
    TokenizerDefaults,
    hookimpl,
)
from edge_models.hf_config import UnsupportedConfigError, expect, require, rope_parameters

__version__ = "0.1.0"


def llama_config_from_hf(hf: dict) -> ModelConfig:
    """A ModelConfig for any `LlamaForCausalLM` config.json; unsupported fields raise."""
    expect(hf, "hidden_act", ("silu",), default="silu")
    expect(hf, "pretraining_tp", (1, None), default=1)
    hidden = require(hf, "hidden_size")
    heads = require(hf, "num_attention_heads")
    base, scaling, fraction = rope_parameters(hf)
    if fraction != 1.0:
        raise UnsupportedConfigError(f"config.json partial_rotary_factor={fraction} is not a Llama setting")
    bias = bool(hf.get("attention_bias", False))
    return ModelConfig(
        vocab_size=require(hf, "vocab_size"),
        hidden_size=hidden,
        num_layers=require(hf, "num_hidden_layers"),
        attention=AttentionConfig(
            num_heads=heads,
            num_kv_heads=hf.get("num_key_value_heads") or heads,
            head_dim=hf.get("head_dim") or hidden // heads,
            qkv_bias=bias,
            out_bias=bias,
        ),
        mlp=MLPConfig(
            intermediate_size=require(hf, "intermediate_size"),
            activation="silu",
            gated=True,
            bias=bool(hf.get("mlp_bias", False)),
        ),
        norm=NormConfig(kind="rms", eps=hf.get("rms_norm_eps", 1e-6)),
        rope=RopeConfig(base=base, scaling=scaling),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        max_seq_len=hf.get("max_position_embeddings", 2048),
    )


LLAMA_NAMES = TensorNames(
    embedding="model.embed_tokens",
    final_norm="model.norm",
    lm_head="lm_head",
    input_norm="model.layers.{}.input_layernorm",
    q_proj="model.layers.{}.self_attn.q_proj",
    k_proj="model.layers.{}.self_attn.k_proj",
    v_proj="model.layers.{}.self_attn.v_proj",
    o_proj="model.layers.{}.self_attn.o_proj",
    pre_mlp_norm="model.layers.{}.post_attention_layernorm",
    gate_proj="model.layers.{}.mlp.gate_proj",
    up_proj="model.layers.{}.mlp.up_proj",
    down_proj="model.layers.{}.mlp.down_proj",
)

TINYLLAMA_HF_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 32000,
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 22,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
}

TINY_LLAMA_HF_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 256,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 512,
    "tie_word_embeddings": False,
}

# Zephyr-style chat format used by TinyLlama-1.1B-Chat-v1.0.
TINYLLAMA_CHAT = PromptTemplate(
    user_prefix="<|user|>\n",
    user_suffix="</s>\n",
    model_prefix="<|assistant|>\n",
    model_suffix="</s>\n",
    system_prefix="<|system|>\n",
    system_suffix="</s>\n",
)


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="tinyllama-1.1b",
            family="llama",
            architectures=("LlamaForCausalLM",),
            config_from_hf=llama_config_from_hf,
            config=llama_config_from_hf(TINYLLAMA_HF_CONFIG),
            published_hf_config=TINYLLAMA_HF_CONFIG,
            tiny_hf_config=TINY_LLAMA_HF_CONFIG,
            tensor_names=LLAMA_NAMES,
            tokenizer=TokenizerDefaults(start_token="<s>", stop_tokens=("</s>",), template=TINYLLAMA_CHAT),
            reference_class="LlamaForCausalLM",
            description="TinyLlama-1.1B-Chat-v1.0",
        )
    )
    register(
        ModelSpec(
            name="llama",
            family="llama",
            architectures=("LlamaForCausalLM",),
            config_from_hf=llama_config_from_hf,
            config=llama_config_from_hf(TINYLLAMA_HF_CONFIG),
            published_hf_config=TINYLLAMA_HF_CONFIG,
            tiny_hf_config=TINY_LLAMA_HF_CONFIG,
            tensor_names=LLAMA_NAMES,
            tokenizer=TokenizerDefaults(start_token="<s>", stop_tokens=("</s>",)),
            reference_class="LlamaForCausalLM",
            description="any LlamaForCausalLM checkpoint (Llama 2/3.x, SmolLM, OpenLLaMA, ...)",
        )
    )
