"""edge-models: take a trained PyTorch LLM to a phone.

Heavy libraries (litert-torch, transformers) are imported lazily by the modules
that need them, so importing this package stays fast.
"""

from edge_models.config import AttentionConfig, MLPConfig, ModelConfig, NormConfig, RopeConfig
from edge_models.hookspecs import hookimpl
from edge_models.plugins import DuplicateModelError, UnknownModelError, registry
from edge_models.spec import ModelSpec, PromptTemplate, TokenizerDefaults
from edge_models.tensor_names import TensorNames

__version__ = "0.1.0"

__all__ = [
    "AttentionConfig",
    "DuplicateModelError",
    "MLPConfig",
    "ModelConfig",
    "ModelSpec",
    "NormConfig",
    "PromptTemplate",
    "RopeConfig",
    "TensorNames",
    "TokenizerDefaults",
    "UnknownModelError",
    "hookimpl",
    "registry",
]
