"""Example: a decoder family in the Llama layout for edge-models, as a config.json reader, a tensor-name map and two
presets on core's decoder.

"Example" checkpoints say `ExampleForCausalLM` in config.json and run on transformers' Llama implementation, as
InternLM3 and IQuestCoder do. To start your own plugin, copy this folder and replace what this module says about
Example checkpoints: the architecture, the fields its config.json may carry, the published shapes, the tokenizer.
"""

from __future__ import annotations

import dataclasses

from edge_models import (
    ModelConfig,
    ModelSpec,
    PromptTemplate,
    TensorNames,
    TokenizerDefaults,
    gated_silu_decoder,
    hookimpl,
)

__version__ = "0.1.0"

# Settings of an Example config.json that change what the model computes, beyond those `gated_silu_decoder` reads
# (the shape, `head_dim`, `num_key_value_heads`, `hidden_act`, `rms_norm_eps`, `rope_theta` / `rope_scaling` /
# `rope_parameters`, `tie_word_embeddings`, `max_position_embeddings`), with the values this family honours; a
# missing field reads as None. Fields that change nothing at inference (dropout, initializer_range, use_cache, token
# ids) need no entry.
SUPPORTED = {
    # Llama's attention_bias puts a bias on q, k, v and the output projection.
    "attention_bias": (False, True, None),
    "mlp_bias": (False, True, None),
    "pretraining_tp": (1, None),
}


def example_config_from_hf(hf: dict) -> ModelConfig:
    """A ModelConfig for an `ExampleForCausalLM` config.json; every setting it cannot honour is named in one error."""
    # Checks core's helpers do not make append a message here each (`attempt(problems, reader, hf, ...)` turns a
    # reader's UnsupportedConfigError into one); the shared reader raises them together with its own.
    problems: list[str] = []
    cfg = gated_silu_decoder(hf, problems, family="Example", allowed=SUPPORTED, max_seq_len=8192)
    # What the family adds to the shared decoder: settings of core's config, not code of its own.
    bias = bool(hf.get("attention_bias"))
    return cfg.replace(
        attention=dataclasses.replace(cfg.attention, qkv_bias=bias, out_bias=bias),
        mlp=dataclasses.replace(cfg.mlp, bias=bool(hf.get("mlp_bias"))),
    )


# transformers' Llama names: `model.layers.{}.self_attn.q_proj`, `mlp.gate_proj`, ... A checkpoint with other names
# writes its own TensorNames (per-layer entries hold one `{}` for the layer index).
NAMES = TensorNames.hf_decoder()

# The published Example-1B's config.json.
EXAMPLE_1B = {
    "architectures": ["ExampleForCausalLM"],
    "model_type": "llama",
    "vocab_size": 32000,
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    "max_position_embeddings": 131072,
    "tie_word_embeddings": True,
}

# Tiny shapes for `verify --tiny` and tests (random weights, built by transformers from these). Between them they take
# every path of the reader: Example-1B's own settings shrunk (tied head, Llama 3 RoPE scaling over a short original
# context), and the other settings an Example config.json may carry (a separate LM head, biases, a head size that is
# not hidden_size / heads).
TINY_EXAMPLE_1B = {
    **EXAMPLE_1B,
    "vocab_size": 256,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "rope_scaling": {**EXAMPLE_1B["rope_scaling"], "original_max_position_embeddings": 16},
    "max_position_embeddings": 512,
}
TINY_EXAMPLE = {
    **TINY_EXAMPLE_1B,
    "head_dim": 48,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "tie_word_embeddings": False,
    "attention_bias": True,
    "mlp_bias": True,
}

# Defaults for bundles and prompts; a checkpoint's own tokenizer files and chat template override them.
TOKENS = TokenizerDefaults(
    start_token="<s>",
    stop_tokens=("</s>",),
    template=PromptTemplate(
        user_prefix="<|user|>\n",
        user_suffix="</s>\n",
        model_prefix="<|assistant|>\n",
        model_suffix="</s>\n",
        system_prefix="<|system|>\n",
        system_suffix="</s>\n",
    ),
)


@hookimpl
def register_models(register):
    # The spec named after its family reads any ExampleForCausalLM checkpoint (`auto` picks it); presets name the
    # published models on the same reader and map.
    example = ModelSpec(
        name="example",
        family="example",
        architectures=("ExampleForCausalLM",),
        config_from_hf=example_config_from_hf,
        config=example_config_from_hf(EXAMPLE_1B),
        published_hf_config=EXAMPLE_1B,
        tiny_hf_config=TINY_EXAMPLE,
        tensor_names=NAMES,
        tokenizer=TOKENS,
        reference_class="LlamaForCausalLM",
        description="any ExampleForCausalLM checkpoint (template plugin)",
    )
    register(example)
    register(dataclasses.replace(example, name="example-1b", tiny_hf_config=TINY_EXAMPLE_1B, description="Example-1B"))
