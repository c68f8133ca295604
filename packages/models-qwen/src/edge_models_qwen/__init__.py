"""Qwen 2 / 2.5 and Qwen 3 for edge-models: configs and tensor-name maps on core's decoder.

Qwen 2 is the Llama block with biases on q, k and v (not on the output projection); Qwen 3 drops the biases and
normalises each head's q and k (RMSNorm over head_dim) before RoPE, with an explicit head_dim.
"""

from __future__ import annotations

import dataclasses

from edge_models import (
    ModelConfig,
    ModelSpec,
    PromptTemplate,
    TensorNames,
    TokenizerDefaults,
    hookimpl,
)
from edge_models.config import AttentionConfig, GatedDeltaNetConfig, MLPConfig, NormConfig, RopeConfig
from edge_models.hf.config import attempt, check_fields, gated_silu_decoder, layer_types, require, rope_parameters

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
    _register_qwen35(register)


# --- Qwen3.5: three gated delta-net layers per attention layer ---


def _qwen35_text(hf: dict) -> dict:
    """The text decoder's fields: Qwen3.5 checkpoints are image-text models whose config nests them in
    `text_config`; the vision tower is left out."""
    return {**hf.get("text_config", {}), "architectures": hf.get("architectures")} if "text_config" in hf else hf


def qwen35_config_from_hf(hf: dict) -> ModelConfig:
    """`Qwen3_5ForCausalLM`, or the text decoder of `Qwen3_5ForConditionalGeneration`: every unsupported field is named
    in one error."""
    hf = _qwen35_text(hf)
    problems: list[str] = []
    layers = require(hf, "num_hidden_layers")
    if hf.get("layer_types") is not None:
        types = attempt(problems, layer_types, hf, layers, ("linear_attention",))
    else:
        every = hf.get("full_attention_interval", 4)
        types = tuple("global" if (i + 1) % every == 0 else "linear" for i in range(layers))
    rope = attempt(problems, rope_parameters, hf)
    check_fields(hf, {"hidden_act": ("silu", None), "attention_bias": (False, None)}, problems)
    hidden, heads = require(hf, "hidden_size"), require(hf, "num_attention_heads")
    eps = hf.get("rms_norm_eps", 1e-6)
    # transformers defaults the rotated fraction to a quarter when the config names none.
    given = hf.get("partial_rotary_factor", (hf.get("rope_parameters") or {}).get("partial_rotary_factor"))
    fraction = rope[2] if rope is not None and given is not None else 0.25
    return ModelConfig(
        vocab_size=require(hf, "vocab_size"),
        hidden_size=hidden,
        num_layers=layers,
        attention=AttentionConfig(
            num_heads=heads,
            num_kv_heads=hf.get("num_key_value_heads") or heads,
            head_dim=hf.get("head_dim") or hidden // heads,
            qk_norm=NormConfig(kind="rms", eps=eps, zero_centered=True),
            output_gate=True,
        ),
        mlp=MLPConfig(intermediate_size=require(hf, "intermediate_size"), activation="silu", gated=True),
        norm=NormConfig(kind="rms", eps=eps, zero_centered=True),
        rope=RopeConfig(base=rope[0] if rope else 10_000.0, scaling=None, rotary_fraction=fraction),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        layer_types=types,
        delta_net=GatedDeltaNetConfig(
            num_key_heads=require(hf, "linear_num_key_heads"),
            num_value_heads=require(hf, "linear_num_value_heads"),
            key_head_dim=require(hf, "linear_key_head_dim"),
            value_head_dim=require(hf, "linear_value_head_dim"),
            conv_kernel_size=hf.get("linear_conv_kernel_dim", 4),
            norm_eps=eps,
        ),
        max_seq_len=hf.get("max_position_embeddings", 32768),
    )


QWEN35_NAMES = dataclasses.replace(TensorNames.hf_decoder(qk_norm=True), delta_net="model.layers.{}.linear_attn")

TINY_QWEN35 = {
    "architectures": ["Qwen3_5ForCausalLM"],
    "model_type": "qwen3_5_text",
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "linear_num_key_heads": 2,
    "linear_num_value_heads": 4,
    "linear_key_head_dim": 16,
    "linear_value_head_dim": 16,
    "linear_conv_kernel_dim": 4,
    "layer_types": ["linear_attention", "linear_attention", "linear_attention", "full_attention"],
    "rope_parameters": {"rope_type": "default", "rope_theta": 10_000_000.0, "partial_rotary_factor": 0.25},
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 512,
    "tie_word_embeddings": True,
    "eos_token_id": 248,
}

