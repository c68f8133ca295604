"""A config.json dict from a GGUF file's metadata, so that a plugin's `config_from_hf` reads a GGUF as it reads an HF
checkpoint, and `auto` finds the family.

llama.cpp's converter writes `general.architecture` and the hyper-parameters as `{arch}.*` keys; this undoes what it
writes for the architectures whose families edge-models has. What the file leaves out, llama.cpp hard-codes per
architecture, and so does this module (Gemma's query scale and local RoPE base, Gemma 3's five local to one global
layers).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

from edge_models.loader.errors import CheckpointError

if TYPE_CHECKING:
    import torch

# llama.cpp's `general.architecture` -> the HF architectures its converter takes in, the likelier first.
# Mistral's converter is Llama's (it writes `llama`): transformers tells them apart by the file's name.
GGUF_ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "llama": ("LlamaForCausalLM", "MistralForCausalLM"),
    "gemma": ("GemmaForCausalLM",),
    "gemma2": ("Gemma2ForCausalLM",),
    "gemma3": ("Gemma3ForCausalLM",),
    "qwen2": ("Qwen2ForCausalLM",),
    "qwen3": ("Qwen3ForCausalLM",),
    "phi2": ("PhiForCausalLM",),
    "phi3": ("Phi3ForCausalLM",),
}

# Tensors some files carry that hold RoPE settings, not weights: read here into the config.
# `rope_freqs`: Llama 3's scaling as a divisor per frequency; `rope_factors_*`: Phi-3's LongRoPE factors.
ROPE_TENSORS = ("rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight")


class GGUFFile(Protocol):
    """What this module reads of a GGUF (edge_models.loader.gguf_source.GGUFSource has it)."""

    path: object
    architecture: str

    def metadata(self, key: str): ...

    def has_tensor(self, name: str) -> bool: ...

    def shape(self, name: str) -> tuple[int, ...]: ...

    def get(self, name: str) -> torch.Tensor: ...


def hf_architectures(gguf: GGUFFile) -> tuple[str, ...]:
    """The HF architectures the file may hold, the likelier first; an error naming the architecture and the ones
    known here when it is none of them."""
    arch = gguf.architecture
    if arch not in GGUF_ARCHITECTURES:
        raise CheckpointError(
            f"{gguf.path}: GGUF architecture {arch!r} is not one edge-models reads; "
            f"supported: {', '.join(sorted(GGUF_ARCHITECTURES))}"
        )
    candidates = GGUF_ARCHITECTURES[arch]
    if arch == "llama" and "mistral" in str(gguf.metadata("general.name") or "").lower():
        candidates = ("MistralForCausalLM", "LlamaForCausalLM")
    return candidates


def hf_config_from_gguf(gguf: GGUFFile, architecture: str | None = None) -> dict:
    """The config.json llama.cpp converted `gguf` from, as far as the file tells; `architecture` picks one of
    `hf_architectures(gguf)` (the first by default)."""
    candidates = hf_architectures(gguf)
    architecture = architecture or candidates[0]
    if architecture not in candidates:
        raise CheckpointError(
            f"{gguf.path}: a GGUF of architecture {gguf.architecture!r} holds {' or '.join(candidates)}, "
            f"not {architecture}"
        )
    keys = _Keys(gguf)
    hf = {"architectures": [architecture], "model_type": _MODEL_TYPES[architecture], **_common(keys, gguf)}
    _FAMILY[gguf.architecture](keys, gguf, hf)
    return {k: v for k, v in hf.items() if v is not None}


_MODEL_TYPES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "GemmaForCausalLM": "gemma",
    "Gemma2ForCausalLM": "gemma2",
    "Gemma3ForCausalLM": "gemma3_text",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "PhiForCausalLM": "phi",
    "Phi3ForCausalLM": "phi3",
}


class _Keys:
    """`{arch}.*` metadata, by the part after the architecture."""

    def __init__(self, gguf: GGUFFile) -> None:
        self._gguf = gguf

    def get(self, key: str, default=None):
        value = self._gguf.metadata(f"{self._gguf.architecture}.{key}")
        return default if value is None else value

    def require(self, key: str, what: str):
        value = self.get(key)
        if value is None:
            raise CheckpointError(
                f"{self._gguf.path}: the GGUF metadata has no '{self._gguf.architecture}.{key}' ({what})"
            )
        return value


def _common(keys: _Keys, gguf: GGUFFile) -> dict:
    if not gguf.has_tensor("token_embd.weight"):
        raise CheckpointError(f"{gguf.path}: the GGUF has no 'token_embd.weight' tensor (the token embedding)")
    heads = int(keys.require("attention.head_count", "attention heads"))
    key_length = keys.get("attention.key_length")
    return {
        # The embedding's rows, not the tokenizer's length: some files pad one of the two.
        "vocab_size": gguf.shape("token_embd.weight")[0],
        "hidden_size": int(keys.require("embedding_length", "hidden size")),
        "intermediate_size": int(keys.require("feed_forward_length", "feed-forward size")),
        "num_hidden_layers": int(keys.require("block_count", "layers")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(keys.get("attention.head_count_kv", heads)),
        "head_dim": int(key_length) if key_length is not None else None,
        "max_position_embeddings": _int_or_none(keys.get("context_length")),
        "rope_theta": _float_or_none(keys.get("rope.freq_base")),
        "rms_norm_eps": _float_or_none(keys.get("attention.layer_norm_rms_epsilon")),
        # llama.cpp writes no `output` tensor when the LM head is the embedding.
        "tie_word_embeddings": not gguf.has_tensor("output.weight"),
        "rope_scaling": _rope_scaling(keys, gguf),
        **_token_ids(gguf),
    }


def _token_ids(gguf: GGUFFile) -> dict:
    """config.json's special token ids, which llama.cpp keeps with the tokenizer."""
    ids = {}
    for ours, theirs in (("bos_token_id", "bos"), ("eos_token_id", "eos"), ("pad_token_id", "padding")):
        value = gguf.metadata(f"tokenizer.ggml.{theirs}_token_id")
        if value is not None:
            ids[ours] = int(value)
    return ids


