"""Llama-architecture models for edge-models: TinyLlama and any LlamaForCausalLM checkpoint, and the Llama
derivatives that differ from it only in config fields of core's decoder: SmolLM3 (layers without RoPE) and Granite
(embedding, residual and attention multipliers, logits scaling)."""

from __future__ import annotations

import dataclasses

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
from edge_models.hf.config import (
    UnsupportedConfigError,
    attempt,
    expect,
    gated_silu_decoder,
    layer_types,
    nope_layers,
    require,
    rope_parameters,
)

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


# What SmolLM3 and Granite take over from Llama's config.json but these readers do not build (no published
# checkpoint of either sets them).
_NO_BIAS = {"attention_bias": (False, None), "mlp_bias": (False, None)}


def smollm3_config_from_hf(hf: dict) -> ModelConfig:
    """`SmolLM3ForCausalLM`: the Llama block without RoPE on the layers `no_rope_layers` flags 0 (or on every
    `no_rope_layer_interval`-th); every unsupported field is named in one error."""
    problems: list[str] = []
    layers = hf.get("num_hidden_layers") or 0
    nope = attempt(problems, nope_layers, hf, layers)
    types = attempt(problems, layer_types, hf, layers)
    if types is not None and "sliding" in types:
        problems.append("'layer_types' has sliding_attention layers (SmolLM3's sliding window is not supported)")
    # transformers' SmolLM3 rotates with base 2e6 where config.json gives none.
    hf = {"rope_theta": 2_000_000.0, **hf}
    allowed = {**_NO_BIAS, "use_sliding_window": (False, None)}
    cfg = gated_silu_decoder(hf, problems, family="SmolLM3", allowed=allowed, max_seq_len=32768)
    return cfg.replace(nope_layers=nope)


# Granite's constants with transformers' defaults; attention_multiplier is the score scale itself (not 1/sqrt(d)).
_GRANITE_SCALES = ("embedding_multiplier", "residual_multiplier", "attention_multiplier", "logits_scaling")


def granite_config_from_hf(hf: dict) -> ModelConfig:
    """`GraniteForCausalLM`: the Llama block with Granite's multipliers; every unsupported field is named in one
    error."""
    scales = {key: hf.get(key, 1.0) for key in _GRANITE_SCALES}
    problems = [
        f"{key!r} = {value!r} (supported: a positive number)"
        for key, value in scales.items()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
    ]
    cfg = gated_silu_decoder(hf, problems, family="Granite", allowed=_NO_BIAS)
    return cfg.replace(
        attention=dataclasses.replace(cfg.attention, query_scale=float(scales["attention_multiplier"])),
        embedding_multiplier=float(scales["embedding_multiplier"]),
        residual_multiplier=float(scales["residual_multiplier"]),
        logit_divisor=float(scales["logits_scaling"]),
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

# SmolLM3-3B's shape as transformers' SmolLM3Config defaults give it (NoPE on layers 3, 7, ..., 35).
SMOLLM3_3B = {
    "architectures": ["SmolLM3ForCausalLM"],
    "model_type": "smollm3",
    "vocab_size": 128256,
    "hidden_size": 2048,
    "intermediate_size": 11008,
    "num_hidden_layers": 36,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-6,
    "rope_theta": 2000000.0,
    "max_position_embeddings": 32768,
    "no_rope_layer_interval": 4,
    "tie_word_embeddings": True,
}

# Four layers with NoPE on the 2nd and 4th: rotated and unrotated layers both run. Token ids inside the vocabulary
# (the defaults are Llama 3's, which a 256-entry embedding cannot hold as its padding row).
TINY_SMOLLM3 = {
    **SMOLLM3_3B,
    "vocab_size": 256,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "no_rope_layer_interval": 2,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": None,
}

GRANITE_33_2B = {
    "architectures": ["GraniteForCausalLM"],
    "model_type": "granite",
    "vocab_size": 49159,
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 40,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000000.0,
    "max_position_embeddings": 131072,
    "tie_word_embeddings": True,
    "embedding_multiplier": 12.0,
    "residual_multiplier": 0.22,
    "attention_multiplier": 0.015625,
    "logits_scaling": 8.0,
    "bos_token_id": 0,
    "eos_token_id": 0,
    "pad_token_id": 0,
}

# The published multipliers on a tiny shape (0.015625 is not head_dim ** -0.5 here), with a separate LM head.
TINY_GRANITE = {
    **GRANITE_33_2B,
    "vocab_size": 256,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
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


# SmolLM3's tokenizer adds no start token; its chat template is ChatML. A checkpoint's own files override these.
SMOLLM3_TOKENS = TokenizerDefaults(
    start_token=None,
    stop_tokens=("<|im_end|>", "<|end_of_text|>"),
    template=PromptTemplate(
        user_prefix="<|im_start|>user\n",
        user_suffix="<|im_end|>\n",
        model_prefix="<|im_start|>assistant\n",
        model_suffix="<|im_end|>\n",
        system_prefix="<|im_start|>system\n",
        system_suffix="<|im_end|>\n",
    ),
)

# Granite 3.x's role markers; its tokenizer adds no start token.
GRANITE_TOKENS = TokenizerDefaults(
    start_token=None,
    stop_tokens=("<|end_of_text|>",),
    template=PromptTemplate(
        user_prefix="<|start_of_role|>user<|end_of_role|>",
        user_suffix="<|end_of_text|>\n",
        model_prefix="<|start_of_role|>assistant<|end_of_role|>",
        model_suffix="<|end_of_text|>\n",
        system_prefix="<|start_of_role|>system<|end_of_role|>",
        system_suffix="<|end_of_text|>\n",
    ),
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
    # Each derivative: a generic spec named after its family, and its published model on the same reader.
    smollm3 = ModelSpec(
        name="smollm3",
        family="smollm3",
        architectures=("SmolLM3ForCausalLM",),
        config_from_hf=smollm3_config_from_hf,
        config=smollm3_config_from_hf(SMOLLM3_3B),
        published_hf_config=SMOLLM3_3B,
        tiny_hf_config=TINY_SMOLLM3,
        tensor_names=LLAMA_NAMES,
        tokenizer=SMOLLM3_TOKENS,
        reference_class="SmolLM3ForCausalLM",
        description="any SmolLM3ForCausalLM checkpoint (Llama with some layers without RoPE)",
    )
    register(smollm3)
    register(dataclasses.replace(smollm3, name="smollm3-3b", description="SmolLM3-3B"))
    granite = ModelSpec(
        name="granite",
        family="granite",
        architectures=("GraniteForCausalLM",),
        config_from_hf=granite_config_from_hf,
        config=granite_config_from_hf(GRANITE_33_2B),
        published_hf_config=GRANITE_33_2B,
        tiny_hf_config=TINY_GRANITE,
        tensor_names=LLAMA_NAMES,
        tokenizer=GRANITE_TOKENS,
        reference_class="GraniteForCausalLM",
        description="any GraniteForCausalLM checkpoint (Llama with embedding/residual/attention multipliers, "
        "logits scaling)",
    )
    register(granite)
    register(dataclasses.replace(granite, name="granite-3.3-2b", description="Granite-3.3-2B"))