_QWEN35_TOKENS = dataclasses.replace(QWEN_TOKENS, stop_tokens=("<|im_end|>", "<|endoftext|>"))

# The published sizes' text decoders (their checkpoints are image-text models; these are the `text_config` fields, as
# a text-only config transformers builds). Every fourth layer attends; head_dim 256, RoPE on a quarter of it.
_QWEN35_COMMON = {
    "architectures": ["Qwen3_5ForCausalLM"],
    "model_type": "qwen3_5_text",
    "vocab_size": 248320,
    "head_dim": 256,
    "linear_num_key_heads": 16,
    "linear_key_head_dim": 128,
    "linear_value_head_dim": 128,
    "linear_conv_kernel_dim": 4,
    "full_attention_interval": 4,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10_000_000.0, "partial_rotary_factor": 0.25},
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 262144,
    "eos_token_id": 248044,
}


def _qwen35_published(hidden: int, layers: int, heads: int, kv_heads: int, ff: int, value_heads: int, tied: bool):
    return {
        **_QWEN35_COMMON,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "intermediate_size": ff,
        "linear_num_value_heads": value_heads,
        "tie_word_embeddings": tied,
    }


QWEN35_PRESETS = {
    "qwen3.5-0.8b": ("Qwen3.5-0.8B", _qwen35_published(1024, 24, 8, 2, 3584, 16, tied=True)),
    "qwen3.5-2b": ("Qwen3.5-2B", _qwen35_published(2048, 24, 8, 2, 6144, 16, tied=True)),
    "qwen3.5-4b": ("Qwen3.5-4B", _qwen35_published(2560, 32, 16, 4, 9216, 32, tied=True)),
    "qwen3.5-9b": ("Qwen3.5-9B", _qwen35_published(4096, 32, 16, 4, 12288, 32, tied=False)),
}

# The published checkpoints are image-text models: core's loader reads their text decoder (`model.language_model.*`)
# under the text-only names and leaves the vision tower (`model.visual.*`) out, saying so.
TINY_QWEN35_IMAGE_TEXT = {
    "architectures": ["Qwen3_5ForConditionalGeneration"],
    "model_type": "qwen3_5",
    "text_config": {**{k: v for k, v in TINY_QWEN35.items() if k != "architectures"}},
    "vision_config": {
        "depth": 1,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 64,
        "num_position_embeddings": 64,
    },
    "tie_word_embeddings": True,
    # The text decoder's, repeated at the top as tests and tools read it there.
    "vocab_size": 256,
}


def _register_qwen35(register) -> None:
    register(
        ModelSpec(
            name="qwen3.5",
            family="qwen3.5",
            architectures=("Qwen3_5ForCausalLM",),
            config_from_hf=qwen35_config_from_hf,
            config=qwen35_config_from_hf(TINY_QWEN35),
            tiny_hf_config=TINY_QWEN35,
            tensor_names=QWEN35_NAMES,
            tokenizer=_QWEN35_TOKENS,
            reference_class="Qwen3_5ForCausalLM",
            description="any Qwen3_5ForCausalLM (gated delta-net + gated attention)",
        )
    )
    register(
        ModelSpec(
            name="qwen3.5-image-text",
            family="qwen3.5",
            architectures=("Qwen3_5ForConditionalGeneration",),
            config_from_hf=qwen35_config_from_hf,
            config=qwen35_config_from_hf(TINY_QWEN35_IMAGE_TEXT),
            tiny_hf_config=TINY_QWEN35_IMAGE_TEXT,
            tensor_names=QWEN35_NAMES,
            tokenizer=_QWEN35_TOKENS,
            reference_class="Qwen3_5ForConditionalGeneration",
            description="the text decoder of a Qwen3_5ForConditionalGeneration checkpoint (the published Qwen3.5 "
            "models); the vision tower is left out",
        )
    )
    # After the generic classes, which `auto` picks for these architectures.
    for name, (description, published) in QWEN35_PRESETS.items():
        register(
            ModelSpec(
                name=name,
                family="qwen3.5",
                architectures=("Qwen3_5ForConditionalGeneration", "Qwen3_5ForCausalLM"),
                config_from_hf=qwen35_config_from_hf,
                config=qwen35_config_from_hf(published),
                published_hf_config=published,
                tiny_hf_config=TINY_QWEN35,
                tensor_names=QWEN35_NAMES,
                tokenizer=_QWEN35_TOKENS,
                reference_class="Qwen3_5ForCausalLM",
                description=f"{description} (its text decoder; the vision tower is left out)",
            )
        )