def _rope_scaling(keys: _Keys, gguf: GGUFFile) -> dict | None:
    if gguf.has_tensor("rope_freqs.weight"):
        # Llama 3.x: the converter bakes the scaling into one divisor per frequency. LongRoPE's short factors are
        # exactly that; with no attention factor it rotates as the original model does.
        factors = _floats(gguf, "rope_freqs.weight")
        return {
            "rope_type": "longrope",
            "short_factor": factors,
            "long_factor": factors,
            # Only sets when the long factors apply; they are the same here.
            "original_max_position_embeddings": int(keys.get("context_length", 2048)),
            "attention_factor": 1.0,
        }
    if gguf.has_tensor("rope_factors_short.weight"):  # Phi-3's LongRoPE
        scaling = {
            "rope_type": "longrope",
            "short_factor": _floats(gguf, "rope_factors_short.weight"),
            "long_factor": _floats(gguf, "rope_factors_long.weight")
            if gguf.has_tensor("rope_factors_long.weight")
            else _floats(gguf, "rope_factors_short.weight"),
            "original_max_position_embeddings": _int_or_none(keys.get("rope.scaling.original_context_length")),
        }
        attention = _float_or_none(keys.get("rope.scaling.attn_factor"))
        if attention is not None and not math.isclose(attention, _longrope_attention(keys), rel_tol=1e-6):
            scaling["attention_factor"] = attention  # not the one LongRoPE derives, which config.json leaves out
        return scaling
    kind = keys.get("rope.scaling.type")
    if kind in (None, "none"):
        return None
    # Other types (yarn, ...) pass through by name, for the plugin's own "not supported" error.
    scaling = {"rope_type": str(kind), "factor": _float_or_none(keys.get("rope.scaling.factor"))}
    original = keys.get("rope.scaling.original_context_length")
    if original is not None:
        scaling["original_max_position_embeddings"] = int(original)
    return scaling


def _longrope_attention(keys: _Keys) -> float:
    """The attention factor LongRoPE derives from the context lengths (llama.cpp's converter writes it)."""
    context, original = keys.get("context_length"), keys.get("rope.scaling.original_context_length")
    if not context or not original or context <= original:
        return 1.0
    return math.sqrt(1 + math.log(context / original) / math.log(original))


def _llama(keys: _Keys, gguf: GGUFFile, hf: dict) -> None:
    # Llama's converter writes the head size as the rotary dimension (it rotates whole heads).
    if hf.get("head_dim") is None and keys.get("rope.dimension_count") is not None:
        hf["head_dim"] = int(keys.get("rope.dimension_count"))
    hf["attention_bias"] = gguf.has_tensor("blk.0.attn_q.bias")
    hf["mlp_bias"] = gguf.has_tensor("blk.0.ffn_up.bias")


