"""Desktop runtime: needs ai-edge-litert, numpy and a tokenizer library, never torch."""

from edge_models.runtime.bundles import BundleContents, BundleFormatError, read_bundle
from edge_models.runtime.chat import ChatSession, ConversationFullError
from edge_models.runtime.constraints import Constraint, ConstraintError
from edge_models.runtime.generator import GenerationStats, Generator
from edge_models.runtime.litert_model import LiteRTModel
from edge_models.runtime.sampler import Sampler, SamplerConfig
from edge_models.runtime.tokenizer import HFTokenizer, SentencePieceTokenizer, TokenizerError, load_tokenizer

__all__ = [
    "BundleContents",
    "BundleFormatError",
    "ChatSession",
    "Constraint",
    "ConstraintError",
    "ConversationFullError",
    "GenerationStats",
    "Generator",
    "HFTokenizer",
    "LiteRTModel",
    "Sampler",
    "SamplerConfig",
    "SentencePieceTokenizer",
    "TokenizerError",
    "load_tokenizer",
    "read_bundle",
]
