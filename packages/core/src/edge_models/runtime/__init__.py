"""Desktop runtime: needs ai-edge-litert, numpy and a tokenizer library, never torch."""

from edge_models.runtime.generator import GenerationStats, Generator
from edge_models.runtime.litert_model import LiteRTModel
from edge_models.runtime.sampler import Sampler, SamplerConfig
from edge_models.runtime.tokenizer import HFTokenizer, SentencePieceTokenizer, TokenizerError, load_tokenizer

__all__ = [
    "GenerationStats",
    "Generator",
    "HFTokenizer",
    "LiteRTModel",
    "Sampler",
    "SamplerConfig",
    "SentencePieceTokenizer",
    "TokenizerError",
    "load_tokenizer",
]