def _gemma(keys: _Keys, gguf: GGUFFile, hf: dict) -> None:
    hf["hidden_activation"] = "gelu_pytorch_tanh"


def _query_pre_attn_scalar(hf: dict, big_layers: int) -> int:
    # llama.cpp scales queries by the head size, except in the 27B models (by hidden size / heads), which it
    # recognises by their layer count; so did their config.json.
    if hf["num_hidden_layers"] == big_layers:
        return hf["hidden_size"] // hf["num_attention_heads"]
    return hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"]


def _gemma2(keys: _Keys, gguf: GGUFFile, hf: dict) -> None:
    _gemma(keys, gguf, hf)
    hf["query_pre_attn_scalar"] = _query_pre_attn_scalar(hf, big_layers=46)
    hf["sliding_window"] = _int_or_none(keys.get("attention.sliding_window"))
    hf["attn_logit_softcapping"] = _float_or_none(keys.get("attn_logit_softcapping"))
    hf["final_logit_softcapping"] = _float_or_none(keys.get("final_logit_softcapping"))
    hf["layer_types"] = _layer_types(keys, hf["num_hidden_layers"], pattern=2)


def _gemma3(keys: _Keys, gguf: GGUFFile, hf: dict) -> None:
    _gemma(keys, gguf, hf)
    hf["query_pre_attn_scalar"] = _query_pre_attn_scalar(hf, big_layers=62)
    hf["sliding_window"] = _int_or_none(keys.get("attention.sliding_window"))
    # llama.cpp's local layers rotate with base 10,000 unless the file says otherwise, and never scale.
    hf["rope_local_base_freq"] = _float_or_none(keys.get("rope.freq_base_swa", 10_000.0))
    hf["layer_types"] = _layer_types(keys, hf["num_hidden_layers"], pattern=6)


def _layer_types(keys: _Keys, layers: int, pattern: int) -> list[str]:
    """Which layers slide: `attention.sliding_window_pattern` (every Nth layer global, or a flag per layer) where
    the file has it, else llama.cpp's built-in pattern for the architecture."""
    written = keys.get("attention.sliding_window_pattern")
    if isinstance(written, list):
        return ["sliding_attention" if flag else "full_attention" for flag in written]
    n = int(written) if written else pattern
    return ["full_attention" if (i + 1) % n == 0 else "sliding_attention" for i in range(layers)]


def _plain(keys: _Keys, gguf: GGUFFile, hf: dict) -> None:
    """Families whose every setting is among the common keys (Qwen 2 and 3)."""


def _partial_rotary(keys: _Keys, hf: dict) -> None:
    rotary = keys.get("rope.dimension_count")
    head_dim = hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"]
    if rotary is not None and int(rotary) != head_dim:
        hf["partial_rotary_factor"] = int(rotary) / head_dim


def _phi2(keys: _Keys, gguf: GGUFFile, hf: dict) -> None:
    hf.pop("rms_norm_eps", None)
    hf["layer_norm_eps"] = _float_or_none(keys.get("attention.layer_norm_epsilon"))
    hf["hidden_act"] = "gelu_new"
    _partial_rotary(keys, hf)


def _phi3(keys: _Keys, gguf: GGUFFile, hf: dict) -> None:
    _partial_rotary(keys, hf)
    hf["sliding_window"] = _int_or_none(keys.get("attention.sliding_window"))
    original = keys.get("rope.scaling.original_context_length")
    if original is not None:
        hf["original_max_position_embeddings"] = int(original)


_FAMILY: dict[str, Callable[[_Keys, GGUFFile, dict], None]] = {
    "llama": _llama,
    "gemma": _gemma,
    "gemma2": _gemma2,
    "gemma3": _gemma3,
    "qwen2": _plain,
    "qwen3": _plain,
    "phi2": _phi2,
    "phi3": _phi3,
}


def _floats(gguf: GGUFFile, name: str) -> list[float]:
    return [_float_or_none(x) for x in gguf.get(name).flatten().tolist()]


def _int_or_none(value) -> int | None:
    return None if value is None else int(value)


def _float_or_none(value) -> float | None:
    # llama.cpp writes float32: the shortest decimal of that float32 is the value config.json had (1e-06, not
    # 9.99999997e-07).
    return None if value is None else float(str(np.float32(value)))
