"""Tiny GGUF files of every family llama.cpp writes, made as its converter makes them from a tiny `transformers`
model: llama.cpp's tensor names, Llama's interleaved rotary halves, Gemma's `1 + w` norms, fused Phi-3 projections,
Phi-3's LongRoPE factors as tensors, the `{arch}.*` hyper-parameter keys, and optionally a SentencePiece vocabulary.

The tiny configs keep to what llama.cpp can express (it hard-codes Gemma's query scale to the head size and Gemma 3's
five local to one global layers, and ignores Mistral's sliding window), so the file means the same model as its
reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np
import torch

from edge_models import registry
from edge_models.testing import build_reference, train_sentencepiece


@dataclass(frozen=True)
class Case:
    spec: str  # the registered model whose tiny config is the starting point
    arch: str  # llama.cpp's `general.architecture`
    overrides: dict = field(default_factory=dict)
    name: str = "tiny"  # `general.name`

    def hf_config(self) -> dict:
        hf = {**registry().get(self.spec).tiny_hf_config, **self.overrides}
        return {k: v for k, v in hf.items() if v is not None}


# Gemma 3 with the query scale llama.cpp assumes (the head size) and six layers (five sliding, one global).
TINY_GEMMA3 = Case(
    "gemma3-270m",
    "gemma3",
    {"query_pre_attn_scalar": 32, "num_hidden_layers": 6, "layer_types": None},
)

CASES: dict[str, Case] = {
    "llama": Case("llama", "llama"),
    "llama-bias": Case("llama", "llama", {"attention_bias": True}),
    "mistral": Case("mistral", "llama", {"sliding_window": None}, name="Mistral Tiny"),
    "gemma": Case("gemma-2b", "gemma"),
    "gemma2": Case("gemma2-2b", "gemma2", {"query_pre_attn_scalar": 32}),
    "gemma3": TINY_GEMMA3,
    "qwen2": Case("qwen2", "qwen2"),
    "qwen3": Case("qwen3", "qwen3"),
    # A rotary fraction the file's whole count of rotated dimensions states exactly (12 of 32).
    "phi2": Case("phi-2", "phi2", {"partial_rotary_factor": 0.375}),
    "phi3": Case("phi3", "phi3"),
}

# TensorNames field -> llama.cpp's name (per-layer ones hold `{}` for the block).
_LLAMA_CPP = {
    "embedding": "token_embd",
    "final_norm": "output_norm",
    "lm_head": "output",
    "input_norm": "blk.{}.attn_norm",
    "q_proj": "blk.{}.attn_q",
    "k_proj": "blk.{}.attn_k",
    "v_proj": "blk.{}.attn_v",
    "qkv_proj": "blk.{}.attn_qkv",
    "o_proj": "blk.{}.attn_output",
    "q_norm": "blk.{}.attn_q_norm",
    "k_norm": "blk.{}.attn_k_norm",
    "pre_mlp_norm": "blk.{}.ffn_norm",
    "post_attn_norm": "blk.{}.post_attention_norm",
    "post_mlp_norm": "blk.{}.post_ffw_norm",
    "gate_proj": "blk.{}.ffn_gate",
    "up_proj": "blk.{}.ffn_up",
    "gate_up_proj": "blk.{}.ffn_up",
    "down_proj": "blk.{}.ffn_down",
}


# A Gemma-style chat template, as `tokenizer.chat_template` carries one.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>"
    "{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n{{ message['content'] }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def write_gguf(case: Case, path: Path, tokenizer: bool = False) -> tuple[torch.nn.Module, Path]:
    """(the reference model, the GGUF llama.cpp would write from it); with `tokenizer`, a SentencePiece vocabulary
    and a chat template in its metadata."""
    spec = registry().get(case.spec)
    hf = case.hf_config()
    ref = build_reference(hf, spec.reference_class)
    writer = gguf.GGUFWriter(str(path), case.arch)
    writer.add_name(case.name)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _hyper_parameters(writer, case.arch, hf)
    if tokenizer:
        _sentencepiece_vocab(writer, hf["vocab_size"], path.parent)
    for name, tensor in _tensors(ref, spec, case.arch, hf).items():
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return ref, path


def _hyper_parameters(w: gguf.GGUFWriter, arch: str, hf: dict) -> None:
    heads = hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or hf["hidden_size"] // heads
    w.add_context_length(hf["max_position_embeddings"])
    w.add_embedding_length(hf["hidden_size"])
    w.add_feed_forward_length(hf["intermediate_size"])
    w.add_block_count(hf["num_hidden_layers"])
    w.add_head_count(heads)
    w.add_head_count_kv(hf.get("num_key_value_heads") or heads)
    if "head_dim" in hf:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    if arch == "phi2":
        w.add_layer_norm_eps(hf["layer_norm_eps"])
        w.add_rope_dimension_count(int(hf["partial_rotary_factor"] * head_dim))
        return
    w.add_layer_norm_rms_eps(hf["rms_norm_eps"])
    if "rope_theta" in hf:
        w.add_rope_freq_base(hf["rope_theta"])
    if arch == "llama":
        w.add_vocab_size(hf["vocab_size"])
        w.add_rope_dimension_count(head_dim)
    elif arch in ("gemma2", "gemma3"):
        w.add_sliding_window(hf["sliding_window"])
        if arch == "gemma2":
            w.add_attn_logit_softcapping(hf["attn_logit_softcapping"])
            w.add_final_logit_softcapping(hf["final_logit_softcapping"])
    elif arch == "phi3":
        w.add_rope_dimension_count(int(hf.get("partial_rotary_factor", 1.0) * head_dim))
        if hf.get("sliding_window"):
            w.add_sliding_window(hf["sliding_window"])
        scaling = hf.get("rope_scaling")
        if scaling:
            original = hf["original_max_position_embeddings"]
            w.add_rope_scaling_orig_ctx_len(original)
            scale = hf["max_position_embeddings"] / original
            w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(original)))


def _tensors(ref, spec, arch: str, hf: dict) -> dict[str, np.ndarray]:
    state = ref.state_dict()
    names = spec.tensor_names
    heads = hf["num_attention_heads"]
    kv_heads = hf.get("num_key_value_heads") or heads
    out = {}
    for field_name, theirs in _LLAMA_CPP.items():
        ours = getattr(names, field_name)
        if ours is None or (field_name == "lm_head" and hf.get("tie_word_embeddings", True)):
            continue
        for i in range(hf["num_hidden_layers"]) if "{}" in ours else [None]:
            for kind in ("weight", "bias"):
                source = f"{ours.format(i) if i is not None else ours}.{kind}"
                if source not in state:
                    continue
                tensor = state[source].detach().float()
                if arch == "llama" and field_name in ("q_proj", "k_proj"):
                    tensor = _interleave_rotary(tensor, heads if field_name == "q_proj" else kv_heads)
                if arch.startswith("gemma") and field_name.endswith("norm") and kind == "weight":
                    tensor = tensor + 1.0  # llama.cpp stores Gemma's norms as 1 + w
                target = theirs.format(i) if i is not None else theirs
                out[f"{target}.{kind}"] = tensor.numpy().astype(np.float32)
    scaling = hf.get("rope_scaling") or {}
    if arch == "phi3" and scaling.get("rope_type") == "longrope":
        out["rope_factors_long.weight"] = np.asarray(scaling["long_factor"], dtype=np.float32)
        out["rope_factors_short.weight"] = np.asarray(scaling["short_factor"], dtype=np.float32)
    return out


def _interleave_rotary(w: torch.Tensor, heads: int) -> torch.Tensor:
    # llama.cpp's converter interleaves the two rotary halves of each head of q and k (weights and biases).
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _sentencepiece_vocab(w: gguf.GGUFWriter, vocab_size: int, scratch: Path) -> None:
    """A SentencePiece BPE vocabulary of exactly the model's size, as llama.cpp writes one (ids 0-2: <unk> <s> </s>,
    then the chat markers)."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(train_sentencepiece(scratch / "vocab.model", vocab_size=vocab_size).read_bytes())
    assert len(proto.pieces) == vocab_size
    w.add_tokenizer_model("llama")
    w.add_token_list([p.piece for p in proto.pieces])
    w.add_token_scores([p.score for p in proto.pieces])
    w.add_token_types([int(p.type) for p in proto.pieces])
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(True)
    w.add_chat_template(CHAT_TEMPLATE)
