"""Mistral for edge-models: the Llama block with grouped-query attention and, where the config sets it,
sliding-window attention on every layer."""

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


def mistral_config_from_hf(hf: dict) -> ModelConfig:
    """`MistralForCausalLM`: every unsupported field is named in one error."""
    return gated_silu_decoder(hf, family="Mistral", sliding_window=hf.get("sliding_window"), max_seq_len=32768)


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
