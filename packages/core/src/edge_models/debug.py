"""Per-block numerical debugging: how far a converted file's hidden state is from the PyTorch model's, block by block.

The file runs one prefill signature through LiteRT's interpreter with every intermediate tensor kept; each decoder
block's output is the last tensor the converter named after that block (litert-torch names op outputs by module
path, `.../DecoderBlock_<i>;...`). The PyTorch model runs the same tokens and hooks give its blocks' outputs. A
recipe that loses quality shows where: the relative error grows smoothly through the blocks, and jumps at one that
is broken or too coarsely quantized.
"""

from __future__ import annotations

import mmap
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

_BLOCK = re.compile(r"DecoderBlock_(\d+);\d*$")


@dataclass(frozen=True)
class BlockError:
    block: int  # -1 for the logits
    relative: float  # ||file - torch|| / ||torch|| over the prompt's positions
    cosine: float  # mean over positions

    @property
    def label(self) -> str:
        return "logits" if self.block < 0 else f"block {self.block}"


def block_output_tensors(flatbuffer: bytes, subgraph: int) -> dict[int, int]:
    """Tensor index of each decoder block's output in `subgraph` (the last op output named after the block)."""
    from ai_edge_litert import schema_py_generated as schema

    # The flat reader walks only the graph; the object API would unpack every weight buffer into Python.
    graph = schema.Model.GetRootAs(flatbuffer, 0).Subgraphs(subgraph)
    found: dict[int, int] = {}
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        for j in range(op.OutputsLength()):
            index = op.Outputs(j)
            names = graph.Tensors(index).Name().decode(errors="replace").split(";;")
            match = next((m for m in (_BLOCK.search(n) for n in names) if m), None)
            if match:
                found[int(match.group(1))] = int(index)
    return found


def compare_blocks(path: str | Path, model: torch.nn.Module, tokens: list[int]) -> list[BlockError]:
    """Each block's output (and the logits, when the signature returns them) of the file vs `model` on `tokens`."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    signatures = it.get_signature_list()
    lengths = sorted((int(m.group(1)), name) for name in signatures if (m := re.fullmatch(r"prefill_(\d+)", name)))
    fitting = [(n, name) for n, name in lengths if n >= len(tokens)]
    if not fitting:
        longest = lengths[-1][0] if lengths else 0
        raise ValueError(f"{path}: the prompt has {len(tokens)} tokens, its longest prefill signature takes {longest}")
    length, signature = fitting[0]
    subgraph = it._interpreter.GetSubgraphIndexFromSignature(signature)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        where = block_output_tensors(data, subgraph)
    # A file converted from another model would fail deep inside the interpreter (or compare nonsense): refuse it.
    if len(where) != len(model.layers):
        raise ValueError(
            f"{path} has {len(where)} decoder blocks, the model has {len(model.layers)}: not a conversion of this model"
        )
    runner = it.get_signature_runner(signature)
    inputs = {}
    for name, detail in runner.get_input_details().items():
        inputs[name] = np.zeros(detail["shape"], detail["dtype"])
    inputs["tokens"][0, : len(tokens)] = tokens
    inputs["input_pos"][: len(tokens)] = np.arange(len(tokens))
    outputs = runner(**inputs)

    captured: dict[int, torch.Tensor] = {}
    hooks = [
        block.register_forward_hook(lambda _m, _a, out, i=i: captured.__setitem__(i, out[0].detach()))
        for i, block in enumerate(model.layers)
    ]
    try:
        with torch.no_grad():
            kv = inputs[next(n for n in inputs if n.startswith("kv_cache_k_"))].shape[2]
            logits, _ = model(torch.tensor([tokens]), torch.arange(len(tokens)), model.empty_cache(kv))
    finally:
        for h in hooks:
            h.remove()

    n = len(tokens)
    rows = []
    for i in range(len(model.layers)):
        if i not in where:
            raise ValueError(f"{path}: no tensor named after decoder block {i} in {signature}")
        got = it.get_tensor(where[i], subgraph).reshape(length, -1)[:n]
        rows.append(_error(i, got, captured[i][0].numpy()))
    if "logits" in outputs:
        rows.append(_error(-1, outputs["logits"][0, :n], logits[0].numpy()))
    return rows


def _error(block: int, got: np.ndarray, want: np.ndarray) -> BlockError:
    got, want = got.astype(np.float64), want.astype(np.float64)
    relative = float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))
    dots = (got * want).sum(-1) / np.maximum(np.linalg.norm(got, axis=-1) * np.linalg.norm(want, axis=-1), 1e-30)
    return BlockError(block, relative, float(dots.mean()))


def first_jump(rows: list[BlockError], factor: float = 3.0) -> BlockError | None:
    """The first block whose relative error is `factor` times the previous block's (or above 0.5 outright)."""
    previous = None
    for row in rows:
        if row.block < 0:
            continue
        if row.relative > 0.5 or (previous is not None and row.relative > factor * max(previous, 1e-6)):
            return row
        previous = row.relative
    return None


def format_report(rows: list[BlockError]) -> str:
    lines = [f"{'':<10}{'relative error':>16}{'cosine':>12}"]
    lines += [f"{r.label:<10}{r.relative:>16.3e}{r.cosine:>12.6f}" for r in rows]
    jump = first_jump(rows)
    if jump is not None:
        lines.append(f"error jumps at {jump.label} ({jump.relative:.3e}): look there first")
    return "\n".join(lines)
