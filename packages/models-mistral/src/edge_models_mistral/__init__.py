"""Mistral for edge-models: the Llama block with grouped-query attention and, where the config sets it,
sliding-window attention on every layer."""

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
from edge_models.hf_config import attempt, check_fields, require, rope_parameters

__version__ = "0.1.0"


def mistral_config_from_hf(hf: dict) -> ModelConfig:
    """`MistralForCausalLM`: every unsupported field is named in one error."""
    problems: list[str] = []
    rope = attempt(problems, rope_parameters, hf)
    if rope is not None and rope[2] != 1.0:
        problems.append(f"partial rotary factor {rope[2]} (Mistral rotates whole heads)")
    check_fields(hf, {"hidden_act": ("silu", None)}, problems)
    hidden, heads, layers = (
        require(hf, "hidden_size"),
        require(hf, "num_attention_heads"),
        require(hf, "num_hidden_layers"),
    )
    window = hf.get("sliding_window")
    return ModelConfig(
        vocab_size=require(hf, "vocab_size"),
        hidden_size=hidden,
        num_layers=layers,
        attention=AttentionConfig(
            num_heads=heads,
            num_kv_heads=hf.get("num_key_value_heads") or heads,
            head_dim=hf.get("head_dim") or hidden // heads,
            sliding_window=window,
        ),
        mlp=MLPConfig(intermediate_size=require(hf, "intermediate_size"), activation="silu", gated=True),
        norm=NormConfig(kind="rms", eps=hf.get("rms_norm_eps", 1e-6)),
        rope=RopeConfig(base=rope[0], scaling=rope[1]),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        layer_types=("sliding",) * layers if window else None,
        max_seq_len=hf.get("max_position_embeddings", 32768),
    )


MISTRAL_NAMES = TensorNames.hf_decoder()

MISTRAL_7B_V03 = {
    "architectures": ["MistralForCausalLM"],
    "model_type": "mistral",
    "vocab_size": 32768,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-5,
    "max_position_embeddings": 32768,
    "sliding_window": None,
    "tie_word_embeddings": False,
}
# Tiny, with a sliding window shorter than the tests' prompts so the window is exercised.
TINY_MISTRAL = {
    **MISTRAL_7B_V03,
    "vocab_size": 256,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "sliding_window": 8,
}

MISTRAL_TOKENS = TokenizerDefaults(
    start_token="<s>",
    stop_tokens=("</s>",),
    template=PromptTemplate(user_prefix="[INST] ", user_suffix=" [/INST]", model_suffix="</s>"),
)


@hookimpl
def register_models(register):
    for name, description in (
        ("mistral", "any MistralForCausalLM (sliding-window attention where the config sets it)"),
        ("mistral-7b-v0.3", "Mistral-7B-v0.3 / Instruct-v0.3"),
    ):
        register(
            ModelSpec(
                name=name,
                family="mistral",
                architectures=("MistralForCausalLM",),
                config_from_hf=mistral_config_from_hf,
                config=mistral_config_from_hf(MISTRAL_7B_V03),
                published_hf_config=MISTRAL_7B_V03,
                tiny_hf_config=TINY_MISTRAL,
                tensor_names=MISTRAL_NAMES,
                tokenizer=MISTRAL_TOKENS,
                reference_class="MistralForCausalLM",
                description=description,
            )
        )
