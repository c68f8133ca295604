"""LiteRT-LM's LoRA conventions, which our files and runtime follow: the names of a converted file's LoRA inputs,
and adapter files.

An adapter file is a TFLite flatbuffer (identifier `TFL3`) whose tensors are named like the converted file's LoRA
inputs, their float32 data after the flatbuffer (each buffer by offset and size), a `lora_rank` metadata entry whose
buffer field is the rank, and the file padded to whole 4 KiB pages: LiteRT-LM memory-maps each tensor and refuses a
read that runs past the end of the file (measured with litert-lm-api 0.18.1).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edge_models.tflite.packing import aligned, lay_out, pack_laid_out, write_buffers

# The projections a slot can sit on: our module path inside a decoder block, and the stem of its inputs' names.
# Attention inputs are named as LiteRT-LM binds adapters (`lora_atten_q_a_prime_weight_3`: its LoRA input pattern,
# runtime/util/lora_util.cc); feed-forward ones follow the same shape under `ffn_`, which LiteRT-LM does not bind.
TARGETS = {
    "q_proj": ("attn.q_proj", "atten_q"),
    "k_proj": ("attn.k_proj", "atten_k"),
    "v_proj": ("attn.v_proj", "atten_v"),
    "o_proj": ("attn.o_proj", "atten_o"),
    "gate_proj": ("mlp.gate_proj", "ffn_gate"),
    "up_proj": ("mlp.up_proj", "ffn_up"),
    "down_proj": ("mlp.down_proj", "ffn_down"),
    # Layers with state: LFM2's short convolution and Qwen3.5's gated delta-net (LiteRT-LM binds none of these).
    "conv_in_proj": ("conv.in_proj", "conv_in"),
    "conv_out_proj": ("conv.out_proj", "conv_out"),
    "in_proj_qkv": ("linear_attn.in_proj_qkv", "delta_qkv"),
    "in_proj_z": ("linear_attn.in_proj_z", "delta_z"),
    "in_proj_a": ("linear_attn.in_proj_a", "delta_a"),
    "in_proj_b": ("linear_attn.in_proj_b", "delta_b"),
    "linear_out_proj": ("linear_attn.out_proj", "delta_out"),
}
LITERT_LM_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
LITERT_LM_RANKS = (16, 32)  # LiteRT-LM 0.18 on CPU: "Currently only support rank 16 and 32"
INPUT_PREFIX = "lora_"
_INPUT = re.compile(r"lora_(\w+?)_([ab])_prime_weight_(\d+)")
_STEMS = {stem: target for target, (_, stem) in TARGETS.items()}

RANK_KEY = "lora_rank"
_ALIGN = 64
_PAGE = 4096


class AdapterFileError(ValueError):
    pass


def write_adapter_file(matrices: dict[str, np.ndarray], rank: int, out: BinaryIO, description: str = "") -> None:
    from ai_edge_litert import schema_py_generated as schema

    arrays = {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in matrices.items()}
    model = schema.ModelT()
    model.version, model.description = 3, description
    model.buffers = [schema.BufferT()]  # buffer 0 is empty by convention
    graph = schema.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = [], [], [], []
    for name, a in arrays.items():
        buffer = schema.BufferT()
        buffer.size = a.nbytes
        model.buffers.append(buffer)
        tensor = schema.TensorT()
        tensor.name, tensor.shape, tensor.type = name, list(a.shape), schema.TensorType.FLOAT32
        tensor.buffer = len(model.buffers) - 1
        graph.tensors.append(tensor)
    model.subgraphs = [graph]
    entry = schema.MetadataT()
    entry.name, entry.buffer = RANK_KEY, rank
    model.metadata = [entry]

    layout = lay_out(model, model.buffers[1:], _ALIGN)
    start = out.tell()
    out.write(pack_laid_out(model, layout))
    write_buffers(out, start, zip(model.buffers[1:], arrays.values()), aligned(layout.end, _PAGE))


def read_adapter_file(path: str | Path) -> tuple[dict[str, np.ndarray], int]:
    """(matrices by input name, rank) of an adapter file."""
    from ai_edge_litert import schema_py_generated as schema

    data = Path(path).read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise AdapterFileError(f"{path} is not a LoRA adapter file (`edge-models lora pack` writes them)")
    try:
        model = schema.ModelT.InitFromPackedBuf(data, 0)
        rank = next(m.buffer for m in model.metadata or [] if m.name.decode() == RANK_KEY)
        out = {}
        for tensor in model.subgraphs[0].tensors:
            buffer = model.buffers[tensor.buffer]
            shape = tuple(int(d) for d in tensor.shape)
            out[tensor.name.decode()] = np.frombuffer(
                data, np.float32, int(np.prod(shape)), int(buffer.offset)
            ).reshape(shape)
    except StopIteration:
        raise AdapterFileError(f"{path} has no {RANK_KEY} metadata: not a LoRA adapter file") from None
    except (IndexError, ValueError, AttributeError, TypeError) as e:
        raise AdapterFileError(f"{path} is not a readable LoRA adapter file: {e}") from None
    return out, int(rank)


def input_key(param: str) -> str:
    """`input_name` without its prefix (the key litert-torch prefixes with the argument's name)."""
    m = re.fullmatch(r"layers\.(\d+)\.(\w+\.\w+)\.lora_([ab])", param)
    stem = next((stem for path, stem in TARGETS.values() if m and path == m.group(2)), None)
    if stem is None:
        raise ValueError(f"{param} is not a LoRA slot parameter")
    return f"{stem}_{m.group(3)}_prime_weight_{m.group(1)}"


def input_name(param: str) -> str:
    """The converted file's input for slot parameter `param`: `layers.0.attn.q_proj.lora_a` ->
    `lora_atten_q_a_prime_weight_0`."""
    return INPUT_PREFIX + input_key(param)


def parse_input_name(name: str) -> tuple[int, str, str] | None:
    """(layer, target, "a" or "b") of a LoRA input name, else None."""
    m = _INPUT.fullmatch(name)
    if m is None or m.group(1) not in _STEMS:
        return None
    return int(m.group(3)), _STEMS[m.group(1)], m.group(2)


def rank_of(lora_inputs: dict[str, tuple[int, ...]]) -> int:
    """The rank of a file's LoRA inputs (A' is [in, rank])."""
    return next(shape[1] for name, shape in lora_inputs.items() if (p := parse_input_name(name)) and p[2] == "a")


def zero_adapter(lora_inputs: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Every LoRA input at zero: the base model, as an adapter (LiteRT-LM needs one; see `check_lora`)."""
    return {name: np.zeros(shape, np.float32) for name, shape in lora_inputs.items()}
