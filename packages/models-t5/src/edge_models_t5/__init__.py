"""T5 encoder-decoders for edge-models: `T5ForConditionalGeneration` checkpoints (T5 v1.0 such as t5-small, with a
ReLU feed-forward and a tied head; T5 v1.1 and FLAN-T5, with a gated-GELU feed-forward and a separate head), as a
config and a tensor-name map on core's seq2seq blocks."""

from __future__ import annotations

from edge_models import AttentionConfig, MLPConfig, NormConfig, hookimpl
from edge_models.config import RelativePositionConfig, Seq2SeqConfig
from edge_models.hf.config import attempt, check_fields, require
from edge_models.spec import Seq2SeqSpec

__version__ = "0.1.0"

# feed_forward_proj -> (activation, gated). T5's "gelu" inside gated-gelu is the tanh approximation (gelu_new).
_FEED_FORWARD = {"relu": ("relu", False), "gated-gelu": ("gelu_tanh", True), "gated-relu": ("relu", True)}


def t5_config_from_hf(hf: dict) -> Seq2SeqConfig:
    """`T5ForConditionalGeneration`'s config.json; every unsupported setting is named in one error."""
    problems: list[str] = []
    d = attempt(problems, require, hf, "d_model")
    heads = attempt(problems, require, hf, "num_heads")
    check_fields(hf, {"feed_forward_proj": (*_FEED_FORWARD, None), "is_encoder_decoder": (True, None)}, problems)
    activation, gated = _FEED_FORWARD[hf.get("feed_forward_proj") or "relu"]
    layers = require(hf, "num_layers")
    tied = hf.get("tie_word_embeddings", True)
    return Seq2SeqConfig(
        vocab_size=require(hf, "vocab_size"),
        hidden_size=d,
        num_encoder_layers=layers,
        num_decoder_layers=hf.get("num_decoder_layers") or layers,
        # T5 does not scale its attention scores.
        attention=AttentionConfig(num_heads=heads, num_kv_heads=heads, head_dim=require(hf, "d_kv"), query_scale=1.0),
        mlp=MLPConfig(intermediate_size=require(hf, "d_ff"), activation=activation, gated=gated, bias=False),
        norm=NormConfig(kind="rms", eps=hf.get("layer_norm_epsilon", 1e-6)),
        relative_position=RelativePositionConfig(
            hf.get("relative_attention_num_buckets", 32), hf.get("relative_attention_max_distance", 128)
        ),
        tie_embeddings=tied,
        # transformers 5 saves every T5 as tied and keeps v1.1's "no scaling" in scale_decoder_outputs.
        head_scale=hf.get("scale_decoder_outputs", tied),
        decoder_start_token_id=hf.get("decoder_start_token_id") or 0,
        eos_token_id=hf.get("eos_token_id", 1),
        pad_token_id=hf.get("pad_token_id") or 0,
    )


def t5_names(config: Seq2SeqConfig) -> dict[str, str]:
    """Our module paths -> `transformers`' T5 names."""
    ff = (
        {"mlp.gate_proj": "DenseReluDense.wi_0", "mlp.up_proj": "DenseReluDense.wi_1"}
        if config.mlp.gated
        else {"mlp.up_proj": "DenseReluDense.wi"}
    )
    ff["mlp.down_proj"] = "DenseReluDense.wo"
    enc, dec = "encoder.block.{}.layer.", "decoder.block.{}.layer."
    names = {
        "shared": "shared",
        "encoder_bias.embedding": "encoder.block.0.layer.0.SelfAttention.relative_attention_bias",
        "encoder_norm": "encoder.final_layer_norm",
        "decoder_bias.embedding": "decoder.block.0.layer.0.SelfAttention.relative_attention_bias",
        "decoder_norm": "decoder.final_layer_norm",
        "encoder_layers.{}.attn_norm": enc + "0.layer_norm",
        "encoder_layers.{}.mlp_norm": enc + "1.layer_norm",
        "decoder_layers.{}.self_norm": dec + "0.layer_norm",
        "decoder_layers.{}.cross_norm": dec + "1.layer_norm",
        "decoder_layers.{}.mlp_norm": dec + "2.layer_norm",
    }
    for x in "qkvo":
        names[f"encoder_layers.{{}}.attn.{x}_proj"] = enc + f"0.SelfAttention.{x}"
        names[f"decoder_layers.{{}}.self_attn.{x}_proj"] = dec + f"0.SelfAttention.{x}"
        names[f"decoder_layers.{{}}.cross_attn.{x}_proj"] = dec + f"1.EncDecAttention.{x}"
    for ours, theirs in ff.items():
        names[f"encoder_layers.{{}}.{ours}"] = enc + "1." + theirs
        names[f"decoder_layers.{{}}.{ours}"] = dec + "2." + theirs
    if not config.tie_embeddings:
        names["lm_head"] = "lm_head"
    return names


T5_SMALL = {
    "model_type": "t5",
    "architectures": ["T5ForConditionalGeneration"],
    "vocab_size": 32128,
    "d_model": 512,
    "d_kv": 64,
    "d_ff": 2048,
    "num_layers": 6,
    "num_heads": 8,
    "feed_forward_proj": "relu",
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "layer_norm_epsilon": 1e-6,
    "tie_word_embeddings": True,
    "decoder_start_token_id": 0,
    "eos_token_id": 1,
    "pad_token_id": 0,
}
FLAN_T5_SMALL = {
    **T5_SMALL,
    "d_ff": 1024,
    "num_layers": 8,
    "num_decoder_layers": 8,
    "num_heads": 6,
    "feed_forward_proj": "gated-gelu",
    "tie_word_embeddings": False,
}
TINY = {
    **T5_SMALL,
    "vocab_size": 300,
    "d_model": 64,
    "d_kv": 16,
    "d_ff": 128,
    "num_layers": 2,
    "num_decoder_layers": 3,
    "num_heads": 4,
    "relative_attention_num_buckets": 8,
    "relative_attention_max_distance": 20,
}
TINY_GATED = {**TINY, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}


@hookimpl
def register_seq2seq(register):
    common = dict(
        family="t5",
        config_from_hf=t5_config_from_hf,
        tensor_names=t5_names,
        reference_class="T5ForConditionalGeneration",
        # Tied copies of `shared` that transformers may save.
        unused_tensors=("encoder.embed_tokens.", "decoder.embed_tokens."),
    )
    presets = [
        ("t5", T5_SMALL, TINY, "any T5ForConditionalGeneration (T5 v1.0 / v1.1 / FLAN-T5; shape from config.json)"),
        ("t5-small", T5_SMALL, TINY, "T5 small (60M; ReLU feed-forward, tied head)"),
        ("flan-t5-small", FLAN_T5_SMALL, TINY_GATED, "FLAN-T5 small (77M; gated-GELU feed-forward, separate head)"),
    ]
    for name, published, tiny, description in presets:
        register(
            Seq2SeqSpec(
                name=name,
                architectures=("T5ForConditionalGeneration",),
                config=t5_config_from_hf(published),
                tiny_hf_config=tiny,
                description=description,
                **common,
            )
        )
