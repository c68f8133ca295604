"""Liquid AI's LFM2 and LFM2.5 for edge-models: configs and tensor-name maps on core's decoder.

An LFM2 decoder interleaves gated short convolutions (core's "conv" layers: `B·x`, a causal depthwise convolution
over the last `conv_L_cache` inputs, `C·y`) with grouped-query attention layers that normalise q and k per head.
Every block is pre-norm with a SwiGLU MLP; the checkpoint's `embedding_norm` is the final norm.
"""

from __future__ import annotations

from edge_models import ModelConfig, ModelSpec, PromptTemplate, TensorNames, TokenizerDefaults, hookimpl
from edge_models.config import AttentionConfig, MLPConfig, NormConfig, RopeConfig, ShortConvConfig
from edge_models.hf.config import attempt, check_fields, layer_types, require, rope_parameters

__version__ = "0.1.0"


def _mlp_width(hf: dict) -> int:
    """The MLP width as transformers derives it: with `block_auto_adjust_ff_dim`, 2/3 of `intermediate_size`, times
    `block_ffn_dim_multiplier`, rounded up to a multiple of `block_multiple_of`."""
    width = hf.get("block_ff_dim") or require(hf, "intermediate_size")
    if not hf.get("block_auto_adjust_ff_dim", True):
        return width
    width = int(2 * width / 3)
    multiplier = hf.get("block_ffn_dim_multiplier", 1.0)
    if multiplier is not None:
        width = int(multiplier * width)
        step = hf.get("block_multiple_of", 256)
        width = step * ((width + step - 1) // step)
    return width


def _types(hf: dict, layers: int) -> tuple[str, ...]:
    """`layer_types`, or transformers' fallback: `full_attn_idxs` attend, the others convolve."""
    if hf.get("layer_types") is not None:
        return layer_types(hf, layers, accept=("conv",))
    attend = hf.get("full_attn_idxs")
    attend = range(layers) if attend is None else attend
    return tuple("global" if i in attend else "conv" for i in range(layers))


def lfm2_config_from_hf(hf: dict) -> ModelConfig:
    """`Lfm2ForCausalLM` (LFM2, LFM2.5): every unsupported field is named in one error."""
    problems: list[str] = []
    layers = require(hf, "num_hidden_layers")
    types = attempt(problems, _types, hf, layers)
    rope = attempt(problems, rope_parameters, hf)
    if rope is not None and rope[2] != 1.0:
        problems.append(f"partial rotary factor {rope[2]} (LFM2 rotates whole heads)")
    check_fields(hf, {"block_use_swiglu": (True, None)}, problems)
    hidden, heads = require(hf, "hidden_size"), require(hf, "num_attention_heads")
    eps = hf.get("norm_eps", 1e-5)
    tie = hf.get("tie_word_embeddings", hf.get("tie_embedding", True))
    return ModelConfig(
        vocab_size=require(hf, "vocab_size"),
        hidden_size=hidden,
        num_layers=layers,
        attention=AttentionConfig(
            num_heads=heads,
            num_kv_heads=hf.get("num_key_value_heads") or heads,
            head_dim=hf.get("head_dim") or hidden // heads,
            qk_norm=NormConfig(kind="rms", eps=eps),
        ),
        mlp=MLPConfig(intermediate_size=_mlp_width(hf), activation="silu", gated=True),
        norm=NormConfig(kind="rms", eps=eps),
        rope=RopeConfig(base=rope[0], scaling=rope[1]),
        tie_embeddings=bool(tie),
        layer_types=types,
        short_conv=ShortConvConfig(kernel_size=hf.get("conv_L_cache", 3), bias=bool(hf.get("conv_bias", False))),
        max_seq_len=hf.get("max_position_embeddings", 128_000),
    )


_LAYER = "model.layers.{}."
LFM2_NAMES = TensorNames(
    embedding="model.embed_tokens",
    final_norm="model.embedding_norm",
    lm_head="lm_head",
    input_norm=_LAYER + "operator_norm",
    pre_mlp_norm=_LAYER + "ffn_norm",
    q_proj=_LAYER + "self_attn.q_proj",
    k_proj=_LAYER + "self_attn.k_proj",
    v_proj=_LAYER + "self_attn.v_proj",
    o_proj=_LAYER + "self_attn.out_proj",
    q_norm=_LAYER + "self_attn.q_layernorm",
    k_norm=_LAYER + "self_attn.k_layernorm",
    gate_proj=_LAYER + "feed_forward.w1",
    up_proj=_LAYER + "feed_forward.w3",
    down_proj=_LAYER + "feed_forward.w2",
    conv_in_proj=_LAYER + "conv.in_proj",
    conv_kernel=_LAYER + "conv.conv",
    conv_out_proj=_LAYER + "conv.out_proj",
)

# Six attention layers among sixteen in the 350M, 700M and 1.2B models.
_ATTEND_16 = [2, 5, 8, 10, 12, 14]
_COMMON = {
    "architectures": ["Lfm2ForCausalLM"],
    "model_type": "lfm2",
    "vocab_size": 65536,
    "num_hidden_layers": 16,
    "num_key_value_heads": 8,
    "max_position_embeddings": 128000,
    "norm_eps": 1e-5,
    "rope_theta": 1000000.0,
    "conv_L_cache": 3,
    "conv_bias": False,
    "block_auto_adjust_ff_dim": True,
    "block_ffn_dim_multiplier": 1.0,
    "block_multiple_of": 256,
    "tie_word_embeddings": True,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 7,
}


def _published(hidden: int, heads: int, ff: int, attend: list[int] = _ATTEND_16, layers: int = 16) -> dict:
    return {
        **_COMMON,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "intermediate_size": ff,
        "num_hidden_layers": layers,
        "layer_types": ["full_attention" if i in attend else "conv" for i in range(layers)],
    }


LFM2_350M = _published(1024, 16, 6656)
LFM2_700M = _published(1536, 24, 10240)
LFM2_12B = _published(2048, 32, 12288)
LFM2_26B = _published(2048, 32, 10752, attend=[2, 6, 10, 14, 18, 21, 24, 27], layers=30)

TINY_LFM2 = {
    **_COMMON,
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 192,
    "block_multiple_of": 32,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 4,
    "layer_types": ["conv", "full_attention", "conv", "full_attention"],
    "max_position_embeddings": 512,
    "tie_word_embeddings": False,
}

# ChatML with LFM2's start token; a checkpoint's own files override these.
LFM_TOKENS = TokenizerDefaults(
    start_token="<|startoftext|>",
    stop_tokens=("<|im_end|>",),
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
    ("lfm2", LFM2_12B, "any Lfm2ForCausalLM (LFM2, LFM2.5)"),
    ("lfm2-350m", LFM2_350M, "LFM2-350M"),
    ("lfm2-700m", LFM2_700M, "LFM2-700M"),
    ("lfm2-1.2b", LFM2_12B, "LFM2-1.2B"),
    ("lfm2-2.6b", LFM2_26B, "LFM2-2.6B"),
    ("lfm2.5-1.2b", LFM2_12B, "LFM2.5-1.2B (Base and Instruct; the LFM2-1.2B shape)"),
]


@hookimpl
def register_models(register):
    for name, published, description in _PRESETS:
        register(
            ModelSpec(
                name=name,
                family="lfm2",
                architectures=("Lfm2ForCausalLM",),
                config_from_hf=lfm2_config_from_hf,
                config=lfm2_config_from_hf(published),
                published_hf_config=published,
                tiny_hf_config=TINY_LFM2,
                tensor_names=LFM2_NAMES,
                tokenizer=LFM_TOKENS,
                reference_class="Lfm2ForCausalLM",
                description=f"{description}; short convolutions + attention; byte-level BPE tokenizer.json",
            )
        )
