"""edge-models: take a trained PyTorch LLM to a phone.

What this package exports is the plugin API (docs/writing-a-plugin.md): configs, specs, tensor-name maps, the hook
marker, the registries, and the helpers that plugins' `config_from_hf` read config.json with.

Heavy libraries (litert-torch, transformers) are imported lazily by the modules
that need them, so importing this package stays fast.
"""

from edge_models.config import (
    AttentionConfig,
    EncoderConfig,
    MLPConfig,
    ModelConfig,
    NormConfig,
    PoolingConfig,
    RopeConfig,
)
from edge_models.hf.config import (
    UnsupportedConfigError,
    attempt,
    check_fields,
    expect,
    gated_silu_decoder,
    require,
    rope_parameters,
)
from edge_models.hookspecs import hookimpl
from edge_models.plugins import DuplicateModelError, UnknownModelError, encoder_registry, registry
from edge_models.spec import EncoderSpec, ModelSpec, PromptTemplate, TokenizerDefaults
from edge_models.tensor_names import EncoderTensorNames, TensorNames

__version__ = "0.1.0"


def __getattr__(name: str):
    # The pipeline pulls in torch and litert-torch: imported on first use, so `import edge_models` stays fast.
    if name == "convert_checkpoint":
        from edge_models.convert.pipeline import convert_checkpoint

        return convert_checkpoint
    raise AttributeError(f"module 'edge_models' has no attribute {name!r}")


__all__ = [
    "AttentionConfig",
    "DuplicateModelError",
    "EncoderConfig",
    "EncoderSpec",
    "EncoderTensorNames",
    "MLPConfig",
    "ModelConfig",
    "ModelSpec",
    "NormConfig",
    "PoolingConfig",
    "PromptTemplate",
    "RopeConfig",
    "TensorNames",
    "TokenizerDefaults",
    "UnknownModelError",
    "UnsupportedConfigError",
    "attempt",
    "check_fields",
    "convert_checkpoint",
    "encoder_registry",
    "expect",
    "gated_silu_decoder",
    "hookimpl",
    "registry",
    "require",
    "rope_parameters",
]
