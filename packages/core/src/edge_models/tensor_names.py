"""TensorNames: where each of our parameters lives in a family's checkpoint.

Per-layer entries are templates with one `{}` for the layer index and name a module,
not a parameter: the loader appends `.weight` / `.bias` as our module needs them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class TensorNames:
    embedding: str
    final_norm: str
    # None when the LM head is tied to the embedding.
    lm_head: str | None
    input_norm: str
    o_proj: str
    down_proj: str
    # None only with gate_up_proj.
    up_proj: str | None
    q_proj: str | None = None
    k_proj: str | None = None
    v_proj: str | None = None
    # One tensor holding q, k and v stacked along the output axis.
    qkv_proj: str | None = None
    gate_proj: str | None = None
    # One tensor holding the gate and up projections stacked along the output axis, gate first (Phi-3).
    gate_up_proj: str | None = None
    q_norm: str | None = None
    k_norm: str | None = None
    pre_mlp_norm: str | None = None
    post_attn_norm: str | None = None
    post_mlp_norm: str | None = None
    # Per-layer inputs (Gemma 3n / 4): the token table, the projection of the token embedding and its norm (whole
    # model), then each block's gate, projection and norm.
    per_layer_table: str | None = None
    per_layer_model_projection: str | None = None
    per_layer_projection_norm: str | None = None
    per_layer_gate: str | None = None
    per_layer_projection: str | None = None
    post_per_layer_norm: str | None = None
    # A block's learned output scalar (Gemma 4): the name of the tensor itself, not of a module.
    layer_scalar: str | None = None
    # Short-convolution layers (LFM2): B/C/x projection, depthwise kernel, output projection.
    conv_in_proj: str | None = None
    conv_kernel: str | None = None
    conv_out_proj: str | None = None
    # Gated delta-net layers (Qwen3.5): the mixer module, whose parameters and submodules keep the checkpoint's names.
    delta_net: str | None = None

    def __post_init__(self) -> None:
        if self.up_proj is None and self.gate_up_proj is None:
            raise ValueError("TensorNames needs up_proj, or gate_up_proj")
        separate = (self.q_proj, self.k_proj, self.v_proj)
        if self.qkv_proj is None and None in separate:
            raise ValueError("TensorNames needs q_proj, k_proj and v_proj, or qkv_proj")
        if self.qkv_proj is not None and any(separate):
            raise ValueError("TensorNames takes either qkv_proj or q_proj/k_proj/v_proj, not both")
        if self.gate_up_proj is not None and self.gate_proj is not None:
            raise ValueError("TensorNames takes either gate_up_proj or gate_proj/up_proj, not both")
        for f in fields(self):
            value = getattr(self, f.name)
            per_layer = f.name not in ("embedding", "final_norm", "lm_head", *MODEL_SLOTS.values())
            if value is not None and per_layer and value.count("{}") != 1:
                raise ValueError(f"TensorNames.{f.name}={value!r} must contain exactly one '{{}}'")

    @classmethod
    def hf_decoder(cls, *, qk_norm: bool = False, fused_qkv: bool = False, fused_gate_up: bool = False) -> TensorNames:
        """The names `transformers` uses for Llama-style decoders (Llama, Mistral, Qwen 2/3, Phi-3): `model.*`,
        `self_attn.*`, `mlp.*`, `input_layernorm` / `post_attention_layernorm`, separate `lm_head`."""
        layer = "model.layers.{}."
        return cls(
            embedding="model.embed_tokens",
            final_norm="model.norm",
            lm_head="lm_head",
            input_norm=layer + "input_layernorm",
            pre_mlp_norm=layer + "post_attention_layernorm",
            o_proj=layer + "self_attn.o_proj",
            down_proj=layer + "mlp.down_proj",
            **(
                {"qkv_proj": layer + "self_attn.qkv_proj"}
                if fused_qkv
                else {f"{x}_proj": layer + f"self_attn.{x}_proj" for x in "qkv"}
            ),
            **(
                {"gate_up_proj": layer + "mlp.gate_up_proj", "up_proj": None}
                if fused_gate_up
                else {"gate_proj": layer + "mlp.gate_proj", "up_proj": layer + "mlp.up_proj"}
            ),
            **({"q_norm": layer + "self_attn.q_norm", "k_norm": layer + "self_attn.k_norm"} if qk_norm else {}),
        )


# Our module path inside one DecoderBlock -> TensorNames field.
LAYER_SLOTS: dict[str, str] = {
    "input_norm": "input_norm",
    "attn.q_proj": "q_proj",
    "attn.k_proj": "k_proj",
    "attn.v_proj": "v_proj",
    "attn.o_proj": "o_proj",
    "attn.q_norm": "q_norm",
    "attn.k_norm": "k_norm",
    "pre_mlp_norm": "pre_mlp_norm",
    "post_attn_norm": "post_attn_norm",
    "post_mlp_norm": "post_mlp_norm",
    "mlp.gate_proj": "gate_proj",
    "mlp.up_proj": "up_proj",
    "mlp.down_proj": "down_proj",
    "per_layer_gate.gate": "per_layer_gate",
    "per_layer_gate.projection": "per_layer_projection",
    "per_layer_gate.norm": "post_per_layer_norm",
    "conv.in_proj": "conv_in_proj",
    "conv.conv": "conv_kernel",
    "conv.out_proj": "conv_out_proj",
}
# Tensors held by a DecoderBlock itself (named in full by their TensorNames field).
BLOCK_TENSORS: dict[str, str] = {"layer_scalar": "layer_scalar"}
# Our module path in a Decoder (outside the blocks, beyond embedding / final norm / head) -> TensorNames field.
MODEL_SLOTS: dict[str, str] = {
    "per_layer_embedding.table": "per_layer_table",
    "per_layer_embedding.model_projection": "per_layer_model_projection",
    "per_layer_embedding.projection_norm": "per_layer_projection_norm",
}

# Our module path inside one DecoderBlock -> TensorNames field of a module whose parameters and submodules are named
# below it as in the checkpoint (`linear_attn.in_proj_qkv` -> `<delta_net>.in_proj_qkv`).
MODULE_SLOTS: dict[str, str] = {"linear_attn": "delta_net"}

# llama.cpp's names, which are the same for every architecture it writes to GGUF.
GGUF_NAMES = TensorNames(
    embedding="token_embd",
    final_norm="output_norm",
    lm_head="output",
    input_norm="blk.{}.attn_norm",
    q_proj="blk.{}.attn_q",
    k_proj="blk.{}.attn_k",
    v_proj="blk.{}.attn_v",
    o_proj="blk.{}.attn_output",
    q_norm="blk.{}.attn_q_norm",
    k_norm="blk.{}.attn_k_norm",
    pre_mlp_norm="blk.{}.ffn_norm",
    post_attn_norm="blk.{}.post_attention_norm",
    post_mlp_norm="blk.{}.post_ffw_norm",
    gate_proj="blk.{}.ffn_gate",
    up_proj="blk.{}.ffn_up",
    down_proj="blk.{}.ffn_down",
)


def gguf_names(available: Collection[str], gated_mlp: bool) -> TensorNames:
    """GGUF_NAMES as one file spells them: llama.cpp keeps a checkpoint's fused projections fused, as `attn_qkv`
    (Phi-3, older Phi-2 files) and as an `ffn_up` holding gate and up with no `ffn_gate` (Phi-3)."""
    names = GGUF_NAMES
    if "blk.0.attn_qkv.weight" in available:
        names = replace(names, q_proj=None, k_proj=None, v_proj=None, qkv_proj="blk.{}.attn_qkv")
    if gated_mlp and "blk.0.ffn_gate.weight" not in available and "blk.0.ffn_up.weight" in available:
        names = replace(names, gate_proj=None, up_proj=None, gate_up_proj="blk.{}.ffn_up")
    return names


@dataclass(frozen=True)
class EncoderTensorNames:
    """Where each of an `Encoder`'s modules lives in a checkpoint (per-layer entries hold one `{}`)."""

    word_embeddings: str
    position_embeddings: str
    token_type_embeddings: str
    embedding_norm: str
    q_proj: str
    k_proj: str
    v_proj: str
    o_proj: str
    attn_norm: str
    up_proj: str
    down_proj: str
    mlp_norm: str

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            per_layer = f.name in ENCODER_LAYER_SLOTS.values()
            if per_layer and value.count("{}") != 1:
                raise ValueError(f"EncoderTensorNames.{f.name}={value!r} must contain exactly one '{{}}'")

    def with_prefix(self, prefix: str) -> EncoderTensorNames:
        """The same map one level down (e.g. `bert.` in a checkpoint saved from a task model)."""
        return EncoderTensorNames(**{f.name: prefix + getattr(self, f.name) for f in fields(self)})

    @classmethod
    def hf_bert(cls) -> EncoderTensorNames:
        """`transformers`' BertModel names."""
        layer = "encoder.layer.{}."
        return cls(
            word_embeddings="embeddings.word_embeddings",
            position_embeddings="embeddings.position_embeddings",
            token_type_embeddings="embeddings.token_type_embeddings",
            embedding_norm="embeddings.LayerNorm",
            q_proj=layer + "attention.self.query",
            k_proj=layer + "attention.self.key",
            v_proj=layer + "attention.self.value",
            o_proj=layer + "attention.output.dense",
            attn_norm=layer + "attention.output.LayerNorm",
            up_proj=layer + "intermediate.dense",
            down_proj=layer + "output.dense",
            mlp_norm=layer + "output.LayerNorm",
        )


# Our module path in an Encoder -> EncoderTensorNames field.
ENCODER_SLOTS: dict[str, str] = {
    "embeddings.word_embeddings": "word_embeddings",
    "embeddings.position_embeddings": "position_embeddings",
    "embeddings.token_type_embeddings": "token_type_embeddings",
    "embeddings.norm": "embedding_norm",
}
ENCODER_LAYER_SLOTS: dict[str, str] = {
    "attn.q_proj": "q_proj",
    "attn.k_proj": "k_proj",
    "attn.v_proj": "v_proj",
    "attn.o_proj": "o_proj",
    "attn_norm": "attn_norm",
    "mlp.up_proj": "up_proj",
    "mlp.down_proj": "down_proj",
    "mlp_norm": "mlp_norm",
}
