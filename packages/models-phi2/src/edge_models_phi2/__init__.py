"""Microsoft Phi-2 for edge-models: a config and a tensor-name map on core's decoder."""

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
from edge_models.hf.config import expect, require, rope_parameters

__version__ = "0.1.0"

_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}


def phi_config_from_hf(hf: dict) -> ModelConfig:
    """`PhiForCausalLM`: parallel attention + MLP sharing one LayerNorm, partial rotary, biases everywhere."""
    act = expect(hf, "hidden_act", tuple(_ACTIVATIONS), default="gelu_new")
    hidden = require(hf, "hidden_size")
    heads = require(hf, "num_attention_heads")
    base, scaling, fraction = rope_parameters(hf)
    norm = NormConfig(kind="layer", eps=hf.get("layer_norm_eps", 1e-5), bias=True)
    return ModelConfig(
        vocab_size=require(hf, "vocab_size"),
        hidden_size=hidden,
        num_layers=require(hf, "num_hidden_layers"),
        attention=AttentionConfig(
            num_heads=heads,
            num_kv_heads=hf.get("num_key_value_heads") or heads,
            head_dim=hidden // heads,
            qkv_bias=True,
            out_bias=True,
            qk_norm=norm if hf.get("qk_layernorm") else None,
        ),
        mlp=MLPConfig(
            intermediate_size=require(hf, "intermediate_size"), activation=_ACTIVATIONS[act], gated=False, bias=True
        ),
        norm=norm,
        rope=RopeConfig(base=base, scaling=scaling, rotary_fraction=fraction),
        block="parallel",
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        lm_head_bias=True,
        max_seq_len=hf.get("max_position_embeddings", 2048),
    )


PHI_NAMES = TensorNames(
    embedding="model.embed_tokens",
    final_norm="model.final_layernorm",
    lm_head="lm_head",
    input_norm="model.layers.{}.input_layernorm",
    q_proj="model.layers.{}.self_attn.q_proj",
    k_proj="model.layers.{}.self_attn.k_proj",
    v_proj="model.layers.{}.self_attn.v_proj",
    o_proj="model.layers.{}.self_attn.dense",
    q_norm="model.layers.{}.self_attn.q_layernorm",
    k_norm="model.layers.{}.self_attn.k_layernorm",
    up_proj="model.layers.{}.mlp.fc1",
    down_proj="model.layers.{}.mlp.fc2",
)

PHI2_HF_CONFIG = {
    "architectures": ["PhiForCausalLM"],
    "model_type": "phi",
    "vocab_size": 51200,
    "hidden_size": 2560,
    "intermediate_size": 10240,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "partial_rotary_factor": 0.4,
    "rope_theta": 10000.0,
    "hidden_act": "gelu_new",
    "layer_norm_eps": 1e-5,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
    "bos_token_id": 50256,
    "eos_token_id": 50256,
}

TINY_PHI_HF_CONFIG = {
    **PHI2_HF_CONFIG,
    "vocab_size": 256,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 512,
    "bos_token_id": 0,
    "eos_token_id": 0,
}

# Phi-2's "QA" format from its model card; its tokenizer adds no BOS.
PHI2_TOKENS = TokenizerDefaults(
    start_token=None,
    stop_tokens=("<|endoftext|>",),
    template=PromptTemplate(user_prefix="Instruct: ", user_suffix="\n", model_prefix="Output:"),
)


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="phi-2",
            family="phi",
            architectures=("PhiForCausalLM",),
            config_from_hf=phi_config_from_hf,
            config=phi_config_from_hf(PHI2_HF_CONFIG),
            published_hf_config=PHI2_HF_CONFIG,
            tiny_hf_config=TINY_PHI_HF_CONFIG,
            tensor_names=PHI_NAMES,
            tokenizer=PHI2_TOKENS,
            reference_class="PhiForCausalLM",
            description="Microsoft Phi-2 (2.7B); byte-level BPE tokenizer.json",
        )
    )
