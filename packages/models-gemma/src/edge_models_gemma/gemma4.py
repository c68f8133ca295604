"""Gemma 4 text decoders (`Gemma4ForCausalLM`, and the text tower of `Gemma4ForConditionalGeneration`)."""

from __future__ import annotations

from edge_models import (
    AttentionConfig,
    MLPConfig,
    ModelConfig,
    NormConfig,
    PromptTemplate,
    RopeConfig,
    TensorNames,
    TokenizerDefaults,
)
from edge_models.config import PerLayerEmbeddingConfig
from edge_models.hf.config import attempt, check_fields, layer_types, require, rope_parameters

ARCHITECTURES = ("Gemma4ForCausalLM", "Gemma4ForConditionalGeneration")
_ACTIVATIONS = {"gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu": "gelu"}
# Settings read with a value this decoder implements; anything else is named in one error.
_SUPPORTED = {
    "enable_moe_block": (None, False),
    "attention_bias": (None, False),
    "use_bidirectional_attention": (None,),
    "hidden_activation": (*_ACTIVATIONS, None),
}


def text_config(hf: dict) -> dict:
    """The text decoder's fields: a multimodal config.json nests them under `text_config`."""
    nested = hf.get("text_config")
    if isinstance(nested, dict):
        return {"architectures": hf.get("architectures"), **nested}
    return hf


def gemma4_config_from_hf(hf: dict) -> ModelConfig:
    """Gemma 4's text decoder: per-layer inputs, KV sharing, wider global heads with proportional RoPE."""
    hf = text_config(hf)
    problems: list[str] = []
    if hf.get("enable_moe_block"):
        problems.append(
            f"'enable_moe_block' = True: the mixture-of-experts block (Gemma 4 26B-A4B, {hf.get('num_experts')} "
            "experts) is not implemented"
        )
        hf = {**hf, "enable_moe_block": False}
    layers = require(hf, "num_hidden_layers")
    types = attempt(problems, layer_types, hf, layers)
    if types is None:
        types = tuple("global" if (i + 1) % 6 == 0 or i == layers - 1 else "sliding" for i in range(layers))
    elif types[-1] != "global":
        # transformers turns the last layer global whatever the file says.
        types = (*types[:-1], "global")
    sliding_rope = attempt(problems, rope_parameters, hf, "sliding_attention")
    global_rope = attempt(problems, rope_parameters, hf, "full_attention")
    for rope, kind in ((sliding_rope, "sliding"), (global_rope, "global")):
        if rope is not None and rope[2] != 1.0:
            problems.append(f"partial rotary factor {rope[2]} on {kind} layers (only proportional RoPE rotates part)")
    heads = require(hf, "num_attention_heads")
    kv_heads = hf.get("num_key_value_heads") or heads
    head_dim = require(hf, "head_dim")
    k_eq_v = bool(hf.get("attention_k_eq_v"))
    global_head_dim, global_kv_heads = _global_shape(hf, types, head_dim, kv_heads, k_eq_v, problems)
    check_fields(hf, _SUPPORTED, problems)

    eps = hf.get("rms_norm_eps", 1e-6)
    norm = NormConfig(kind="rms", eps=eps)
    common = dict(num_heads=heads, qk_norm=norm, v_norm=NormConfig(kind="rms", eps=eps, scale=False), query_scale=1.0)
    window = hf.get("sliding_window") or 512
    ple_dim = hf.get("hidden_size_per_layer_input")
    return ModelConfig(
        vocab_size=require(hf, "vocab_size"),
        hidden_size=require(hf, "hidden_size"),
        num_layers=layers,
        attention=AttentionConfig(num_kv_heads=kv_heads, head_dim=head_dim, sliding_window=window, **common),
        global_attention=AttentionConfig(
            num_kv_heads=global_kv_heads, head_dim=global_head_dim, sliding_window=window, k_eq_v=k_eq_v, **common
        ),
        mlp=MLPConfig(
            intermediate_size=require(hf, "intermediate_size"),
            activation=_ACTIVATIONS[hf.get("hidden_activation") or "gelu_pytorch_tanh"],
            gated=True,
        ),
        norm=norm,
        rope=RopeConfig(
            base=global_rope[0],
            scaling=global_rope[1],
            local_base=sliding_rope[0],
            local_scaling=sliding_rope[1],
        ),
        post_attention_norm=True,
        post_mlp_norm=True,
        embedding_scale=True,
        tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
        final_logit_softcap=hf.get("final_logit_softcapping"),
        layer_types=types,
        max_seq_len=hf.get("max_position_embeddings", 131072),
        kv_shared_layers=hf.get("num_kv_shared_layers") or 0,
        kv_shared_mlp_multiplier=2 if hf.get("use_double_wide_mlp") else 1,
        per_layer_embedding=(
            PerLayerEmbeddingConfig(dim=ple_dim, vocab_size=hf.get("vocab_size_per_layer_input") or hf["vocab_size"])
            if ple_dim
            else None
        ),
        layer_scalar=True,
    )


