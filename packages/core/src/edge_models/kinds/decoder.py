"""From a model name (or `auto`) and a checkpoint to a loaded Decoder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edge_models.config import ModelConfig
from edge_models.hf.config import UnsupportedConfigError, read_config
from edge_models.hf.hub_cache import resolve_checkpoint
from edge_models.plugins import ModelRegistry, UnknownModelError, registry
from edge_models.spec import ModelSpec

if TYPE_CHECKING:
    from edge_models.loader.gguf_config import GGUFFile
    from edge_models.loader.gguf_source import GGUFSource


def resolve_spec(name: str, checkpoint: str | Path | None = None, reg: ModelRegistry | None = None) -> ModelSpec:
    reg = reg or registry()
    if name != "auto":
        return reg.get(name)
    if checkpoint is None:
        raise ValueError("`auto` needs --checkpoint to read the architecture from (config.json, or a GGUF's metadata)")
    checkpoint = resolve_checkpoint(checkpoint)
    gguf = _gguf_file(checkpoint)
    if gguf is not None:
        return _spec_for_gguf(gguf, reg)
    directory = checkpoint if checkpoint.is_dir() else checkpoint.parent
    hf = read_config(directory)
    architectures = hf.get("architectures") or []
    if not architectures:
        raise ValueError(f"{directory / 'config.json'} has no 'architectures' entry; name the model instead of `auto`")
    return reg.for_architecture(architectures)


def resolve_config(spec: ModelSpec, checkpoint: str | Path | None) -> ModelConfig:
    """config.json beside the checkpoint wins; else a GGUF's own hyper-parameters (so a GGUF of any size in the
    family fits); a bare .pt/.bin file uses the spec's default."""
    if checkpoint is None:
        return spec.config
    path = resolve_checkpoint(checkpoint)
    directory = path if path.is_dir() else path.parent
    if (directory / "config.json").exists():
        return spec.config_from_hf(read_config(directory))
    gguf = _gguf_file(path)
    if gguf is not None:
        return gguf_config(spec, gguf)
    return spec.config


def _gguf_file(path: Path) -> GGUFSource | None:
    """The .gguf file at `path`, opened for its metadata; None for other checkpoints, and for a GGUF with a
    config.json beside it (which describes it, as it does any checkpoint)."""
    if path.suffix.lower() != ".gguf" or (path.parent / "config.json").exists():
        return None
    from edge_models.loader.gguf_source import GGUFSource

    return GGUFSource(path)


def _spec_for_gguf(gguf: GGUFSource, reg: ModelRegistry) -> ModelSpec:
    """The registered spec for the architecture in a GGUF's metadata (`general.architecture`)."""
    from edge_models.loader.gguf_config import GGUF_ARCHITECTURES, hf_architectures

    accepted = {a for r in reg.entries() for a in r.spec.architectures}
    candidates = hf_architectures(gguf) if gguf.architecture in GGUF_ARCHITECTURES else ()
    for architecture in candidates:
        if architecture in accepted:
            return reg.for_architecture([architecture])
    supported = sorted(g for g, archs in GGUF_ARCHITECTURES.items() if accepted & set(archs))
    held = f" ({' or '.join(candidates)})" if candidates else ""
    raise UnknownModelError(
        f"{gguf.path}: no registered model reads GGUF architecture {gguf.architecture!r}{held}; "
        f"GGUF architectures supported: {', '.join(supported) or 'none (install a plugin, e.g. edge-models-gemma)'}"
    )


def gguf_config(spec: ModelSpec, gguf: GGUFFile) -> ModelConfig:
    """`spec`'s config for the hyper-parameters in a GGUF's metadata; an error when the file holds another family."""
    from edge_models.loader.gguf_config import hf_architectures, hf_config_from_gguf

    candidates = hf_architectures(gguf)
    fitting = [a for a in candidates if a in spec.architectures]
    if not fitting:
        raise ValueError(
            f"{gguf.path} holds a GGUF {gguf.architecture!r} model ({' or '.join(candidates)}), which {spec.name} "
            f"does not read ({', '.join(spec.architectures)}); name a model of its family, or use `auto`"
        )
    try:
        return spec.config_from_hf(hf_config_from_gguf(gguf, fitting[0]))
    except UnsupportedConfigError as e:
        raise UnsupportedConfigError(f"{gguf.path}: its GGUF metadata, read as a {e}") from None


def load_for_spec(spec: ModelSpec, checkpoint: str | Path, config: ModelConfig | None = None, deferred: bool = False):
    """The model of `spec` filled from `checkpoint`. With `deferred`, returns (model, read): the 2-D weights stay
    unallocated and `read(param)` fetches one, for `convert(..., weights=read)` to stream them."""
    from edge_models.loader import load_model, load_model_deferred, open_checkpoint
    from edge_models.loader.text_tower import text_tower

    checkpoint = resolve_checkpoint(checkpoint)
    source = text_tower(open_checkpoint(checkpoint))
    config = config or resolve_config(spec, checkpoint)
    names = spec.tensor_names
    if source.path.suffix.lower() == ".gguf":
        from edge_models.tensor_names import gguf_names

        names = spec.gguf_names or gguf_names(source.names(), config.mlp.gated)
    load = load_model_deferred if deferred else load_model
    return load(config, source, names)


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
