"""Example encoders: an embedding-model family in the BERT layout for edge-models, as a config.json reader, a
tensor-name map and two presets on core's encoder.

"Example encoder" checkpoints say `ExampleEncoderModel` in config.json and run on transformers' BERT implementation.
To start your own plugin, copy this folder and replace what this module says about them: the architecture, the
fields its config.json may carry, the published shapes. The pooling is not the plugin's: core reads it from the
checkpoint (sentence-transformers' `modules.json` and `1_Pooling/config.json`; mean pooling without them).
"""

from __future__ import annotations

from edge_models import (
    AttentionConfig,
    EncoderConfig,
    EncoderSpec,
    EncoderTensorNames,
    MLPConfig,
    NormConfig,
    attempt,
    check_fields,
    hookimpl,
    require,
)

__version__ = "0.1.0"

# transformers' activation names -> core's: exact (erf) GELU, and the tanh approximation under its two names.
ACTIVATIONS = {"gelu": "gelu", "gelu_python": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}

# Settings of an Example encoder's config.json that change what the model computes, with the values this family
# honours; a missing field reads as None. Fields that change nothing at inference (dropout, initializer_range,
# use_cache, classifier_dropout) need no entry.
SUPPORTED = {
    "hidden_act": (*ACTIVATIONS, None),
    # Older files name the position embedding; relative_key and relative_key_query are not core's encoder.
    "position_embedding_type": ("absolute", None),
    "is_decoder": (False, None),
    "add_cross_attention": (False, None),
}

_SHAPE = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")


def example_encoder_config_from_hf(hf: dict) -> EncoderConfig:
    """An EncoderConfig for an `ExampleEncoderModel` config.json; every missing or unsupported setting is named in
    one error."""
    problems: list[str] = []
    shape = {key: attempt(problems, require, hf, key) for key in _SHAPE}
    hidden, heads = shape["hidden_size"], shape["num_attention_heads"]
    if hidden is not None and heads is not None and (heads < 1 or hidden % heads):
        problems.append(f"'hidden_size' = {hidden} does not split into 'num_attention_heads' = {heads} heads")
    check_fields(hf, SUPPORTED, problems)
    return EncoderConfig(
        vocab_size=shape["vocab_size"],
        hidden_size=hidden,
        num_layers=shape["num_hidden_layers"],
        attention=AttentionConfig(
            num_heads=heads, num_kv_heads=heads, head_dim=hidden // heads, qkv_bias=True, out_bias=True
        ),
        mlp=MLPConfig(
            intermediate_size=shape["intermediate_size"],
            activation=ACTIVATIONS[hf.get("hidden_act") or "gelu"],
            gated=False,
            bias=True,
        ),
        norm=NormConfig(kind="layer", eps=hf.get("layer_norm_eps", 1e-12), bias=True),
        max_positions=hf.get("max_position_embeddings", 512),
        type_vocab_size=hf.get("type_vocab_size", 2),
        pad_token_id=hf.get("pad_token_id") or 0,
    )


# transformers' BERT names: `embeddings.word_embeddings`, `encoder.layer.{}.attention.self.query`, ... Core also finds
# them one level down (`bert.`, `model.`, `encoder.`) in checkpoints saved from task models. A checkpoint with other
# names writes its own EncoderTensorNames (per-layer entries hold one `{}` for the layer index).
NAMES = EncoderTensorNames.hf_bert()

# The published Example-Encoder-Small's config.json.
EXAMPLE_ENCODER_SMALL = {
    "architectures": ["ExampleEncoderModel"],
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 384,
    "intermediate_size": 1536,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
}

# Tiny shapes for `verify --tiny` and tests (random weights, built by transformers from these). Between them they take
# every path of the reader: the published settings shrunk, and the others an Example encoder's config.json may carry
# (tanh GELU, one token type, another norm epsilon).
TINY_EXAMPLE_ENCODER_SMALL = {
    **EXAMPLE_ENCODER_SMALL,
    "vocab_size": 300,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 128,
}
TINY_EXAMPLE_ENCODER = {
    **TINY_EXAMPLE_ENCODER_SMALL,
    "hidden_act": "gelu_new",
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-5,
}


@hookimpl
def register_encoders(register):
    # The spec named after its family reads any ExampleEncoderModel checkpoint (`auto` picks it); presets name the
    # published models on the same reader and map.
    common = dict(
        family="example-encoder",
        architectures=("ExampleEncoderModel",),
        config_from_hf=example_encoder_config_from_hf,
        config=example_encoder_config_from_hf(EXAMPLE_ENCODER_SMALL),
        tensor_names=NAMES,
        reference_class="BertModel",
    )
    register(
        EncoderSpec(
            name="example-encoder",
            tiny_hf_config=TINY_EXAMPLE_ENCODER,
            description="any ExampleEncoderModel checkpoint (template plugin)",
            **common,
        )
    )
    register(
        EncoderSpec(
            name="example-encoder-small",
            tiny_hf_config=TINY_EXAMPLE_ENCODER_SMALL,
            description="Example-Encoder-Small: 384-d sentence embeddings",
            **common,
        )
    )
