"""`peft` LoRA adapters: read, checked against a model, packed for a file's LoRA inputs, or merged into weights.

An adapter directory holds `adapter_config.json` and `adapter_model.safetensors` (or `adapter_model.bin`). Its
module names are the checkpoint's (`model.layers.3.self_attn.q_proj`), mapped to ours through the family's
TensorNames. Each adapted projection gets y += (alpha / r) B A x (alpha / sqrt(r) with rsLoRA); the scale is folded
into B when packing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edge_models.io.files import write_atomically
from edge_models.tensor_names import LAYER_SLOTS, MODULE_SLOTS, TensorNames
from edge_models.tflite.lora import TARGETS, input_name, parse_input_name, rank_of, write_adapter_file


class AdapterError(ValueError):
    pass


@dataclass
class Adapter:
    source: Path
    rank: int
    # our module path (`layers.3.attn.q_proj`) -> (A [r, in], B [out, r] with the scale folded in)
    modules: dict[str, tuple[torch.Tensor, torch.Tensor]]


def _config(directory: Path) -> dict:
    path = directory / "adapter_config.json"
    if not path.is_file():
        raise AdapterError(f"{directory} is not a peft adapter directory (no adapter_config.json)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AdapterError(f"{path} is not readable JSON: {e}") from None
    problems = []
    if config.get("peft_type", "LORA") != "LORA":
        problems.append(f"peft_type {config.get('peft_type')!r} (only LORA)")
    if config.get("use_dora"):
        problems.append("use_dora = true (DoRA rescales the weight; not supported)")
    if config.get("bias", "none") != "none":
        problems.append(f"bias = {config.get('bias')!r} (trained biases are not supported; use 'none')")
    if config.get("modules_to_save"):
        problems.append(f"modules_to_save = {config['modules_to_save']} (fully trained modules are not supported)")
    if config.get("fan_in_fan_out"):
        problems.append("fan_in_fan_out = true (an adapter for Conv1D layers; these models use Linear layers)")
    if config.get("alpha_pattern") or config.get("rank_pattern"):
        problems.append("alpha_pattern / rank_pattern (per-module scales) are not supported")
    if problems:
        raise AdapterError(f"{path}: unsupported adapter: " + "; ".join(problems))
    return config


def _tensors(directory: Path) -> dict[str, torch.Tensor]:
    if (directory / "adapter_model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(directory / "adapter_model.safetensors"))
    if (directory / "adapter_model.bin").is_file():
        return torch.load(directory / "adapter_model.bin", map_location="cpu", weights_only=True)
    raise AdapterError(f"{directory} has no adapter_model.safetensors or adapter_model.bin")


def _checkpoint_template(names: TensorNames, slot: str) -> str | None:
    """The checkpoint's name of projection `slot` (our path inside a block, e.g. `linear_attn.in_proj_z`) with `{}`
    for the layer; None when the family has no such projection."""
    if slot in LAYER_SLOTS:
        return getattr(names, LAYER_SLOTS[slot]) or None
    module, _, child = slot.partition(".")
    # A module named below it as in the checkpoint (Qwen3.5's delta-net): its projections keep their names.
    parent = getattr(names, MODULE_SLOTS[module], None) if module in MODULE_SLOTS else None
    return f"{parent}.{child}" if parent else None


def _slot_patterns(names: TensorNames) -> list[tuple[re.Pattern, str]]:
    out = []
    for slot, _ in TARGETS.values():
        template = _checkpoint_template(names, slot)
        if template:
            pattern = re.escape(template).replace(re.escape("{}"), r"(\d+)")
            out.append((re.compile(pattern), slot))
    return out


def read_adapter(directory: str | Path, names: TensorNames, num_layers: int) -> Adapter:
    """The adapter in `directory` on our module names; every module it targets must map onto one of ours."""
    directory = Path(directory)
    config = _config(directory)
    tensors = _tensors(directory)
    rank, alpha = int(config.get("r", 8)), float(config.get("lora_alpha", 8))
    scale = alpha / (rank**0.5 if config.get("use_rslora") else rank)
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        m = re.fullmatch(r"(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.default)?\.weight", key)
        if m is None:
            raise AdapterError(f"{directory}: tensor {key!r} is not a LoRA A or B matrix")
        pairs.setdefault(m.group(1), {})[m.group(2)] = tensor.to(torch.float32)
    patterns = _slot_patterns(names)
    modules = {}
    for hf_module, ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise AdapterError(f"{directory}: {hf_module} has lora_{''.join(ab)} without its partner")
        ours = next(
            (f"layers.{m.group(1)}.{slot}" for pattern, slot in patterns if (m := pattern.fullmatch(hf_module))),
            None,
        )
        if ours is None:
            known = ", ".join(sorted({_checkpoint_template(names, s) for _, s in patterns}))
            raise AdapterError(
                f"{directory}: adapter module {hf_module!r} is not a projection of this model (its projections: "
                f"{known}; fused qkv/gate_up adapters are not supported)"
            )
        if int(ours.split(".")[1]) >= num_layers:
            raise AdapterError(f"{directory}: {hf_module} is beyond the model's {num_layers} layers")
        a, b = ab["A"], ab["B"]
        if a.shape[0] != b.shape[1]:
            raise AdapterError(
                f"{directory}: {hf_module}: lora_A {list(a.shape)} and lora_B {list(b.shape)} differ in rank"
            )
        modules[ours] = (a, b * scale)
    if not modules:
        raise AdapterError(f"{directory}: the adapter holds no LoRA matrices")
    return Adapter(directory, max(a.shape[0] for a, _ in modules.values()), modules)


def pack(adapter: Adapter, lora_spec: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """The adapter as the matrices a converted file's LoRA inputs take (`LiteRTModel.lora_spec`): Aᵀ [in, rank] and
    Bᵀ [rank, out], zero-padded to the file's rank; clear errors for a rank above it, a target it lacks, or a shape
    that does not fit."""
    out = {}
    for module, (a, b) in adapter.modules.items():
        a_name, b_name = input_name(f"{module}.lora_a"), input_name(f"{module}.lora_b")
        if a_name not in lora_spec:
            have = sorted({parsed[1] for n in lora_spec if (parsed := parse_input_name(n))})
            raise AdapterError(f"the file has no LoRA slot on {module} (its targets: {', '.join(have)})")
        (cols, rank), (_, rows) = lora_spec[a_name], lora_spec[b_name]
        if a.shape[0] > rank:
            raise AdapterError(f"{module}: adapter rank {a.shape[0]} exceeds the file's LoRA rank {rank}")
        if a.shape[1] != cols or b.shape[0] != rows:
            raise AdapterError(
                f"{module}: adapter A {list(a.shape)} / B {list(b.shape)} do not fit the layer: expected A [r, {cols}] "
                f"and B [{rows}, r]"
            )
        pa, pb = np.zeros((cols, rank), np.float32), np.zeros((rank, rows), np.float32)
        pa[:, : a.shape[0]], pb[: a.shape[0]] = a.numpy().T, b.numpy().T
        out[a_name], out[b_name] = pa, pb
    return out


def write_packed(matrices: dict[str, np.ndarray], output: str | Path, source: str) -> Path:
    """The packed matrices as an adapter file LiteRT-LM and our runtime read (`tflite.lora`); written to a
    temporary file and renamed."""
    rank = rank_of({name: a.shape for name, a in matrices.items()})
    return write_atomically(
        output, lambda f: write_adapter_file(matrices, rank, f, f"edge-models LoRA adapter packed from {source}")
    )


def describe_adapter(directory: str | Path) -> str:
    """The adapter's directory name and the first 12 hex digits of its weights file's SHA-256: enough to tell which
    fine-tune a merged file holds."""
    import hashlib

    directory = Path(directory)
    weights = next(
        (directory / n for n in ("adapter_model.safetensors", "adapter_model.bin") if (directory / n).is_file()), None
    )
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12] if weights else "no weights file"
    return f"{directory.resolve().name} (sha256 {digest})"


def merge(model: torch.nn.Module, adapter: Adapter) -> None:
    """W += B A for every adapted projection (before quantization: the converted file has no LoRA inputs)."""
    with torch.no_grad():
        for module, (a, b) in adapter.modules.items():
            layer = model.get_submodule(module)
            if layer.weight.shape != (b.shape[0], a.shape[1]):
                raise AdapterError(
                    f"{module}: adapter A {list(a.shape)} / B {list(b.shape)} do not fit the layer's weight "
                    f"{list(layer.weight.shape)}"
                )
            layer.weight.add_(b @ a)


def merged_reader(read, adapter: Adapter):
    """`read(param)` (a deferred model's weight reader) with W + B A for the adapted projections."""
    deltas = {f"{module}.weight": (b @ a).numpy() for module, (a, b) in adapter.modules.items()}

    def merged(param: str) -> np.ndarray:
        weight = read(param)
        if param in deltas:
            if weight.shape != deltas[param].shape:
                raise AdapterError(
                    f"{param}: the adapter's B A is {list(deltas[param].shape)}, the weight {list(weight.shape)}"
                )
            return np.asarray(weight) + deltas[param]
        return weight

    return merged
