"""A third-party plugin: one model, described as a config plus a tensor-name map."""

from edge_models import (
    AttentionConfig,
    MLPConfig,
    ModelConfig,
    ModelSpec,
    NormConfig,
    RopeConfig,
    TensorNames,
    TokenizerDefaults,
    hookimpl,
)

# A model family that shares Llama's layout can reuse its config reader and names;
# a new family writes its own `config_from_hf` and `TensorNames` in the same shape.
from edge_models.hf.config import require


def config_from_hf(hf: dict) -> ModelConfig:
    heads = require(hf, "num_attention_heads")
    return ModelConfig(
        vocab_size=require(hf, "vocab_size"),
        hidden_size=require(hf, "hidden_size"),
        num_layers=require(hf, "num_hidden_layers"),
        attention=AttentionConfig(
            num_heads=heads, num_kv_heads=hf.get("num_key_value_heads", heads), head_dim=hf["hidden_size"] // heads
        ),
        mlp=MLPConfig(intermediate_size=require(hf, "intermediate_size")),
        norm=NormConfig(eps=hf.get("rms_norm_eps", 1e-6)),
        rope=RopeConfig(base=hf.get("rope_theta", 10_000.0)),
    )


TINY = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 256,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
}

NAMES = TensorNames(
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


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="example-tiny",
            family="example",
            architectures=("ExampleForCausalLM",),
            config_from_hf=config_from_hf,
            config=config_from_hf(TINY),
            tiny_hf_config=TINY,
            tensor_names=NAMES,
            tokenizer=TokenizerDefaults(start_token="<s>", stop_tokens=("</s>",)),
            reference_class="LlamaForCausalLM",
            description="example third-party plugin",
        )
    )
