"""Desktop runtime: needs ai-edge-litert, numpy and a tokenizer library, never torch."""

from edge_models.runtime.bundles import BundleContents, BundleFormatError, read_bundle
from edge_models.runtime.chat import ChatSession, ConversationFullError
from edge_models.runtime.constraints import Constraint, ConstraintError
from edge_models.runtime.generator import GenerationStats, Generator
from edge_models.runtime.litert_model import LiteRTModel
from edge_models.runtime.sampler import Sampler, SamplerConfig
from edge_models.runtime.tokenizer import HFTokenizer, SentencePieceTokenizer, TokenizerError, load_tokenizer
from edge_models.runtime.tools import ToolCall, ToolError, function_schema, read_tools

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
    "ToolCall",
    "ToolError",
    "function_schema",
    "load_tokenizer",
    "read_bundle",
    "read_tools",
]
