"""From a model name (or `auto`) and a checkpoint to a loaded Decoder."""

from __future__ import annotations

from pathlib import Path

from edge_models.config import ModelConfig
from edge_models.hf.hub_cache import resolve_checkpoint
from edge_models.hf_config import read_config
from edge_models.plugins import ModelRegistry, registry
from edge_models.spec import ModelSpec


def resolve_spec(name: str, checkpoint: str | Path | None = None, reg: ModelRegistry | None = None) -> ModelSpec:
    reg = reg or registry()
    if name != "auto":
        return reg.get(name)
    if checkpoint is None:
        raise ValueError("`auto` needs --checkpoint to read config.json's architectures from")
    checkpoint = resolve_checkpoint(checkpoint)
    directory = checkpoint if checkpoint.is_dir() else checkpoint.parent
    hf = read_config(directory)
    architectures = hf.get("architectures") or []
    if not architectures:
        raise ValueError(f"{directory / 'config.json'} has no 'architectures' entry; name the model instead of `auto`")
    return reg.for_architecture(architectures)


def resolve_config(spec: ModelSpec, checkpoint: str | Path | None) -> ModelConfig:
    """config.json beside the checkpoint wins; a bare file (GGUF, .pt) uses the spec's default."""
    if checkpoint is None:
        return spec.config
    path = resolve_checkpoint(checkpoint)
    directory = path if path.is_dir() else path.parent
    if (directory / "config.json").exists():
        return spec.config_from_hf(read_config(directory))
    return spec.config


def load_for_spec(spec: ModelSpec, checkpoint: str | Path, config: ModelConfig | None = None, deferred: bool = False):
    """The model of `spec` filled from `checkpoint`. With `deferred`, returns (model, read): the 2-D weights stay
    unallocated and `read(param)` fetches one, for `convert(..., weights=read)` to stream them."""
    from edge_models.loader import load_model, load_model_deferred, open_checkpoint

    checkpoint = resolve_checkpoint(checkpoint)
    source = open_checkpoint(checkpoint)
    names = spec.tensor_names
    if source.path.suffix.lower() == ".gguf":
        from edge_models.tensor_names import GGUF_NAMES

        names = spec.gguf_names or GGUF_NAMES
    load = load_model_deferred if deferred else load_model
    return load(config or resolve_config(spec, checkpoint), source, names)


def randomized(build, seed: int = 0, std: float = 0.05):
    """`build()` under a fixed seed, every weight drawn from N(0, std) except norm scales (ones, or Gemma's zeros
    for `1 + w`), which stay as built."""
    import torch

    torch.manual_seed(seed)
    model = build()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or ".q_norm." in name or ".k_norm." in name:
                continue
            p.normal_(0.0, std)
    return model.eval()


def random_model(config: ModelConfig, seed: int = 0, std: float = 0.05):
    """A model with random weights, for smoke tests and `--tiny` conversions."""
    from edge_models.layers import Decoder

    return randomized(lambda: Decoder(config), seed, std)
