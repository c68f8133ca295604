"""ModelSpec: what a plugin tells core about one model it offers; BundleRequest: what core asks of a bundler."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edge_models.config import EncoderConfig, ModelConfig, Seq2SeqConfig
from edge_models.tensor_names import EncoderTensorNames, TensorNames


@dataclass(frozen=True)
class PromptTemplate:
    """Text wrapped around each chat turn; MediaPipe bundles carry the same fields."""

    user_prefix: str = ""
    user_suffix: str = ""
    model_prefix: str = ""
    model_suffix: str = ""
    system_prefix: str = ""
    system_suffix: str = ""

    def render(self, prompt: str, system: str | None = None) -> str:
        """One user turn, opened for the model's answer."""
        text = f"{self.system_prefix}{system}{self.system_suffix}" if system else ""
        return f"{text}{self.user_prefix}{prompt}{self.user_suffix}{self.model_prefix}"

    def render_messages(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """A conversation of {"role": "system"|"user"|"assistant", "content": ...} messages, as MediaPipe and
        LiteRT-LM wrap turns with these affixes."""
        affixes = {
            "system": (self.system_prefix, self.system_suffix),
            "user": (self.user_prefix, self.user_suffix),
            "assistant": (self.model_prefix, self.model_suffix),
        }
        parts = []
        for m in messages:
            if m["role"] not in affixes:
                raise ValueError(f"unknown chat role {m['role']!r}; expected system, user or assistant")
            prefix, suffix = affixes[m["role"]]
            parts.append(f"{prefix}{m['content']}{suffix}")
        if add_generation_prompt:
            parts.append(self.model_prefix)
        return "".join(parts)


@dataclass(frozen=True)
class TokenizerDefaults:
    start_token: str | None
    stop_tokens: tuple[str, ...]
    template: PromptTemplate = field(default_factory=PromptTemplate)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    # HF `architectures` entries this spec accepts, for `auto` detection from config.json.
    architectures: tuple[str, ...]
    config_from_hf: Callable[[dict], ModelConfig]
    # The published model's config (`edge-models list` counts its parameters).
    config: ModelConfig
    # A small HF config.json dict for tests and smoke conversions with random weights.
    tiny_hf_config: dict
    tensor_names: TensorNames
    tokenizer: TokenizerDefaults
    # Name of the reference model class in `transformers`, used by `verify`.
    reference_class: str
    description: str = ""
    # Names inside GGUF files when llama.cpp's standard names do not fit this family.
    gguf_names: TensorNames | None = None
    # The published model's config.json, when the plugin knows it (benchmarks build full-size shapes from it).
    published_hf_config: dict | None = None

    @property
    def tiny_config(self) -> ModelConfig:
        return self.config_from_hf(self.tiny_hf_config)


@dataclass(frozen=True)
class EncoderSpec:
    """What a plugin tells core about one encoder (embedding) model it offers; registered through
    `register_encoders`. The checkpoint's pooling (sentence-transformers' `1_Pooling`) is read by core."""

    name: str
    family: str
    architectures: tuple[str, ...]
    config_from_hf: Callable[[dict], EncoderConfig]
    config: EncoderConfig
    tiny_hf_config: dict
    tensor_names: EncoderTensorNames
    # Name of the reference model class in `transformers` (its last hidden state, pooled as configured).
    reference_class: str
    description: str = ""

    @property
    def tiny_config(self) -> EncoderConfig:
        return self.config_from_hf(self.tiny_hf_config)


@dataclass(frozen=True)
class Seq2SeqSpec:
    """What a plugin tells core about one encoder-decoder model it offers; registered through `register_seq2seq`."""

    name: str
    family: str
    architectures: tuple[str, ...]
    config_from_hf: Callable[[dict], Seq2SeqConfig]
    config: Seq2SeqConfig
    tiny_hf_config: dict
    # {our module path: checkpoint module path}, `{}` for a layer index (edge_models.loader.name_map); a function
    # of the config, since the feed-forward's tensors differ between plain and gated variants.
    tensor_names: Callable[[Seq2SeqConfig], dict[str, str]]
    reference_class: str
    description: str = ""
    # Checkpoint tensors the model does not read (tied copies of the shared embedding).
    unused_tensors: tuple[str, ...] = ()

    @property
    def tiny_config(self) -> Seq2SeqConfig:
        return self.config_from_hf(self.tiny_hf_config)


@dataclass(frozen=True)
class BundleRequest:
    """What core asks of a bundle writer (`register_bundle_writer`): bundle `tflite` with `tokenizer` into `output`
    (`.task` or `.litertlm`), start/stop tokens and chat template from `checkpoint`'s token files where given, the
    registered `model`'s defaults filling the rest; `notes` recorded in the bundle."""

    tflite: Path
    tokenizer: Path
    output: Path
    model: str | None = None
    checkpoint: Path | None = None
    notes: Mapping[str, str] = field(default_factory=dict)
    self_test: bool = True