def _global_shape(
    hf: dict, types: tuple[str, ...], head_dim: int, kv_heads: int, k_eq_v: bool, problems: list[str]
) -> tuple[int, int]:
    """(head_dim, kv heads) of the global layers. transformers writes them per layer (`per_layer_config`) when it
    saves a config; published files give `global_head_dim` and, for K = V models, `num_global_key_value_heads`."""
    overrides = hf.get("per_layer_config")
    if isinstance(overrides, dict) and overrides:
        shapes = set()
        for index, fields in overrides.items():
            unknown = sorted(set(fields) - {"head_dim", "num_key_value_heads"})
            if unknown or types[int(index)] != "global":
                problems.append(f"per_layer_config[{index}] = {fields} (only global layers' head_dim / KV heads)")
                continue
            shapes.add((fields.get("head_dim", head_dim), fields.get("num_key_value_heads", kv_heads)))
        globals_ = {i for i, t in enumerate(types) if t == "global"}
        if {int(i) for i in overrides} != globals_ or len(shapes) > 1:
            problems.append("per_layer_config gives the global layers different shapes (one shape is supported)")
        return next(iter(shapes)) if shapes else (head_dim, kv_heads)
    global_kv = hf.get("num_global_key_value_heads") if k_eq_v else None
    return hf.get("global_head_dim") or 512, global_kv or kv_heads


def _names() -> TensorNames:
    layer = "model.layers.{}"
    return TensorNames(
        embedding="model.embed_tokens",
        final_norm="model.norm",
        lm_head="lm_head",
        input_norm=f"{layer}.input_layernorm",
        q_proj=f"{layer}.self_attn.q_proj",
        k_proj=f"{layer}.self_attn.k_proj",
        v_proj=f"{layer}.self_attn.v_proj",
        o_proj=f"{layer}.self_attn.o_proj",
        q_norm=f"{layer}.self_attn.q_norm",
        k_norm=f"{layer}.self_attn.k_norm",
        gate_proj=f"{layer}.mlp.gate_proj",
        up_proj=f"{layer}.mlp.up_proj",
        down_proj=f"{layer}.mlp.down_proj",
        post_attn_norm=f"{layer}.post_attention_layernorm",
        pre_mlp_norm=f"{layer}.pre_feedforward_layernorm",
        post_mlp_norm=f"{layer}.post_feedforward_layernorm",
        per_layer_table="model.embed_tokens_per_layer",
        per_layer_model_projection="model.per_layer_model_projection",
        per_layer_projection_norm="model.per_layer_projection_norm",
        per_layer_gate=f"{layer}.per_layer_input_gate",
        per_layer_projection=f"{layer}.per_layer_projection",
        post_per_layer_norm=f"{layer}.post_per_layer_input_norm",
        layer_scalar=f"{layer}.layer_scalar",
    )


GEMMA4_NAMES = _names()

# Gemma 4 renamed Gemma 3's turn markers; `<turn|>` ends a turn and a reply. A checkpoint's own chat template (and
# tokenizer files) win over these when given.
GEMMA4_CHAT = PromptTemplate(
    user_prefix="<|turn>user\n",
    user_suffix="<turn|>\n",
    model_prefix="<|turn>model\n",
    model_suffix="<turn|>\n",
    system_prefix="<|turn>system\n",
    system_suffix="<turn|>\n",
)
GEMMA4_TOKENS = TokenizerDefaults(start_token="<bos>", stop_tokens=("<eos>", "<turn|>"), template=GEMMA4_CHAT)

# Both attention types, per-layer inputs, KV sharing (one shared layer of each type), double-wide MLPs there, wider
# global heads with their own KV-head count, proportional RoPE, a window shorter than the test prompts.
TINY_GEMMA4 = {
    "architectures": ["Gemma4ForCausalLM"],
    "model_type": "gemma4_text",
    "vocab_size": 256,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 5,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "global_head_dim": 64,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-6,
    "hidden_activation": "gelu_pytorch_tanh",
    "sliding_window": 8,
    "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "sliding_attention", "full_attention"],
    "num_kv_shared_layers": 2,
    "hidden_size_per_layer_input": 32,
    "vocab_size_per_layer_input": 256,
    "use_double_wide_mlp": True,
    "final_logit_softcapping": 30.0,
    "rope_parameters": {
        "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1_000_000.0},
    },
}


def _published(**fields) -> dict:
    # Model-card shapes (layers, width, per-layer inputs, shared layers); no weights are downloaded.
    return {
        "architectures": ["Gemma4ForCausalLM"],
        "model_type": "gemma4_text",
        "vocab_size": 262_144,
        "vocab_size_per_layer_input": 262_144,
        "hidden_size_per_layer_input": 256,
        "head_dim": 256,
        "global_head_dim": 512,
        "num_attention_heads": 8,
        "rms_norm_eps": 1e-6,
        "hidden_activation": "gelu_pytorch_tanh",
        "sliding_window": 512,
        "final_logit_softcapping": 30.0,
        "max_position_embeddings": 131_072,
        "rope_parameters": {
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
            "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1_000_000.0},
        },
        **fields,
    }


def _pattern(layers: int, every: int) -> list[str]:
    return ["full_attention" if (i + 1) % every == 0 or i == layers - 1 else "sliding_attention" for i in range(layers)]


GEMMA4_E2B = _published(
    hidden_size=1536,
    intermediate_size=6144,
    num_hidden_layers=35,
    num_key_value_heads=1,
    num_kv_shared_layers=20,
    use_double_wide_mlp=True,
    layer_types=_pattern(35, 5),
)
GEMMA4_E4B = _published(
    hidden_size=2560,
    intermediate_size=10240,
    num_hidden_layers=42,
    num_key_value_heads=2,
    num_kv_shared_layers=18,
    use_double_wide_mlp=False,
    layer_types=_pattern(42, 6),
)
